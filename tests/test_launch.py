"""``harness launch``: the commands per machine and the SLURM script, tested on their dry run."""
from __future__ import annotations

import subprocess

from harness.cli import main

URL = "postgresql://alice:s3cret-pw@db.example:5432/harness"
SUITE = "name: wide\ndatasets: [digits, cora]\nmethods: [erm, gcn]\ntrials: 4\nseeds: 2\n"


def _suite(tmp_path):
    path = tmp_path / "wide.yaml"
    path.write_text(SUITE)
    return str(path)


def test_dry_run_prints_each_machines_commands_without_the_password(tmp_path, capsys):
    suite = _suite(tmp_path)
    script = tmp_path / "job.sh"
    assert main(["--threads", "2", "launch", "--suite", suite, "--storage", URL, "--machines", "3",
                 "--slurm", str(script), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "s3cret-pw" not in out
    assert "export HARNESS_STORAGE='postgresql://alice:***@db.example:5432/harness'" in out
    assert not script.exists()  # --dry-run writes nothing
    machines = out.split("# machine ")[1:]
    assert [m.split(":", 1)[0] for m in machines] == ["1 of 3", "2 of 3", "3 of 3"]
    assert f'harness --threads 2 run --suite {suite} --storage "$HARNESS_STORAGE" --out results/wide' in machines[0]
    # gcn cannot take digits (an image task): no study, so no worker for it
    worker = [line for line in machines[1].splitlines() if line.startswith("harness")]
    assert [line.split("--study ")[1].split()[0] for line in worker] == ["wide/digits/erm", "wide/cora/erm", "wide/cora/gcn"]
    assert all('--storage "$HARNESS_STORAGE"' in line and "--wait 3600" in line for line in worker)
    assert "#SBATCH --array=0-2" in out and 'if [ "${SLURM_ARRAY_TASK_ID:-0}" -eq 0 ]; then' in out


def test_the_written_slurm_script_is_valid_shell_and_holds_no_password(tmp_path, capsys):
    script = tmp_path / "job.sh"
    assert main(["launch", "--suite", _suite(tmp_path), "--storage", URL, "--machines", "2", "--slurm", str(script),
                 "--cpus-per-task", "8"]) == 0
    text = script.read_text()
    assert "s3cret" not in text and "#SBATCH --cpus-per-task=8" in text
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    # Without the storage variable the job stops at once, naming it.
    ran = subprocess.run(["bash", str(script)], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert ran.returncode != 0 and "HARNESS_STORAGE" in ran.stderr
    assert f"sbatch {script}" in capsys.readouterr().out


def test_a_file_storage_or_no_machines_is_one_line_error(tmp_path, capsys):
    suite = _suite(tmp_path)
    assert main(["launch", "--suite", suite, "--storage", "sqlite:///x.db", "--machines", "2"]) == 2
    assert main(["launch", "--suite", suite, "--storage", URL, "--machines", "0"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("harness: error: --storage 'sqlite:///x.db' is not reachable from other machines")
    assert err[1] == "harness: error: --machines must be a positive integer, got 0"
