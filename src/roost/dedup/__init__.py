"""Duplicates and near-duplicates (``roost dedup``): fingerprints, grouping with keepers, safe actions.

``dedup_files`` runs it all; ``undo`` restores what a ``move`` moved (see ``actions.py``).
"""

from roost.dedup.actions import Action, undo
from roost.dedup.groups import Keep, Match
from roost.dedup.run import DedupOptions, DedupSummary, dedup_files

__all__ = ["Action", "DedupOptions", "DedupSummary", "Keep", "Match", "dedup_files", "undo"]
