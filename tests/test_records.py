"""The stored records: versioned, migrated on read, refused when newer than the code."""
from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest

from harness import records
from harness.errors import ConfigError
from harness.records import SCHEMA_VERSION, Budget, StudyMeta, collect_provenance, collect_rows, harness_studies
from harness.storage import make_storage

COMMITTED = Path(__file__).resolve().parents[1] / "results" / "default" / "optuna.journal"


def test_a_study_meta_round_trips():
    meta = StudyMeta(suite="s", dataset="digits", row="erm", method="erm", objectives=("accuracy", "ece"),
                     budget=Budget(trials=3, seeds=2, epochs=5, params={"lr": 0.1}))
    assert StudyMeta.from_attr(meta.to_attr()) == meta
    assert meta.to_attr()["schema"] == SCHEMA_VERSION


def test_a_record_without_a_version_is_migrated():
    old = {"suite": "s", "dataset": "d", "row": "r", "method": "m", "objectives": ["accuracy"], "cash": [],
           "sizes": {"n_train": 10}}
    meta = StudyMeta.from_attr(old)
    assert meta.budget is None and meta.objectives == ("accuracy",) and meta.schema == SCHEMA_VERSION


def test_a_newer_record_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="newer harness") as err:
        StudyMeta.from_attr({"suite": "s", "dataset": "d", "row": "r", "method": "m", "schema": SCHEMA_VERSION + 1})
    assert "\n" not in str(err.value)


@pytest.mark.skipif(not COMMITTED.exists(), reason="no committed results")
def test_the_committed_journal_still_loads(tmp_path):
    shutil.copy(COMMITTED, tmp_path / "optuna.journal")
    storage = make_storage(None, tmp_path)
    studies = harness_studies(storage)
    assert studies and all(meta.schema == SCHEMA_VERSION for _, meta in studies)
    rows = collect_rows(storage)
    assert rows and all(r["status"] in ("ok", "FAIL") for r in rows)
    assert {r["dataset"] for r in rows} == {meta.dataset for _, meta in studies}
    assert collect_provenance(storage)["suite"] == studies[0][1].suite


def test_a_newer_study_in_the_storage_stops_the_report(tmp_path):
    storage = make_storage(None, tmp_path)
    study = optuna.create_study(storage=storage, study_name="x")
    study.set_user_attr(records.META, {"suite": "s", "dataset": "d", "row": "r", "method": "m", "schema": 99})
    with pytest.raises(ConfigError, match="record schema 99"):
        collect_rows(storage)
