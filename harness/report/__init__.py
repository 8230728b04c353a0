"""Tables and provenance built from what the study storage holds."""
from harness.report.collect import collect_rows
from harness.report.pipeline import Report, build
from harness.report.tables import aggregate, per_seed_frame

__all__ = ["collect_rows", "aggregate", "per_seed_frame", "build", "Report"]
