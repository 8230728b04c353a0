"""Plugin loading, validation and the hook API, exercised the way a third party would."""
import subprocess
import sys
import types

import pytest
import torch

from harness import MethodInfo, hookimpl
from harness.errors import PluginError, PluginOutputError, UnknownMethodError
from harness.plugins import check_probabilities, load_plugins

from conftest import REPO, harness_env, run_cli

CORE_PLUGINS = {"datasets", "supervised", "sklearn"}


def test_builtins_load_through_the_entry_point_group(registry):
    assert CORE_PLUGINS <= set(registry.plugins)
    for name in CORE_PLUGINS:
        assert registry.plugins[name].source == "built-in"
    assert {"erm", "mixup", "label_smoothing", "logreg", "svc", "random_forest", "knn"} <= set(registry.methods)
    assert {"digits", "mnist5k", "iris", "wine", "breast_cancer", "csv", "tv"} <= set(registry.datasets)
    assert not [p for p in registry.problems if p.plugin in CORE_PLUGINS]


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
    """pip-install the example third-party package into a private target folder (no network)."""
    target = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(REPO / "examples" / "harness-lda")],
        capture_output=True, text=True, timeout=300,
    )
    if proc.returncode != 0:
        pytest.fail(f"pip could not install the example plugin: {proc.stderr[-2000:]}")
    return target


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
