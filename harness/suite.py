"""Suite files: which methods on which data sets, with which budget. Validated here, at the edge.

A suite YAML::

    name: default
    datasets: [digits]                # or {name: csv:data.csv, target: label}
                                      # or {name: mnist5k, labels_per_class: [10, 50, all]}: a
                                      # training-size sweep, one data set per size (harness.sweeps)
    methods:
      - erm                           # a method name, tuned with the suite's budget
      - {method: erm, name: erm_sgd, params: {optimizer: sgd}}   # a named row with pinned values
    trials: 8          # tuning trials per (method, data set)
    seeds: 3           # final re-runs of the best configuration
    epochs: 20         # training budget every method gets
    params: {lr: 0.01} # values pinned for every row (a row's own params win)
    shifts: true       # also score shifted copies of the test split (image tasks; see harness.shift)
    ood: true          # and out-of-distribution detection AUROC against harness.shift.OOD_SETS
    robustness: {eps: [0.1, 0.3], steps: 20}  # FGSM / PGD accuracy on test (harness.robustness)
    storage_retry: 120 # seconds a process rides out an unreachable database storage (--storage-retry)

A row may opt into post-hoc calibration: ``{method: erm, name: erm+ts, calibrate: temperature}``,
and may run on some of the data sets only (``datasets: [mnist5k@10pc]``, data-set labels as in the
tables); two rows may then share a name, so one table row can have a budget per data set.

:meth:`Suite.budget` decides each row's budget once: command-line flag (:class:`Overrides`) > the
row's own ``trials`` / ``seeds`` / ``epochs`` / ``params`` > the suite file's > the method's defaults.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.calibration import CALIBRATIONS
from harness.errors import ConfigError
from harness.records import Budget
from harness.samplers import SAMPLERS, SINGLE_OBJECTIVE, check_pruner, check_sampler
from harness.sequential import parse_compare
from harness.shift import parse_ood, parse_shifts
from harness.sweeps import expand_sizes
from harness.tasks import parse as parse_task_kind


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    options: dict[str, Any] = field(default_factory=dict)
    labels_per_class: int | None = None
    label_fraction: float | None = None
    val_frac: float = 0.2
    test_frac: float = 0.2

    @property
    def label(self) -> str:
        """The data set's name in tables and study names: options that change the data show in it,
        so two entries of one data set never share a study."""
        name = self.name
        if self.options:
            name += "[" + ",".join(f"{k}={_option_text(v)}" for k, v in sorted(self.options.items())) + "]"
        if self.labels_per_class is not None:
            return f"{name}@{self.labels_per_class}pc"
        if self.label_fraction is not None:
            return f"{name}@{self.label_fraction:g}"
        return name


def _option_text(value: Any) -> str:
    if isinstance(value, dict):
        return "+".join(f"{k}:{_option_text(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "-".join(map(str, value))
    return str(value)


@dataclass(frozen=True)
class RowSpec:
    """One row of the table: a method, optionally renamed, with pinned parameters and its own budget.

    ``all_labels``: train on the full labelled train split even when the data set has a label
    budget (the ceiling row of semi-supervised tables). ``tune: false`` skips the search and uses
    the method's default configuration (plus pinned ``params``). ``calibrate: temperature`` fits a
    temperature on the validation split after training and scores the calibrated test probabilities
    (the uncalibrated ECE and NLL stay in the table beside them). ``datasets``: the labels of the
    data sets the row runs on (all when ``None``).
    """

    method: str
    name: str
    params: dict[str, Any] = field(default_factory=dict)
    trials: int | None = None
    epochs: int | None = None
    seeds: int | None = None
    tune: bool = True
    all_labels: bool = False
    calibrate: str | None = None
    datasets: tuple[str, ...] | None = None

    def runs_on(self, ds: DatasetSpec) -> bool:
        return self.datasets is None or ds.label in self.datasets


@dataclass(frozen=True)
class Overrides:
    """Budgets given on the command line: they beat every row's and the suite file's own."""

    trials: int | None = None
    seeds: int | None = None
    epochs: int | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Suite:
    name: str
    datasets: tuple[DatasetSpec, ...]
    rows: tuple[RowSpec, ...]
    trials: int = 8
    seeds: int = 3
    epochs: int = 20
    timeout: float | None = None
    sampler: str = "tpe"
    pruner: str = "median"
    sampler_seed: int = 0
    data_seed: int = 0
    seed_base: int = 0
    device: str = "auto"
    amp: bool = True
    compile: bool = False
    storage: str | None = None
    shifts: Any = False
    ood: Any = False
    robustness: Any = None  # white-box attacks on every row's test split (see harness.robustness)
    trial_timeout: float | None = None  # seconds per tuning trial; past it the trial is a FAIL
    objectives: tuple[str, ...] = ("accuracy",)  # several → a multi-objective study (Pareto front)
    cash: tuple[str, ...] = ()  # methods searched as one categorical choice: the row `cash`
    heartbeat: int = 10  # seconds between a running trial's heartbeats (RDB storages)
    max_retries: int = 2  # re-runs of a configuration whose worker died
    storage_retry: float = 120.0  # seconds a process rides out an unreachable database storage
    params: dict[str, Any] = field(default_factory=dict)  # values pinned for every row
    compare: Any = None  # which comparisons seed rounds decide (harness.sequential.CompareSpec)
    overrides: Overrides = field(default_factory=Overrides)

    def replace(self, **changes) -> Suite:
        return validate(dataclasses.replace(self, **changes))

    def all_rows(self) -> tuple[RowSpec, ...]:
        """The table's rows: the listed methods, then ``cash`` when a CASH search is asked for."""
        return self.rows + ((RowSpec(method="cash", name="cash"),) if self.cash else ())

    def rows_for(self, ds: DatasetSpec) -> tuple[RowSpec, ...]:
        """The rows that run on data set ``ds``."""
        return tuple(r for r in self.all_rows() if r.runs_on(ds))

    def budget(self, row: RowSpec) -> Budget:
        """The budget ``row`` really gets: command-line flag > row > suite file (> method default,
        for parameters nobody pinned: the method's own ``MethodInfo.defaults``)."""
        o = self.overrides

        def pick(key: str) -> int:
            for value in (getattr(o, key), getattr(row, key), getattr(self, key)):
                if value is not None:
                    return value
            raise AssertionError(key)

        return Budget(trials=pick("trials"), seeds=pick("seeds"), epochs=pick("epochs"),
                      params={**self.params, **row.params, **o.params})

    def pairs(self) -> set[tuple[str, str]]:
        """Every (data-set label, row name) the suite fills."""
        return {(ds.label, row.name) for ds in self.datasets for row in self.rows_for(ds)}


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}")
    return value


