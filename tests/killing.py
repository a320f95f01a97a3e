"""``python -m roost`` that SIGKILLs itself at an exact step, for the crash tests of every job.

``killing_roost("replace")`` is a ``python -c`` program that runs the ``roost`` command with ``os.replace``
wrapped: with ``KILL_AT`` set to ``"N:before"`` or ``"N:after"`` in its environment the process kills itself
just before or just after its N-th call (``"0:before"``, or no ``KILL_AT``: never). A kill at an exact
system call lands on any machine, however fast, where a kill timed from outside may miss.
"""

from __future__ import annotations

KILL_AT = "ROOST_TEST_KILL_AT"


def killing_roost(call: str) -> str:
    """The program text (for ``python -c``) of the roost command killing itself around ``os.<call>``."""
    return f"""
import os, runpy, signal, sys
n, when = os.environ.get({KILL_AT!r}, "0:before").split(":")
calls, real = [0], os.{call}
def killing(*args, **kwargs):
    calls[0] += 1
    if calls[0] == int(n) and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    result = real(*args, **kwargs)
    if calls[0] == int(n):
        os.kill(os.getpid(), signal.SIGKILL)
    return result
os.{call} = killing
sys.argv[0] = "roost"
runpy.run_module("roost", run_name="__main__", alter_sys=True)
"""


def kill_env(n: int, before: bool = True) -> dict[str, str]:
    """The environment entry that makes the program kill itself at the ``n``-th call."""
    return {KILL_AT: f"{n}:{'before' if before else 'after'}"}
