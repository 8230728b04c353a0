"""The core's imports point one way: down the layers below, with no circle.

Every module of the ``harness`` package is read with ``ast`` (imports inside functions and
``TYPE_CHECKING`` blocks count too) and placed in a layer by the longest matching name in
:data:`LAYERS`. A module may import its own layer or any layer below it, never one above.
Built-in plugins may import the contract and the toolkit, never another built-in family nor the
modules that run suites.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "harness"
PLUGINS = ROOT / "plugins"

# Top to bottom. A name covers the module and everything under it.
LAYERS: dict[str, tuple[str, ...]] = {
    "face": ("harness.cli", "harness.scaffold"),
    "orchestrate": ("harness.runner", "harness.worker", "harness.workers", "harness.launch", "harness.cash",
                    "harness.bench", "harness.conformance", "harness.rounds"),
    "phases": ("harness.phases", "harness.search", "harness.evaluate"),
    "report": ("harness.report",),
    "bottom": (
        "harness",  # the package's public names
        "harness.storage", "harness.records", "harness.samplers", "harness.suite", "harness.sweeps", "harness.redaction",
        "harness.sequential",
        # the plugin contract
        "harness.hookspecs", "harness.plugins", "harness.info", "harness.task", "harness.context",
        "harness.predictions", "harness.configs", "harness.errors",
        # metrics and what is computed from probabilities
        "harness.metrics", "harness.multiobjective", "harness.calibration", "harness.shift", "harness.robustness",
        # data and the training toolkit
        "harness.data", "harness.toolkit", "harness.tasks",
        # former import paths of the toolkit, forwarding to it
        "harness.models", "harness.train", "harness.augment", "harness.pretrain", "harness.supervised",
        "harness._moved",
    ),
}
RANK = {layer: i for i, layer in enumerate(LAYERS)}

# What a built-in plugin must not import: the modules that run suites, search and report.
NOT_FOR_PLUGINS = ("harness.runner", "harness.worker", "harness.workers", "harness.launch", "harness.search", "harness.phases", "harness.report",
                   "harness.cli", "harness.storage", "harness.evaluate", "harness.cash", "harness.bench",
                   "harness.conformance")


def module_name(path: Path, root: Path, package: str) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


def core_modules() -> dict[str, Path]:
    return {module_name(p, CORE, "harness"): p for p in sorted(CORE.rglob("*.py"))}


def imports(path: Path, name: str, known: set[str] | None = None) -> set[str]:
    """Every module ``path`` imports, anywhere in the file; ``from pkg import mod`` counts as ``pkg.mod``
    when ``pkg.mod`` is in ``known``."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.add(full if known is not None and full in known else base)
    return out


def layer_of(module: str) -> str | None:
    best, found = -1, None
    for layer, names in LAYERS.items():
        for n in names:
            if (module == n or module.startswith(n + ".")) and len(n) > best:
                best, found = len(n), layer
    return found


def core_graph() -> dict[str, set[str]]:
    modules = core_modules()
    known = set(modules)
    graph = {}
    for name, path in modules.items():
        targets = set()
        for target in imports(path, name, known):
            # ``import harness.a.b`` names harness.a.b; keep the longest prefix that is a module.
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                targets.add(target)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle through each strongly connected group of modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def test_every_core_module_has_a_layer():
    assert [m for m in core_modules() if layer_of(m) is None] == []


def test_no_import_circle_in_the_core():
    assert cycles(core_graph()) == []


def test_no_core_import_points_up_a_layer():
    upward = [f"{src} ({layer_of(src)}) imports {dst} ({layer_of(dst)})"
              for src, targets in core_graph().items() for dst in sorted(targets)
              if RANK[layer_of(dst)] < RANK[layer_of(src)]]
    assert upward == []


def test_the_core_imports_no_built_in_plugin():
    offenders = [f"{name} imports {t}" for name, path in core_modules().items()
                 for t in imports(path, name) if t.split(".")[0] in ("harness_plugins", "plugins")]
    assert offenders == []


def family(path: Path) -> str:
    """A built-in plugin file's family: ``plugins/harness_plugins/<family>/…`` or ``plugins/<family>.py``."""
    parts = path.relative_to(PLUGINS).with_suffix("").parts
    if parts[0] == "harness_plugins":
        parts = parts[1:]
    return parts[0] if parts else ""


def plugin_files() -> list[Path]:
    return [p for p in sorted(PLUGINS.rglob("*.py")) if p.name != "__init__.py" or p.parent != PLUGINS]


@pytest.mark.parametrize("path", plugin_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_plugin_imports_only_the_contract_and_the_toolkit(path):
    name = "harness_plugins." + ".".join(path.relative_to(PLUGINS).with_suffix("").parts).removeprefix("harness_plugins.")
    bad = []
    for target in imports(path, name):
        head, _, rest = target.partition(".")
        if head in ("harness_plugins", "plugins") and rest and rest.split(".")[0] != family(path):
            bad.append(f"{target} (another built-in family)")
        if any(target == m or target.startswith(m + ".") for m in NOT_FOR_PLUGINS):
            bad.append(target)
    assert bad == []


def test_the_layer_test_sees_an_upward_import(tmp_path):
    """The walker resolves imports inside functions and relative imports."""
    pkg = tmp_path / "harness"
    (pkg / "phases").mkdir(parents=True)
    (pkg / "phases" / "__init__.py").write_text("")
    (pkg / "phases" / "tune.py").write_text("def f():\n    from ..runner import run_row\n")
    found = imports(pkg / "phases" / "tune.py", "harness.phases.tune", {"harness.runner"})
    assert "harness.runner" in found and RANK[layer_of("harness.runner")] < RANK[layer_of("harness.phases.tune")]
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