def _check_types(suite: Suite) -> None:
    """Values of the wrong type are one-line errors here, not tracebacks (or silent truths) later."""
    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    for key in ("timeout", "trial_timeout"):
        value = getattr(suite, key)
        if value is not None and not number(value):
            raise ConfigError(f"{key} must be a number of seconds, got {value!r}")
    for key in ("sampler_seed", "data_seed", "seed_base"):
        value = getattr(suite, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            flag = "--" + key.replace("_", "-")
            raise ConfigError(f"{key} ({flag}) must be a non-negative integer, got {value!r}")
    for key in ("storage", "device", "sampler", "pruner"):
        value = getattr(suite, key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
    for key in ("amp", "compile"):
        if not isinstance(getattr(suite, key), bool):
            raise ConfigError(f"{key} must be true or false, got {getattr(suite, key)!r}")
    for row in suite.rows:
        for key in ("tune", "all_labels"):
            if not isinstance(getattr(row, key), bool):
                raise ConfigError(f"{row.name}: {key} must be true or false, got {getattr(row, key)!r}")
    for ds in suite.datasets:
        for key in ("val_frac", "test_frac"):
            value = getattr(ds, key)
            if not number(value) or not 0 < value < 1:
                raise ConfigError(f"{ds.name}: {key} must be a number between 0 and 1, got {value!r}")
        if ds.label_fraction is not None and (not number(ds.label_fraction) or not 0 < ds.label_fraction <= 1):
            raise ConfigError(f"{ds.name}: label_fraction must be a number in (0, 1], got {ds.label_fraction!r}")


def validate(suite: Suite) -> Suite:
    _check_types(suite)
    _positive_int(suite.trials, "trials")
    _positive_int(suite.seeds, "seeds")
    _positive_int(suite.epochs, "epochs")
    for row in suite.rows:
        for attr in ("trials", "epochs", "seeds"):
            if getattr(row, attr) is not None:
                _positive_int(getattr(row, attr), f"{row.name}: {attr}")
    for attr in ("trials", "epochs", "seeds"):
        if getattr(suite.overrides, attr) is not None:
            _positive_int(getattr(suite.overrides, attr), f"--{attr}")
    if not isinstance(suite.params, dict):
        raise ConfigError("`params` of the suite must be a mapping")
    check_sampler(suite.sampler)
    check_pruner(suite.pruner)
    if suite.timeout is not None and suite.timeout <= 0:
        raise ConfigError(f"timeout must be positive, got {suite.timeout}")
    if not suite.rows and not suite.cash:
        raise ConfigError("no methods given")
    _check_scaleout(suite)
    if not suite.datasets:
        raise ConfigError("no data sets given")
    labels = {ds.label for ds in suite.datasets}
    if len(labels) < len(suite.datasets):
        twice = sorted({d.label for d in suite.datasets if [e.label for e in suite.datasets].count(d.label) > 1})
        raise ConfigError(f"data set {', '.join(twice)} listed twice: give each entry its own options or label budget")
    for row in suite.rows:
        missing = sorted(set(row.datasets or ()) - labels)
        if missing:
            raise ConfigError(f"{row.name}: datasets {', '.join(missing)} not in the suite "
                              f"(known: {', '.join(ds.label for ds in suite.datasets)})")
    for ds in suite.datasets:
        names = [r.name for r in suite.rows if r.runs_on(ds)]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"duplicate row names {', '.join(dupes)} on {ds.label}: give each row its "
                              "own `name` or its own `datasets`")
    for row in suite.rows:
        if row.calibrate is not None and row.calibrate not in CALIBRATIONS:
            raise ConfigError(f"{row.name}: unknown calibrate {row.calibrate!r} (known: {', '.join(CALIBRATIONS)})")
    parse_shifts(suite.shifts)
    parse_ood(suite.ood)
    compare = parse_compare(suite.compare)
    if compare is not None and compare.baseline is not None and compare.baseline not in {r.name for r in suite.all_rows()}:
        raise ConfigError(f"compare.baseline {compare.baseline!r} is not a row of the suite")
    _check_robustness(suite)
    for ds in suite.datasets:
        if ds.labels_per_class is not None:
            _positive_int(ds.labels_per_class, f"{ds.name}: labels_per_class")
        parse_task_kind(ds.options)
    return suite


def _check_robustness(suite: Suite) -> None:
    from harness.robustness import ROBUST, parse_robustness

    if parse_robustness(suite.robustness) is None and ROBUST in suite.objectives:
        raise ConfigError(f"the {ROBUST} objective needs the suite's `robustness: {{eps: [...]}}` settings")


def _check_scaleout(suite: Suite) -> None:
    from harness.multiobjective import parse_objectives

    objectives = parse_objectives(suite.objectives)
    if len(objectives) > 1 and suite.pruner != "none":
        raise ConfigError(f"multi-objective studies cannot prune: use pruner none, not {suite.pruner!r}")
    if len(objectives) > 1 and suite.sampler in SINGLE_OBJECTIVE:
        others = ", ".join(n for n in SAMPLERS if n not in SINGLE_OBJECTIVE)
        raise ConfigError(f"the {suite.sampler} sampler has one objective: use {others} with several objectives")
    if suite.trial_timeout is not None and (isinstance(suite.trial_timeout, bool) or suite.trial_timeout <= 0):
        raise ConfigError(f"trial_timeout must be a positive number of seconds, got {suite.trial_timeout!r}")
    _positive_int(suite.heartbeat, "heartbeat")
    if (isinstance(suite.storage_retry, bool) or not isinstance(suite.storage_retry, (int, float))
            or not suite.storage_retry > 0):
        raise ConfigError(f"storage_retry must be a positive number of seconds, got {suite.storage_retry!r}")
    if isinstance(suite.max_retries, bool) or not isinstance(suite.max_retries, int) or suite.max_retries < 0:
        raise ConfigError(f"max_retries must be a non-negative integer, got {suite.max_retries!r}")
    if suite.cash and (len(suite.cash) < 2 or len(set(suite.cash)) != len(suite.cash)):
        raise ConfigError(f"cash needs two or more different methods, got {', '.join(suite.cash)}")
    if suite.cash and any(r.name == "cash" for r in suite.rows):
        raise ConfigError("a row named `cash` clashes with the CASH row: rename it")


_ROW_KEYS = {f.name for f in dataclasses.fields(RowSpec)}
_DS_KEYS = {f.name for f in dataclasses.fields(DatasetSpec)} - {"options"}
_SUITE_KEYS = {f.name for f in dataclasses.fields(Suite)} - {"rows", "overrides"} | {"methods"}


def _row(entry: Any) -> RowSpec:
    if isinstance(entry, str):
        return RowSpec(method=entry, name=entry)
    if not isinstance(entry, dict) or "method" not in entry:
        raise ConfigError(f"a methods entry must be a name or a mapping with `method:`, got {entry!r}")
    unknown = set(entry) - _ROW_KEYS
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(sorted(unknown))} in method entry {entry['method']!r}")
    params = entry.get("params") or {}
    if not isinstance(params, dict):
        raise ConfigError(f"`params` of {entry['method']!r} must be a mapping")
    datasets = entry.get("datasets")
    if datasets is not None:
        if isinstance(datasets, str):
            datasets = [datasets]
        if not isinstance(datasets, list) or not datasets or not all(isinstance(d, str) for d in datasets):
            raise ConfigError(f"`datasets` of {entry['method']!r} must be a list of data-set labels")
        datasets = tuple(datasets)
    return RowSpec(**{**entry, "params": params, "datasets": datasets,
                      "name": str(entry.get("name") or entry["method"])})


