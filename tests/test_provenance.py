"""Provenance: no credential anywhere in a result, the code that ran named by the harness's own
checkout, and rows computed with different thread counts or devices flagged."""
from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from harness.report.provenance import git_commit, mixed_settings, provenance_markdown

from conftest import REPO, run_cli
from pg import Cluster, server_bin

RUN = ("--threads", "1", "run", "logreg", "--trials", "1", "--seeds", "1", "--no-progress")


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def _files_holding(folder: Path, secret: str) -> list[str]:
    return [str(p.relative_to(folder)) for p in folder.rglob("*")
            if p.is_file() and secret.encode() in p.read_bytes()]


@pytest.mark.postgres
def test_a_storage_password_reaches_no_file_and_no_message(tmp_path):
    if server_bin() is None:
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql)")
    secret = "Pw" + uuid.uuid4().hex
    cluster = Cluster().start()
    try:
        cluster.sql(f"CREATE ROLE leaky LOGIN PASSWORD '{secret}'")
        db = cluster.database().rsplit("/", 1)[1]
        cluster.sql("GRANT ALL ON SCHEMA public TO leaky", db)
        url = f"postgresql://leaky:{secret}@127.0.0.1:{cluster.port}/{db}"

        run = run_cli(*RUN, "--storage", url, "--out", "o", cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        report = run_cli("report", "--storage", url, "--out", "o", cwd=tmp_path)
        assert report.returncode == 0, report.stderr
        missing = url.rsplit("/", 1)[0] + "/no_such_db"
        bad = run_cli(*RUN, "--storage", missing, "--out", "bad", cwd=tmp_path)
        worker = run_cli("worker", "--study", "run/digits/nope", "--storage", url, "--wait", "1", cwd=tmp_path)
    finally:
        cluster.stop()
    assert bad.returncode == 2 and bad.stderr.startswith("harness: error:"), bad.stderr
    prov = json.loads((tmp_path / "o" / "provenance.json").read_text())
    assert "leaky:***@" in prov["command"]  # recorded, masked
    assert _files_holding(tmp_path, secret) == []
    for proc in (run, report, bad, worker):
        assert secret not in proc.stdout + proc.stderr


def test_a_run_from_outside_any_checkout_names_the_harness_commit(tmp_path):
    run = run_cli(*RUN, "--out", "o", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    prov = json.loads((tmp_path / "o" / "provenance.json").read_text())
    assert prov["git_commit"].removesuffix("+dirty") == _git(REPO, "rev-parse", "HEAD")
    assert prov["harness_version"] and prov["torch_threads"] == 1
    assert prov["plugins"]["sklearn"].startswith("harness-automl ")
    summary = (tmp_path / "o" / "summary.md").read_text()
    assert prov["git_commit"] in summary and "torch threads" in summary


def test_a_run_inside_another_repository_does_not_name_its_commit(tmp_path):
    _git(tmp_path, "init", "-q")
    (tmp_path / "f").write_text("x")
    _git(tmp_path, "add", "f")
    _git(tmp_path, "-c", "user.name=a", "-c", "user.email=a@b", "commit", "-qm", "unrelated")
    other = _git(tmp_path, "rev-parse", "HEAD")
    run = run_cli(*RUN, "--out", "o", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    prov = json.loads((tmp_path / "o" / "provenance.json").read_text())
    assert other not in prov["git_commit"]
    assert prov["git_commit"].removesuffix("+dirty") == _git(REPO, "rev-parse", "HEAD")


def test_a_folder_inside_a_repository_is_not_a_checkout_of_the_harness(tmp_path):
    _git(tmp_path, "init", "-q")
    (tmp_path / "site-packages").mkdir()
    assert git_commit(tmp_path / "site-packages") == "not a git checkout"
    assert git_commit(tmp_path / "nowhere") == "not a git checkout"


def test_rows_with_different_threads_or_devices_are_flagged():
    same = {"device": "cpu", "torch_threads": 1, "earlier_runs": [
        {"rows": ["digits · knn"], "device": "cpu", "hardware": "x, 2 logical CPUs, torch threads 1"}]}
    assert mixed_settings(same) is None
    mixed = {"device": "cpu", "torch_threads": 2, "earlier_runs": [
        {"rows": ["digits · knn"], "device": "cpu", "torch_threads": 1}]}
    note = mixed_settings(mixed)
    assert note and "different thread counts or devices" in note and "digits · knn" in note
    assert note in provenance_markdown(mixed)


def test_a_report_over_runs_with_different_thread_counts_says_so(tmp_path):
    one = run_cli("--threads", "1", "run", "logreg", "--trials", "1", "--seeds", "1", "--no-progress", "--out", "o",
                  cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    assert "different thread counts" not in (tmp_path / "o" / "summary.md").read_text()
    two = run_cli("--threads", "2", "run", "knn", "--trials", "1", "--seeds", "1", "--no-progress", "--out", "o",
                  cwd=tmp_path)
    assert two.returncode == 0, two.stderr
    report = run_cli("report", "--out", "o", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    for page in ("summary.md", "index.html"):
        text = (tmp_path / "o" / page).read_text()
        assert "different thread counts or devices" in text and "digits · logreg" in text, page


def test_a_checkout_is_dirty_for_code_changes_not_for_its_results(tmp_path):

    repo = tmp_path / "checkout"
    (repo / "results").mkdir(parents=True)
    (repo / "results" / "summary.csv").write_text("a\n")
    (repo / "code.py").write_text("x = 1\n")
    for args in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    head = _git(repo, "rev-parse", "HEAD")
    (repo / "results" / "summary.csv").write_text("b\n")
    assert git_commit(repo) == head
    (repo / "code.py").write_text("x = 2\n")
    assert git_commit(repo) == head + "+dirty"
