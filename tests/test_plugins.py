"""Plugin loading, validation and the hook API, exercised the way a third party would."""
import subprocess
import sys
import types

import pytest
import torch

from harness import MethodInfo, hookimpl
from harness.errors import PluginError, PluginOutputError, UnknownMethodError
from harness.plugins import ENTRY_POINT_GROUP, check_probabilities, load_plugins

from conftest import REPO, harness_env, run_cli

CORE_PLUGINS = {"datasets", "supervised", "sklearn"}


def test_builtins_load_through_the_entry_point_group(registry):
    assert CORE_PLUGINS <= set(registry.plugins)
    for name in CORE_PLUGINS:
        assert registry.plugins[name].source == "built-in"
    assert {"erm", "mixup", "label_smoothing", "logreg", "svc", "random_forest", "knn"} <= set(registry.methods)
    assert {"digits", "mnist5k", "iris", "wine", "breast_cancer", "csv", "tv"} <= set(registry.datasets)
    assert not [p for p in registry.problems if p.plugin in CORE_PLUGINS]


def test_example_plugin_depends_on_this_distribution_and_its_group():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    from harness.plugins import DISTRIBUTION, ENTRY_POINT_GROUP

    ours = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    example = tomllib.loads((REPO / "examples" / "harness-lda" / "pyproject.toml").read_text())["project"]
    assert ours["name"] == DISTRIBUTION and ENTRY_POINT_GROUP in ours["entry-points"]
    assert DISTRIBUTION in example["dependencies"] and ENTRY_POINT_GROUP in example["entry-points"]


def test_every_builtin_plugin_loads_without_problems(registry):
    assert [str(p) for p in registry.problems] == []


def test_method_hooks_reach_only_the_owner(registry):
    erm = registry.method("erm")
    assert erm.plugin == "supervised"
    assert registry.method("svc").plugin == "sklearn"


def test_unknown_method_is_a_one_line_error(registry):
    with pytest.raises(UnknownMethodError, match="unknown method 'nope'"):
        registry.method("nope")


def test_patterns_select_methods(registry):
    assert registry.match_methods(["label_*", "erm"]) == ["label_smoothing", "erm"]


def test_broken_plugins_are_reported_and_do_not_hide_the_others():
    reg = load_plugins(modules=["fixture_plugins.centroid"])
    for bad in ("fixture_plugins.bad_signature", "fixture_plugins.unknown_hook", "fixture_plugins.duplicate"):
        import importlib

        reg.add(importlib.import_module(bad), bad, f"module {bad}")
    reg._bind()
    problems = {p.plugin: p.message for p in reg.problems}
    assert "learning_rate" in problems["fixture_plugins.bad_signature"]
    assert "harness_fitt" in problems["fixture_plugins.unknown_hook"]
    assert "'erm' is declared by plugin 'supervised' (built-in) and by plugin 'fixture_plugins.duplicate'" \
        in problems["fixture_plugins.duplicate"]
    # The duplicate's other method and every other plugin still work; the clashing name runs nowhere.
    assert reg.method("uniform").plugin == "fixture_plugins.duplicate"
    assert reg.method("centroid").plugin == "fixture_plugins.centroid"
    with pytest.raises(PluginError, match="'supervised' .* and by plugin 'fixture_plugins.duplicate'.*replaces='erm'"):
        reg.method("erm")
    assert "erm" in reg.match_methods(["e*"])  # a pattern cannot quietly skip it


def _plugin(name: str, *infos: MethodInfo) -> types.ModuleType:
    """A plugin object whose methods predict the uniform distribution."""
    def methods():
        return list(infos)

    def space(method, trial, task):
        return {}

    def fit(method, task, config, ctx):
        return task.num_classes

    def evaluate(method, fitted, split, ctx):
        return torch.full((len(split), fitted), 1.0 / fitted)

    hooks = {"harness_methods": methods, "harness_search_space": space, "harness_fit": fit,
             "harness_evaluate": evaluate}
    for hook_name, fn in hooks.items():
        fn.__name__ = hook_name
    module = types.ModuleType(name)
    for hook_name, fn in hooks.items():
        setattr(module, hook_name, hookimpl(fn))
    return module


