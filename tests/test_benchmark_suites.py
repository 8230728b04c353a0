"""Every committed suite under benchmarks/ stays runnable: it loads, validates, names only known
methods, and every pinned value fits its method's search space (so the committed results can be
recomputed with the command their provenance records)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harness.configs import check_pinned
from harness.runner import plan_suite, row_task
from harness.suite import load_suite

SUITES = sorted((Path(__file__).parent.parent / "benchmarks").glob("*.yaml"))


@pytest.mark.parametrize("path", SUITES, ids=[p.stem for p in SUITES])
def test_committed_suite_is_runnable(path, registry, tmp_path):
    suite = load_suite(path)
    tasks: dict[str, dict] = {}
    plans = plan_suite(suite, registry, tmp_path, None)
    assert plans
    for plan in plans:
        task = row_task(registry, suite, plan.ds, plan.row, torch.device("cpu"), tasks.setdefault(plan.ds.label, {}))
        if task.kind not in plan.method.info.kinds:
            continue
        known = check_pinned(plan.method, task.without_test(), suite.budget(plan.row).params)
        unknown = set(plan.row.params) - known
        assert not unknown, f"{plan.row.name}: unknown pinned keys {unknown}"
