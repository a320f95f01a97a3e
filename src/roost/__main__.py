"""``python -m roost``: the same as the ``roost`` command."""

from roost.cli.app import main

main()
