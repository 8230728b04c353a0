"""The names third-party plugins are written against stay importable, wherever their code lives."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# The documented surface: module -> names a plugin may import from it.
PUBLIC = {
    "harness": ["MethodInfo", "hookimpl", "FitContext", "Task", "Split", "DatasetInfo", "DatasetRequest",
                "RawDataset"],
    "harness.errors": ["HarnessError", "ConfigError", "DataError", "PluginError", "UnknownMethodError",
                       "PluginOutputError", "DivergedError"],
    "harness.toolkit.models": ["network_from_config", "create_model", "Classifier", "list_models",
                               "register_model", "count_parameters"],
    "harness.toolkit.train": ["TrainConfig", "train", "predict_proba", "predict_logits", "val_accuracy",
                              "suggest_optimizer", "EMA", "autocast", "OPTIMIZERS", "sigmoid_rampup"],
    "harness.toolkit.augment": ["Augment", "augment_from_config"],
    "harness.toolkit.pretrain": ["PRETRAIN_DEFAULTS", "PROBE_DEFAULTS", "VIEW_STRENGTHS", "SelfSupervised",
                                 "cached_pretrain", "data_digest", "encoder_spec", "fit_probe", "freeze",
                                 "pretrain_self_supervised", "pretrain_supervised", "stage_seed",
                                 "standardized_head", "suggest_probe", "view_augment", "nt_xent", "byol_loss"],
    "harness.toolkit.recipes": ["fit_supervised"],
}

# Former module paths that forward to the toolkit.
MOVED = {
    "harness.models": "harness.toolkit.models",
    "harness.train": "harness.toolkit.train",
    "harness.augment": "harness.toolkit.augment",
    "harness.pretrain": "harness.toolkit.pretrain",
    "harness.supervised": "harness.toolkit.recipes",
}


@pytest.mark.parametrize("module,name", [(m, n) for m, names in PUBLIC.items() for n in names])
def test_public_name_importable(module, name):
    assert getattr(importlib.import_module(module), name) is not None


@pytest.mark.parametrize("old,new", MOVED.items())
def test_former_path_forwards_every_name_with_a_deprecation_warning(old, new):
    former, target = importlib.import_module(old), importlib.import_module(new)
    names = PUBLIC[new]
    assert set(names) <= set(former.__all__) and set(names) <= set(dir(former))
    for name in names:
        with pytest.warns(DeprecationWarning, match=rf"{old}\.{name} moved to {new}\.{name}"):
            assert getattr(former, name) is getattr(target, name)


def test_former_path_star_import_and_unknown_name():
    namespace: dict = {}
    with pytest.warns(DeprecationWarning):
        exec("from harness.augment import *", namespace)
    assert {"Augment", "augment_from_config"} <= set(namespace)
    with pytest.raises(ImportError, match="no_such_name"):
        exec("from harness.train import no_such_name", {})


def _imported_modules(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{alias.name}" for alias in node.names}
    return out


def test_built_in_code_imports_no_former_path():
    forwarders = {REPO / "harness" / f"{old.split('.')[1]}.py" for old in MOVED}
    sources = [p for p in (REPO / "harness").rglob("*.py") if p not in forwarders]
    sources += list((REPO / "plugins").rglob("*.py"))
    offenders = sorted(f"{p.relative_to(REPO)}: {m}" for p in sources for m in _imported_modules(p) if m in MOVED)
    assert offenders == []


def test_no_module_name_in_both_layers():
    core = {p.name for p in (REPO / "harness").rglob("*.py") if p.name != "__init__.py"}
    plugins = {p.name for p in (REPO / "plugins").rglob("*.py") if p.name != "__init__.py"}
    assert core & plugins == set()