def test_replaces_overrides_a_builtin_on_purpose_and_only_a_builtin():
    reg = load_plugins()
    reg.add(_plugin("mine", MethodInfo("erm", ("image",), "my erm", replaces="erm")), "mine", "module mine")
    reg.add(_plugin("other", MethodInfo("erm", ("image",), "yet another", replaces="erm")), "other", "module other")
    reg._bind()
    assert reg.plugins["mine"].replaces == {"erm": "supervised"}
    assert "erm" not in reg.plugins["supervised"].methods
    # A second override of the same name clashes with the first, which is no built-in.
    with pytest.raises(PluginError, match="'mine' .* and by plugin 'other'.*may only override a built-in"):
        reg.method("erm")
    reg = load_plugins()
    reg.add(_plugin("mine", MethodInfo("erm", ("image",), "my erm", replaces="erm")), "mine", "module mine")
    reg._bind()
    assert reg.method("erm").plugin == "mine" and not reg.problems


def test_plugin_module_that_fails_to_import_is_a_plugin_error():
    with pytest.raises(PluginError, match="import_error"):
        load_plugins(modules=["fixture_plugins.import_error"])


def test_method_without_fit_is_reported():
    plugin = types.SimpleNamespace(
        harness_methods=hookimpl(lambda: [MethodInfo("half", ("image",), "declares but does not fit")]),
    )
    plugin.harness_methods.__name__ = "harness_methods"
    reg = load_plugins(entry_points=False)
    reg.add(plugin, "half", "module half")
    assert any("lacks harness_search_space, harness_fit, harness_evaluate" in p.message for p in reg.problems)
    assert "half" not in reg.methods


def test_check_probabilities():
    good = torch.tensor([[0.2, 0.8], [1.0, 0.0]])
    assert check_probabilities(good, 2, 2, "m").dtype == torch.float64
    with pytest.raises(PluginOutputError, match="shape"):
        check_probabilities(torch.ones(3, 2) / 2, 2, 2, "m")
    with pytest.raises(PluginOutputError, match="sum to one"):
        check_probabilities(torch.ones(2, 2), 2, 2, "m")
    with pytest.raises(PluginOutputError, match="NaN"):
        check_probabilities(torch.tensor([[float("nan"), 1.0]]), 1, 2, "m")
    with pytest.raises(PluginOutputError, match="not an N×K tensor"):
        check_probabilities("nonsense", 1, 2, "m")


def test_hook_tracing_switch(tmp_path):
    out = run_cli("--plugin", "fixture_plugins.centroid", "plugins", "--check", "centroid",
                  env=harness_env(HARNESS_TRACE="1"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "harness_fit" in out.stderr and "harness_evaluate" in out.stderr


def test_conformance_check_passes_a_good_plugin_and_names_problems_of_a_bad_one(tmp_path):
    good = run_cli("--plugin", "fixture_plugins.centroid", "plugins", "--check", "fixture_plugins.centroid", cwd=tmp_path)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "ok centroid on digits" in good.stdout
    bad = run_cli("--plugin", "fixture_plugins.broken", "plugins", "--check", "fixture_plugins.broken", cwd=tmp_path)
    assert bad.returncode == 1
    assert "deliberate failure in fit" in bad.stdout
    assert "expected 360×10" in bad.stdout
    assert "do not sum to one" in bad.stdout
    assert "loss became nan" in bad.stdout


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory):
    """pip-install both example third-party packages into a private target folder (no network)."""
    target = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(REPO / "examples" / "harness-lda"), str(REPO / "examples" / "harness-focal")],
        capture_output=True, text=True, timeout=300,
    )
    if proc.returncode != 0:
        pytest.fail(f"pip could not install the example plugins: {proc.stderr[-2000:]}")
    return target


