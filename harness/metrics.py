"""Every metric the tables show, computed by the core from predicted probabilities, and the one
registry that says how each reported quantity is named, ordered and printed.

Definitions, written once and recorded beside every figure:

* **accuracy**: share of examples whose arg-max class is the label.
* **ECE**: expected calibration error, top-label, ``ECE_BINS`` = 15 equal-width bins over (0, 1];
  bin *b* holds confidences in ``((b-1)/15, b/15]`` — a confidence of exactly 1.0 falls in the last
  bin and 0.0 in the first. ``ECE = Σ_b (n_b/N)·|acc_b − conf_b|``.
* **NLL**: mean negative log-probability of the label (natural log), probabilities clamped at
  float64's machine epsilon so that a confident mistake costs a large but finite amount.
* **Brier**: mean over examples of ``Σ_k (p_k − 1[y = k])²`` (the multiclass form, range 0–2).

The registry: a :class:`Metric` is computed from ``(probs, labels)`` by :func:`classification_metrics`
for every prediction set the core scores; a :class:`Column` is any other reported quantity (entropy,
temperature, throughput, parameter counts). Tables, statistics, LaTeX, the HTML page and the
multi-objective search read name, direction, label and format from here and nowhere else. A plugin
adds a metric through the ``harness_metrics`` hook (:mod:`harness.hookspecs`).
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

from harness import robustness
from harness.errors import PluginError

if TYPE_CHECKING:  # torch loads with the first computation: listing plugins reads only the registry
    import torch

ECE_BINS = 15
ECE_DEFINITION = f"top-label ECE, {ECE_BINS} equal-width bins over (0,1], confidence 1.0 in the last bin"
_EPS = sys.float_info.epsilon  # float64's machine epsilon


def _as64(probs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    return probs.detach().to("cpu", torch.float64), labels.detach().to("cpu", torch.long)


def accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    probs, labels = _as64(probs, labels)
    return (probs.argmax(1) == labels).double().mean().item()


def nll(probs: torch.Tensor, labels: torch.Tensor) -> float:
    probs, labels = _as64(probs, labels)
    p = probs.gather(1, labels[:, None]).squeeze(1).clamp_min(_EPS)
    return (-p.log()).mean().item()


def brier(probs: torch.Tensor, labels: torch.Tensor) -> float:
    import torch

    probs, labels = _as64(probs, labels)
    onehot = torch.nn.functional.one_hot(labels, probs.shape[1]).double()
    return ((probs - onehot) ** 2).sum(1).mean().item()


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin counts, mean confidence and accuracy (``nan`` where a bin is empty)."""

    lower: torch.Tensor
    upper: torch.Tensor
    count: torch.Tensor
    confidence: torch.Tensor
    accuracy: torch.Tensor

    def ece(self) -> float:
        n = self.count.sum()
        if n == 0:
            return float("nan")
        filled = self.count > 0
        gap = (self.accuracy[filled] - self.confidence[filled]).abs()
        return (self.count[filled].double() / n * gap).sum().item()


def reliability(probs: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS) -> ReliabilityBins:
    import torch

    probs, labels = _as64(probs, labels)
    conf, pred = probs.max(1)
    correct = (pred == labels).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    # bucketize(right=False) returns i with edges[i-1] < c <= edges[i]: bins closed on the right.
    idx = (torch.bucketize(conf, edges) - 1).clamp(0, bins - 1)
    count = torch.bincount(idx, minlength=bins)
    conf_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, idx, conf)
    acc_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, idx, correct)
    denom = count.double()
    nan = torch.full((bins,), float("nan"), dtype=torch.float64)
    return ReliabilityBins(
        lower=edges[:-1], upper=edges[1:], count=count,
        confidence=torch.where(count > 0, conf_sum / denom.clamp_min(1), nan),
        accuracy=torch.where(count > 0, acc_sum / denom.clamp_min(1), nan),
    )