def _dataset(entry: Any) -> DatasetSpec:
    if isinstance(entry, str):
        return DatasetSpec(name=entry)
    if not isinstance(entry, dict) or "name" not in entry:
        raise ConfigError(f"a datasets entry must be a name or a mapping with `name:`, got {entry!r}")
    known = {k: v for k, v in entry.items() if k in _DS_KEYS}
    options = {k: v for k, v in entry.items() if k not in _DS_KEYS}
    return DatasetSpec(**known, options=options)


def from_mapping(data: Any, default_name: str = "suite") -> Suite:
    if not isinstance(data, dict):
        raise ConfigError("a suite file must be a YAML mapping with `datasets:` and `methods:`")
    unknown = set(data) - _SUITE_KEYS
    if unknown:
        raise ConfigError(f"unknown suite key(s): {', '.join(sorted(unknown))}")
    datasets = data.get("datasets")
    methods = data.get("methods", [] if data.get("cash") else None)
    if not isinstance(datasets, list) or not isinstance(methods, list):
        raise ConfigError("a suite needs `datasets:` and `methods:` lists")
    rest = {k: v for k, v in data.items() if k not in ("datasets", "methods", "name")}
    rest.update(_scaleout_keys(data))
    try:
        suite = Suite(
            name=str(data.get("name") or default_name),
            datasets=tuple(_dataset(d) for entry in datasets for d in expand_sizes(entry)),
            rows=tuple(_row(m) for m in methods),
            **rest,
        )
    except TypeError as exc:
        raise ConfigError(f"bad suite: {exc}") from None
    return validate(suite)


