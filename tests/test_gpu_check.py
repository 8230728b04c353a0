"""benchmarks/gpu_check.sh: refuses CUDA it does not have in one line; its plumbing runs on a CPU."""
from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch

from conftest import REPO, harness_env

SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


def _check(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=harness_env(PYTHON=sys.executable, OMP_NUM_THREADS="1"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="refusal is for machines without CUDA")
def test_asking_for_cuda_without_it_is_one_line_and_exit_2(tmp_path):
    ran = _check("--out", str(tmp_path / "gpu"))
    assert ran.returncode == 2
    assert ran.stderr.splitlines() == [
        "gpu_check.sh: error: --device cuda, but torch sees no CUDA device (use --device cpu --quick for the plumbing)"]
    assert not (tmp_path / "gpu").exists()


def test_quick_cpu_check_writes_every_part_with_provenance(tmp_path):
    out = tmp_path / "gpu"
    ran = _check("--device", "cpu", "--quick", "--out", str(out))
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["steps"] == {"bench-digits": 0, "overhead": 0, "overhead-compile": 0}
    assert prov["compile_step_env"] == "TORCH_COMPILE_DISABLE=1"  # said so, not hidden
    for part in ("overhead", "overhead-compile"):
        summary = pd.read_csv(out / part / "cpu" / "overhead.csv")
        assert list(summary.workload) == ["mlp-digits"] and (summary.ratio_median > 0).all()
    assert json.loads((out / "overhead-compile" / "cpu" / "provenance.json").read_text())["compile"] is True
    assert set(pd.read_csv(out / "bench-digits" / "bench.csv").method) == {"erm", "logreg"}
    assert set(pd.read_csv(out / "bench-digits" / "bench.csv").status) == {"ok"}