def ece(probs: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS) -> float:
    return reliability(probs, labels, bins).ece()


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Predictive entropy per example (nats)."""
    p = probs.detach().double().clamp_min(_EPS)
    return -(p * p.log()).sum(-1)


def mutual_information(member_probs: torch.Tensor) -> torch.Tensor:
    """Epistemic part of the entropy from ``S × N × K`` sampled predictions (BALD):
    ``H[mean_s p_s] − mean_s H[p_s]`` per example."""
    return entropy(member_probs.mean(0)) - entropy(member_probs).mean(0)


# -- the registry -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Column:
    """How one reported quantity is named, ordered and printed.

    ``higher_is_better`` drives ranks, comparisons, bold-best and optimisation directions; None means
    the quantity has no better direction (entropy, temperature). A value is shown as
    ``scale · value`` with ``digits`` decimals, followed by ``unit`` in the column heading;
    ``count`` prints it as ``1.2k`` / ``3.4M`` instead.
    """

    name: str
    label: str
    higher_is_better: bool | None = None
    scale: float = 1.0
    digits: int = 4
    unit: str = ""
    count: bool = False
    description: str = ""

    @property
    def sense(self) -> str | None:
        """``"higher"`` or ``"lower"`` (is better), or None."""
        return None if self.higher_is_better is None else ("higher" if self.higher_is_better else "lower")

    @property
    def direction(self) -> str:
        """Optuna's name for the direction: ``"maximize"`` or ``"minimize"``."""
        if self.higher_is_better is None:
            raise ValueError(f"{self.name} has no better direction to optimise")
        return "maximize" if self.higher_is_better else "minimize"

    @property
    def heading(self) -> str:
        """The column title: the label with its unit (``accuracy %``)."""
        return f"{self.label} {self.unit}" if self.unit else self.label

    def format(self, value: Any) -> str:
        """One value as the tables print it; ``–`` where there is none."""
        try:
            v = float(value)
        except (TypeError, ValueError):
            return "–"
        if math.isnan(v):
            return "–"
        if self.count:
            for unit, div in (("M", 1e6), ("k", 1e3)):
                if v >= div:
                    return f"{v / div:.1f}{unit}"
            return f"{v:.0f}"
        return f"{self.scale * v:.{self.digits}f}"

    def format_pm(self, mean: Any, std: Any) -> str:
        """``mean ± std`` over seeds; ``–`` where there is no mean."""
        text = self.format(mean)
        return text if text == "–" else f"{text} ± {self.format(std)}"

    def format_ci(self, low: Any, high: Any) -> str:
        """``[low, high]``, a confidence interval."""
        return f"[{self.format(low)}, {self.format(high)}]"


