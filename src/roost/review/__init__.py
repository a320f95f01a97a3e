"""Visual review of batch-job reports: ``review_report`` writes a page to look at and decide on; ``apply_decisions``
carries out the decisions it exports."""

from roost.review.apply import apply_decisions, read_decisions
from roost.review.kinds import Kind, read_report
from roost.review.page import Only, ReviewOptions, Sort, review_report

__all__ = ["Kind", "Only", "ReviewOptions", "Sort", "apply_decisions", "read_decisions", "read_report", "review_report"]