def _scaleout_keys(data: dict[str, Any]) -> dict[str, Any]:
    """``objectives`` and ``cash`` as tuples; several objectives turn pruning off unless a pruner
    is named (then validation refuses it: multi-objective studies cannot prune)."""
    from harness.multiobjective import parse_objectives

    out: dict[str, Any] = {}
    if "objectives" in data:
        out["objectives"] = parse_objectives(data["objectives"])
        if len(out["objectives"]) > 1 and "pruner" not in data:
            out["pruner"] = "none"
    if "cash" in data:
        if not isinstance(data["cash"], list) or not all(isinstance(m, str) for m in data["cash"]):
            raise ConfigError("`cash:` must be a list of method names")
        out["cash"] = tuple(data["cash"])
    return out


def load_suite(path: str | Path) -> Suite:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"suite file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"suite file {path} is not UTF-8 text (byte {exc.start}: {exc.object[exc.start:exc.start + 1]!r})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"malformed YAML in {path}{where}: {getattr(exc, 'problem', exc)}") from None
    return from_mapping(data, default_name=path.stem)


def suite_spec(suite: Suite) -> dict[str, Any]:
    """The suite as plain JSON for a study's record, without its storage URL (which may hold a
    password; a worker is given the URL on its own command line)."""
    spec = dataclasses.asdict(suite)
    spec["storage"] = None
    return spec


def suite_from_spec(spec: dict[str, Any]) -> Suite:
    """The suite :func:`suite_spec` stored."""
    def build(cls, data: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names})

    return validate(build(Suite, {**spec, "datasets": [build(DatasetSpec, d) for d in spec["datasets"]],
                                  "rows": [build(RowSpec, r) for r in spec["rows"]],
                                  "overrides": build(Overrides, spec.get("overrides") or {})}))