@dataclass(frozen=True, kw_only=True)
class Metric(Column):
    """A metric the core computes from class probabilities ``N × K`` and integer labels ``N``.

    ``fn(probs, labels) -> float`` receives float64 CPU probabilities that passed the core's checks.
    ``applies(num_classes) -> bool`` says for which tasks the metric is defined (e.g. only binary
    ones); where it returns False the metric is left out of the row, not written as NaN.
    """

    fn: Callable[[torch.Tensor, torch.Tensor], float]
    applies: Callable[[int], bool] | None = None
    builtin: bool = field(default=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or self.name.startswith("extra_"):
            raise ValueError(f"metric name {self.name!r} must be an identifier not starting with 'extra_'")
        if not isinstance(self.higher_is_better, bool):
            raise ValueError(f"metric {self.name!r} must say whether higher is better (True or False)")
        if not callable(self.fn):
            raise ValueError(f"metric {self.name!r}: fn is not callable")

    def applies_to(self, num_classes: int) -> bool:
        return self.applies is None or bool(self.applies(num_classes))

    def compute(self, probs: torch.Tensor, labels: torch.Tensor) -> float:
        """The metric of one prediction set; a plugin's metric that raises becomes a PluginError."""
        if self.builtin:
            return float(self.fn(probs, labels))
        try:
            return float(self.fn(probs, labels))
        except Exception as exc:  # third-party code: name it in the trial's failure reason
            raise PluginError(f"metric {self.name!r} raised {type(exc).__name__}: {exc}") from exc


BUILTIN_METRICS: tuple[Metric, ...] = (
    Metric(name="accuracy", fn=accuracy, higher_is_better=True, label="accuracy", scale=100.0, digits=2, unit="%",
           description="share of examples whose arg-max class is the label", builtin=True),
    Metric(name="ece", fn=ece, higher_is_better=False, label="ECE", description=ECE_DEFINITION, builtin=True),
    Metric(name="nll", fn=nll, higher_is_better=False, label="NLL",
           description="mean negative log-probability of the label (nats)", builtin=True),
    Metric(name="brier", fn=brier, higher_is_better=False, label="Brier",
           description="Σ_k (p_k − y_k)², mean over examples (0–2)", builtin=True),
)

# Everything else the tables aggregate or show. ``<metric>_uncalibrated`` columns (before temperature
# scaling) are derived from their metric by :func:`column`.
COLUMNS: dict[str, Column] = {c.name: c for c in (
    Column(name="entropy", label="entropy", description="mean predictive entropy (nats)"),
    Column(name="mutual_information", label="MI", description="mean mutual information of sampled predictions "
           "(BALD, nats)"),
    Column(name="temperature", label="T", description="temperature fitted on the validation split by NLL"),
    Column(name="train_samples_per_s", label="train samples/s", higher_is_better=True, count=True,
           description="examples processed by the training loop / fit wall time (validation included)"),
    Column(name="infer_samples_per_s", label="infer samples/s", higher_is_better=True, count=True,
           description="test examples / evaluate wall time"),
    Column(name="params_total", label="params", count=True, description="parameters of the fitted model"),
    Column(name="params_trainable", label="trainable", count=True, description="parameters trained"),
    Column(name="trainable_fraction", label="trained", unit="%", scale=100.0, digits=1,
           description="share of parameters trained"),
    # The task kinds of harness.tasks: a stream's forgetting and backward transfer.
    Column(name="forgetting", label="forgetting", higher_is_better=False, scale=100.0, digits=2, unit="%",
           description="mean drop of each earlier experience from its best accuracy to its final one "
           "(Chaudhry et al. 2018)"),
    Column(name="bwt", label="BWT", higher_is_better=True, scale=100.0, digits=2, unit="%",
           description="backward transfer: mean change of each earlier experience's accuracy from just after "
           "learning it to the end (Lopez-Paz & Ranzato 2017)"),
    Column(name="ood_auroc", label="AUROC", higher_is_better=True, digits=3,
           description="area under the ROC curve of telling out-of-distribution inputs by an uncertainty score"),
    Column(name="robust_acc", label="robust acc", higher_is_better=True, scale=100.0, digits=2, unit="%",
           description="accuracy under L∞ PGD at the suite's objective ε (harness.robustness)"),
)}
UNCALIBRATED = "_uncalibrated"
# Per-part accuracies of the task kinds: ``accuracy_<head>`` (multi-task), ``accuracy_<K>shot`` and
# ``ci95_<K>shot`` (few-shot: mean over episodes and its 95 % half-width).
PART_ACCURACY, PART_CI = "accuracy_", "ci95_"

_metrics: dict[str, Metric] = {m.name: m for m in BUILTIN_METRICS}


def all_metrics() -> tuple[Metric, ...]:
    """Every registered metric: the built-ins, then those of loaded plugins."""
    return tuple(_metrics.values())


def get_metric(name: str) -> Metric:
    try:
        return _metrics[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r} (known: {', '.join(_metrics)})") from None


def column(name: str) -> Column | None:
    """The declaration of a metric or column by its row key (``ece_uncalibrated`` included), or None."""
    if name in _metrics:
        return _metrics[name]
    if name in COLUMNS:
        return COLUMNS[name]
    if (attacked := robustness.parse_key(name)) is not None:  # robust_acc@0.1, fgsm_acc@0.1
        prefix, eps = attacked
        attack = "PGD" if prefix == robustness.ROBUST else "FGSM"
        return Column(name=name, label=f"{attack} acc @{eps:g}", higher_is_better=True, scale=100.0, digits=2,
                      unit="%", description=f"accuracy under L∞ {attack} at ε = {eps:g} on the data's scale")
    for prefix, label, better in ((PART_ACCURACY, "acc", True), (PART_CI, "±95%", None)):
        if name.startswith(prefix) and name[len(prefix):].replace("_", "a").isalnum():
            part = name[len(prefix):]
            return Column(name=name, label=f"{label} {part}", higher_is_better=better, scale=100.0, digits=2,
                          unit="%", description=f"{label} of {part}")
    if name.endswith(UNCALIBRATED) and name[: -len(UNCALIBRATED)] in _metrics:
        m = _metrics[name[: -len(UNCALIBRATED)]]
        return Column(name=name, label=f"{m.label} before TS", higher_is_better=m.higher_is_better, scale=m.scale,
                      digits=m.digits, unit=m.unit, description=f"{m.label} before temperature scaling")
    return None


def builtin_name(name: str) -> bool:
    """Whether ``name`` belongs to the core (a built-in metric or column, or one derived from them)."""
    base = name[: -len(UNCALIBRATED)] if name.endswith(UNCALIBRATED) else name
    return name in COLUMNS or any(m.name in (name, base) for m in BUILTIN_METRICS)


def set_plugin_metrics(extra: Iterable[Metric]) -> None:
    """Replace the plugins' metrics with ``extra`` (called by :func:`harness.plugins.load_plugins`,
    which has already reported name clashes as plugin problems)."""
    extra = list(extra)
    for m in extra:
        if builtin_name(m.name):
            raise ValueError(f"metric name {m.name!r} is the core's")
    names = [m.name for m in extra]
    if len(set(names)) != len(names):
        raise ValueError(f"metric names repeat: {', '.join(names)}")
    _metrics.clear()
    _metrics.update({m.name: m for m in (*BUILTIN_METRICS, *extra)})


def classification_metrics(probs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Every registered metric that applies to a task with ``probs.shape[1]`` classes, keyed as the
    table columns are."""
    k = probs.shape[1]
    return {m.name: m.compute(probs, labels) for m in all_metrics() if m.applies_to(k)}
