"""Bad input: one line on stderr, exit code 2, never a traceback."""
import pandas as pd
import pytest


def _one_line_error(proc, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert "Traceback" not in proc.stderr
    assert lines and lines[-1].startswith("harness: error:"), proc.stderr
    for f in fragments:
        assert f in proc.stderr, proc.stderr
    return lines


@pytest.mark.parametrize("args, fragment", [
    (["run", "no_such_method"], "unknown method 'no_such_method'"),
    (["run", "erm", "--dataset", "no_such_data"], "unknown data set 'no_such_data'"),
    (["run", "erm", "--trials", "0"], "trials must be a positive integer"),
    (["run", "erm", "--seeds", "-1"], "seeds must be a positive integer"),
    (["run", "erm", "--sampler", "annealing"], "unknown sampler"),
    (["run", "erm", "--labels-per-class", "0"], "labels_per_class must be a positive integer"),
    (["run", "erm", "--labels-per-class", "5000"], "exceeds the"),
    (["run", "--suite", "missing.yaml"], "suite file not found"),
    (["run", "erm", "--trials", "many"], "invalid int value"),
    (["run"], "name at least one method"),
    (["report", "--out", "nowhere"], "no study storage found"),
    (["--plugin", "no.such.module", "plugins"], "cannot import plugin module 'no.such.module'"),
])
def test_bad_input_is_one_line_and_exit_2(cli, args, fragment):
    lines = _one_line_error(cli(*args), fragment)
    assert len(lines) == 1


def test_malformed_yaml(cli, tmp_path):
    (tmp_path / "bad.yaml").write_text("name: x\nmethods: [erm\n")
    _one_line_error(cli("run", "--suite", "bad.yaml"), "malformed YAML in bad.yaml")
    (tmp_path / "wrong.yaml").write_text("name: x\nmethods: [erm]\ndatasets: [digits]\ntrails: 3\n")
    _one_line_error(cli("run", "--suite", "wrong.yaml"), "unknown suite key(s): trails")


def test_csv_without_target_column(cli, tmp_path):
    pd.DataFrame({"a": range(30), "b": [0, 1, 2] * 10}).to_csv(tmp_path / "d.csv", index=False)
    _one_line_error(cli("run", "logreg", "--dataset", "csv:d.csv", "--target", "label"), "has no column 'label'")
    _one_line_error(cli("run", "logreg", "--dataset", "csv:d.csv"), "needs --target")


def test_csv_with_target_runs(cli, tmp_path):
    pd.DataFrame({"a": [3 * (i % 3) + 0.1 * (i % 7) for i in range(60)], "b": [0.5] * 60, "y": [i % 3 for i in range(60)]}).to_csv(
        tmp_path / "d.csv", index=False)
    proc = cli("run", "logreg", "--dataset", "csv:d.csv", "--target", "y", "--trials", "2", "--seeds", "1",
               "--no-progress", "--out", "o")
    assert proc.returncode == 0, proc.stderr
    assert pd.read_csv(tmp_path / "o" / "summary.csv").accuracy_mean.item() > 0.8


def test_failing_methods_are_recorded_and_the_others_go_on(cli, tmp_path):
    proc = cli("--plugin", "fixture_plugins.broken", "--plugin", "fixture_plugins.centroid", "run",
               "raises", "bad_shape", "nan_loss", "centroid", "--trials", "2", "--seeds", "2", "--epochs", "1",
               "--no-progress", "--out", "o")
    lines = _one_line_error(proc)
    assert any("raises: all 2 trials failed; most often: RuntimeError: deliberate failure in fit" in l for l in lines)
    assert any("bad_shape" in l and "expected 360×10" in l for l in lines)
    assert any("nan_loss" in l and "loss became nan" in l for l in lines)
    summary = pd.read_csv(tmp_path / "o" / "summary.csv")
    ok = summary.set_index("method")
    assert ok.loc["centroid", "status"] == "ok" and ok.loc["centroid", "accuracy_mean"] > 0.85
    assert ok.loc["raises", "status"] == "FAIL" and "deliberate failure" in ok.loc["raises", "reason"]


def test_param_pins_a_value(cli, tmp_path):
    proc = cli("run", "logreg", "--trials", "2", "--seeds", "1", "--param", "C=0.5", "--no-progress", "--out", "o")
    assert proc.returncode == 0, proc.stderr
    assert '"C": 0.5' in pd.read_csv(tmp_path / "o" / "per_seed.csv").config.item()
    _one_line_error(cli("run", "logreg", "--param", "C"), "--param expects KEY=VALUE")


def test_datasets_and_plugins_listings(cli):
    datasets = cli("datasets")
    assert datasets.returncode == 0 and "mnist5k" in datasets.stdout and "csv:<arg>" in datasets.stdout
    plugins = cli("plugins")
    assert plugins.returncode == 0
    for word in ("supervised", "built-in", "label_smoothing", "--spaces"):
        assert word in plugins.stdout
    spaces = cli("plugins", "--spaces")
    assert spaces.returncode == 0, spaces.stdout[-2000:]
    for word in ("optimizer", "search space"):
        assert word in spaces.stdout


def test_a_row_can_run_on_some_data_sets_with_its_own_budget(cli, tmp_path):
    (tmp_path / "s.yaml").write_text(
        "name: s\ndatasets: [{name: digits, labels_per_class: 5}, digits]\ntrials: 1\nseeds: 1\nepochs: 1\n"
        "methods:\n"
        "  - {method: logreg, tune: false}\n"
        "  - {method: knn, name: few, tune: false, datasets: [digits@5pc], params: {n_neighbors: 1}}\n"
        "  - {method: knn, name: few, tune: false, datasets: [digits], params: {n_neighbors: 5}}\n")
    proc = cli("run", "--suite", "s.yaml", "--no-progress", "--out", "o")
    assert proc.returncode == 0, proc.stderr
    per_seed = pd.read_csv(tmp_path / "o" / "per_seed.csv")
    assert sorted(zip(per_seed.dataset, per_seed.method)) == [
        ("digits", "few"), ("digits", "logreg"), ("digits@5pc", "few"), ("digits@5pc", "logreg")]
    few = per_seed[per_seed.method == "few"].set_index("dataset").config
    assert '"n_neighbors": 1' in few["digits@5pc"] and '"n_neighbors": 5' in few["digits"]


@pytest.mark.parametrize("rows, fragment", [
    ("[{method: knn, datasets: [iris]}]", "knn: datasets iris not in the suite"),
    ("[knn, {method: knn, datasets: [digits]}]", "duplicate row names knn on digits"),
    ("[{method: knn, datasets: digits@5}]", None),
])
def test_row_data_sets_are_checked(cli, tmp_path, rows, fragment):
    (tmp_path / "s.yaml").write_text(f"datasets: [digits]\nmethods: {rows}\n")
    proc = cli("run", "--suite", "s.yaml", "--trials", "1", "--seeds", "1", "--no-progress", "--out", "o")
    _one_line_error(proc, fragment or "datasets digits@5 not in the suite")


def test_threads_auto_leaves_busy_cores_alone(monkeypatch):
    from harness.cli import threads_for
    from harness.errors import ConfigError

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr("os.getloadavg", lambda: (0.1, 0.1, 0.1))
    assert threads_for("auto") == 2
    monkeypatch.setattr("os.getloadavg", lambda: (1.2, 0.5, 0.5))
    assert threads_for("auto") == 1
    monkeypatch.setattr("os.getloadavg", lambda: (6.0, 6.0, 6.0))
    assert threads_for("auto") == 1
    assert threads_for("3") == 3
    for bad in ("0", "x", "-1"):
        with pytest.raises(ConfigError, match="positive integer or auto"):
            threads_for(bad)
