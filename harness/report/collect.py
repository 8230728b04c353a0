"""Per-seed rows and provenance read back from a storage: the queries live in :mod:`harness.records`."""
from __future__ import annotations

from typing import Any

from harness import records
from harness.records import collect_provenance, collect_rows

META_KEY = records.META


def harness_studies(storage, suite: str | None = None) -> list[tuple[Any, dict[str, Any]]]:
    """(study summary, ``harness`` record as a dict) of every harness study, in table order."""
    return [(summary, meta.to_attr()) for summary, meta in records.harness_studies(storage, suite)]


__all__ = ["META_KEY", "collect_provenance", "collect_rows", "harness_studies"]