def test_installed_deep_learning_example_passes_the_check_and_runs(installed_example, tmp_path):
    import pandas as pd

    env = harness_env(HARNESS_PLUGINS="datasets,focal")
    env["PYTHONPATH"] = f"{installed_example}:{env['PYTHONPATH']}"
    check = run_cli("--threads", "1", "plugins", "--check", "focal", env=env, cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "ok focal on digits (plugin 'focal')" in check.stdout and "ok focal on iris" in check.stdout
    run = run_cli("--threads", "1", "run", "focal", "--dataset", "digits", "--dataset", "iris", "--trials", "1",
                  "--seeds", "1", "--epochs", "3", "--no-progress", "--out", str(tmp_path / "out"), env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    rows = pd.read_csv(tmp_path / "out" / "per_seed.csv")
    assert set(rows.dataset) == {"digits", "iris"} and (rows.status == "ok").all()


def test_installed_third_party_plugin_is_listed_and_runs(installed_example, tmp_path):
    env = harness_env()
    env["PYTHONPATH"] = f"{installed_example}:{env['PYTHONPATH']}"
    listing = run_cli("plugins", "--json", env=env, cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    import json

    data = json.loads(listing.stdout)
    lda = next(p for p in data["plugins"] if p["name"] == "lda")
    assert lda["source"] == "package harness-lda 0.1.0" and lda["methods"] == ["lda"]
    assert "shrinkage_mode" in data["methods"]["lda"]["search_space"]
    run = run_cli("run", "lda", "--dataset", "digits", "--trials", "2", "--seeds", "2", "--no-progress",
                  "--out", str(tmp_path / "out"), env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    table = (tmp_path / "out" / "summary.csv").read_text()
    assert "lda" in table
    import pandas as pd

    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert summary.loc[summary.method == "lda", "accuracy_mean"].item() > 0.85


# -- broken plugins, as installed packages ------------------------------------------------------------
# Each case: entry-point name, module, the method a run asks for, what every message must say, and
# whether the plugin breaks at load time (exit 2 before any work) or at run time (its rows FAIL).
BROKEN = [
    ("cutmix", "fixture_plugins.import_error", "cutmix",
     "harness-fixture-cutmix 0.1 names module fixture_plugins.import_error, whose import raised "
     "ModuleNotFoundError: No module named 'a_module_that_does_not_exist'", "load"),
    ("dup", "fixture_plugins.duplicate", "erm",
     "method 'erm' is declared by plugin 'supervised' (built-in) and by plugin 'dup'", "load"),
    ("shape", "fixture_plugins.wrong_shape", "wrong_shape", "harness_evaluate returned shape", "run"),
    ("unnormalised", "fixture_plugins.unnormalised", "unnormalised", "rows do not sum to one", "run"),
    ("nan", "fixture_plugins.nan_probs", "nan_probs", "probabilities contain NaN", "run"),
    ("npconfig", "fixture_plugins.numpy_config", "numpy_config", "config key 'temperature' holds numpy.float32",
     "sample"),
    ("devconfig", "fixture_plugins.device_config", "device_config", "config key 'device' holds torch.device",
     "sample"),
    ("peek", "fixture_plugins.peeks_test", "peeks_test", "the test split is withheld from harness_fit", "run"),
    ("kinddefaults", "fixture_plugins.kind_defaults", "kind_defaults", ("parameter 'model'", "tabular task", "'cnn'"),
     "defaults"),
]


def _says(says: str | tuple[str, ...], line: str) -> bool:
    return all(part in line for part in ((says,) if isinstance(says, str) else says))


def _install_entry_point(site, dist: str, name: str, module: str) -> None:
    """What ``pip install`` leaves behind for a plugin package: a dist-info folder with the entry point."""
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{name} = {module}\n")


def _env(site, *plugins: str) -> dict[str, str]:
    """PYTHONPATH with ``site``; only the data sets, ``supervised`` (it owns ``erm``) and ``plugins`` load."""
    env = harness_env(HARNESS_PLUGINS=",".join(("datasets", "supervised", *plugins)))
    env["PYTHONPATH"] = f"{site}:{env['PYTHONPATH']}"
    return env


RUN = ("--threads", "1", "run", "--dataset", "iris", "--trials", "1", "--seeds", "1", "--no-progress")


@pytest.fixture(scope="module")
def centroid_alone(tmp_path_factory):
    """The centroid rows of a run without any broken plugin, to compare against."""
    import pandas as pd

    site = tmp_path_factory.mktemp("site")
    _install_entry_point(site, "harness-fixture-centroid", "centroid", "fixture_plugins.centroid")
    out = site / "out"
    proc = run_cli(*RUN, "centroid", "--out", str(out), env=_env(site, "centroid"), cwd=site)
    assert proc.returncode == 0, proc.stderr
    return pd.read_csv(out / "per_seed.csv")


@pytest.mark.parametrize("name,module,method,says,when", BROKEN, ids=[c[0] for c in BROKEN])
def test_a_broken_plugin_is_named_by_plugins_check_and_run(name, module, method, says, when, tmp_path,
                                                           centroid_alone):
    import pandas as pd

    site = tmp_path / "site"
    _install_entry_point(site, f"harness-fixture-{name}", name, module)
    _install_entry_point(site, "harness-fixture-centroid", "centroid", "fixture_plugins.centroid")
    env = _env(site, name, "centroid")

    # Search spaces and defaults are sampled only with --spaces (the plain listing stays quick).
    listing = run_cli("--threads", "1", "plugins", *(["--spaces"] if when in ("sample", "defaults") else []),
                      env=env, cwd=tmp_path)
    if when in ("load", "sample", "defaults"):
        assert listing.returncode == 1, listing.stdout + listing.stderr
        first = listing.stdout.splitlines()[0]  # problems come first
        assert first.startswith(f"problem plugin '{name}'") and _says(says, first), listing.stdout[:2000]
    else:  # only running the method shows the problem
        assert listing.returncode == 0, listing.stdout[:2000] + listing.stderr

    check = run_cli("--threads", "1", "plugins", "--check", name, env=env, cwd=tmp_path)
    if when == "load":
        assert check.returncode == 2, check.stdout + check.stderr
        assert check.stderr.count("\n") == 1 and check.stderr.startswith(f"harness: error: plugin '{name}'")
        assert _says(says, check.stderr)
    else:
        assert check.returncode == 1, check.stdout + check.stderr
        lines = [ln for ln in check.stdout.splitlines() if "problem:" in ln]
        assert lines and all(f"plugin '{name}', method '{method}'" in ln for ln in lines), check.stdout
        assert any(_says(says, ln) for ln in lines), check.stdout
        if when == "defaults":  # valid for images, not for tables
            assert "ok kind_defaults on digits" in check.stdout and "FAIL kind_defaults on iris" in check.stdout

    out = tmp_path / "out"
    run = run_cli(*RUN, method, "centroid", "--out", str(out), env=env, cwd=tmp_path)
    assert run.returncode == 2, run.stdout + run.stderr
    errors = [ln for ln in run.stderr.splitlines() if ln.startswith("harness: error:")]
    assert len(errors) == 1 and _says(says, errors[0]), run.stderr
    if when == "load":
        assert f"plugin '{name}'" in errors[0]
        assert not out.exists()  # refused before any work
        return
    assert errors[0].startswith(f"harness: error: iris · {method}: ") and errors[0].endswith(f"(plugin '{name}')")
    rows = pd.read_csv(out / "per_seed.csv")
    assert (rows.loc[rows.method == method, "status"] == "FAIL").all()
    mine = rows[rows.method == "centroid"].reset_index(drop=True)
    alone = centroid_alone.reset_index(drop=True)
    for col in ("seed", "accuracy", "nll", "ece", "brier"):
        assert mine[col].tolist() == alone[col].tolist(), col


def test_run_warns_once_at_the_top_about_a_broken_plugin_it_does_not_use(tmp_path):
    site = tmp_path / "site"
    _install_entry_point(site, "harness-fixture-cutmix", "cutmix", "fixture_plugins.import_error")
    _install_entry_point(site, "harness-fixture-centroid", "centroid", "fixture_plugins.centroid")
    run = run_cli(*RUN, "centroid", "--out", str(tmp_path / "out"), env=_env(site, "cutmix", "centroid"), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    warnings = [ln for ln in run.stderr.splitlines() if "cutmix" in ln]
    assert len(warnings) == 1 and warnings[0].startswith("harness: warning: plugin 'cutmix': failed to load")
    assert run.stderr.splitlines()[0] == warnings[0]


def test_plugin_distributions_are_recorded_in_the_provenance(tmp_path):
    from harness.plugins import plugin_distributions
    from harness.report.provenance import gather
    from harness.report.provenance import provenance_markdown

    site = tmp_path / "site"
    _install_entry_point(site, "harness-fixture-centroid", "centroid", "fixture_plugins.centroid")
    sys.path.insert(0, str(site))
    try:
        import importlib

        importlib.invalidate_caches()
        reg = load_plugins(modules=["fixture_plugins.duplicate"])
    finally:
        sys.path.remove(str(site))
    dists = plugin_distributions(reg)
    assert dists["centroid"] == "harness-fixture-centroid 0.1"
    assert dists["supervised"].startswith("harness-automl ")
    assert dists["fixture_plugins.duplicate"] == "module fixture_plugins.duplicate"
    prov = gather(plugins=dists)
    assert prov["plugins"] == dists
    assert "centroid (harness-fixture-centroid 0.1)" in provenance_markdown(prov)


def test_new_plugin_writes_a_package_that_installs_and_passes_the_check_and_its_test(tmp_path):
    made = run_cli("new-plugin", "demo", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    target = tmp_path / "site"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=300,
    )
    assert pip.returncode == 0, pip.stderr[-2000:]
    env = harness_env(HARNESS_PLUGINS="datasets,demo")
    env["PYTHONPATH"] = f"{target}:{env['PYTHONPATH']}"
    check = run_cli("--threads", "1", "plugins", "--check", "demo", env=env, cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "ok demo on digits" in check.stdout and "ok demo on iris" in check.stdout
    own = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "demo" / "tests")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert own.returncode == 0, own.stdout[-3000:] + own.stderr[-2000:]
    again = run_cli("new-plugin", "demo", cwd=tmp_path)
    assert again.returncode == 2 and again.stderr.startswith("harness: error:") and "not empty" in again.stderr
    bad = run_cli("new-plugin", "Demo-1", cwd=tmp_path)
    assert bad.returncode == 2 and "lower case" in bad.stderr
