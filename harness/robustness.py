"""White-box L∞ attacks on a differentiable classifier, and checks that they were not fooled.

The core measures robustness the same way for every method that hands it a differentiable view of
its fitted model (``harness_differentiable``, :mod:`harness.hookspecs`): logits as a function of an
input batch on the data's own scale. ε is stated on that scale — pixel values in [0, 1] for the
image sets — and every adversarial input is clamped to the data's valid range
(:attr:`harness.task.Task.input_range`).

* **FGSM** (Goodfellow et al., 2015): one step ``x + ε·sign(∇ₓ CE)``.
* **PGD** (Madry et al., 2018): ``steps`` signed-gradient steps of ``step_size`` from a uniform
  random start in the ε-ball, projected back onto the ball and the valid range after each; with
  ``restarts`` > 1 an example counts as robust only if every restart fails on it (worst case).

Gradients are taken with respect to the input only (``torch.autograd.grad``), never accumulated on
the model's parameters; examples are attacked in batches.

Gradient masking makes an attack look weaker than the model is robust (Athalye et al., 2018;
Carlini et al., 2019). :func:`sanity_flags` turns the usual symptoms into flags with reasons:
robust accuracy rising with ε, PGD weaker than FGSM, more PGD steps weaker than fewer, and accuracy
above chance at an ε that covers the whole valid range.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

from harness.errors import ConfigError

if TYPE_CHECKING:
    import torch

Logits = Callable[["torch.Tensor"], "torch.Tensor"]
Bounds = tuple[float, float] | None

ROBUST = "robust_acc"  # robust accuracy under PGD: ``robust_acc@<ε>`` columns, and the objective
FGSM = "fgsm_acc"  # accuracy under FGSM: ``fgsm_acc@<ε>`` columns
REASON = "robust_reason"  # why a row has no robust accuracy (its method gives no differentiable view)
FLAGS = "robust_flags"  # the sanity checks a row failed, ``; ``-joined
_SUITE_KEYS = ("eps", "steps", "restarts", "step_size", "objective_eps", "batch_size")
TOLERANCE = 0.01  # accuracy differences below a point are noise of the random start, not masking
CHANCE_MARGIN = 0.1  # above chance by more than this at an ε covering the whole range: masked


def key(prefix: str, eps: float) -> str:
    """The row key of an accuracy under attack at ``eps``: ``robust_acc@0.1``."""
    return f"{prefix}@{eps:g}"


def parse_key(name: str) -> tuple[str, float] | None:
    """``("robust_acc", 0.1)`` for ``robust_acc@0.1``; None for any other name."""
    prefix, at, eps = name.partition("@")
    if not at or prefix not in (ROBUST, FGSM):
        return None
    try:
        return prefix, float(eps)
    except ValueError:
        return None


def attacked_columns(names: Iterable[str]) -> list[str]:
    """The ``robust_acc@ε`` then the ``fgsm_acc@ε`` names among ``names``, each by ε."""
    found = {n: parse_key(n) for n in names}
    return sorted((n for n, k in found.items() if k is not None),
                  key=lambda n: (found[n][0] != ROBUST, found[n][1]))


def summary_notes(rows: Iterable[dict[str, Any]]) -> list[str]:
    """The lines under a table: rows without robust accuracy and why, rows failing a sanity check."""
    out = []
    for r in rows:
        where = f"{r.get('dataset')} · {r.get('method')}"
        if isinstance(r.get(REASON), str) and r[REASON]:
            out.append(f"{where}: no robust accuracy — {r[REASON]}")
        if isinstance(r.get(FLAGS), str) and r[FLAGS]:
            out.append(f"{where}: gradient-masking check failed — {r[FLAGS]}")
    return out


@dataclass(frozen=True)
class AttackSettings:
    """The suite's ``robustness:`` key: ε list, PGD steps, restarts, step size (default
    ``2.5·ε/steps``, Madry et al.), and the ε the ``robust_acc`` objective reads (default the largest)."""

    eps: tuple[float, ...]
    steps: int = 20
    restarts: int = 1
    step_size: float | None = None
    objective_eps: float | None = None
    batch_size: int = 500

    def alpha(self, eps: float, steps: int | None = None) -> float:
        return self.step_size if self.step_size is not None else 2.5 * eps / (steps or self.steps)

    @property
    def target_eps(self) -> float:
        return self.objective_eps if self.objective_eps is not None else max(self.eps)

    def spec(self) -> dict[str, Any]:
        """The settings as recorded in the provenance."""
        return {"norm": "Linf", "eps": list(self.eps), "steps": self.steps, "restarts": self.restarts,
                "step_size": self.step_size if self.step_size is not None else "2.5*eps/steps",
                "random_start": True, "objective_eps": self.target_eps, "loss": "cross-entropy",
                "attacks": ["FGSM", "PGD"], "split": "whole test split (validation while tuning robust_acc)"}


def parse_robustness(value: object) -> AttackSettings | None:
    """The suite's ``robustness:`` value (None or false: off) as settings; bad values are one-line errors."""
    if value is None or value is False:
        return None
    if not isinstance(value, dict) or "eps" not in value:
        raise ConfigError(f"robustness must be a mapping with `eps: [...]`, got {value!r}")
    unknown = sorted(set(value) - set(_SUITE_KEYS))
    if unknown:
        raise ConfigError(f"unknown robustness key(s) {', '.join(unknown)} (known: {', '.join(_SUITE_KEYS)})")

    def positive(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0

    eps = value["eps"]
    eps = [eps] if positive(eps) else eps
    if not isinstance(eps, list) or not eps or not all(positive(e) for e in eps):
        raise ConfigError(f"robustness: eps must be a list of positive numbers, got {value['eps']!r}")
    if len(set(eps)) != len(eps):
        raise ConfigError(f"robustness: eps repeats a value: {eps!r}")
    for name in ("steps", "restarts", "batch_size"):
        v = value.get(name, 1)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"robustness: {name} must be a positive integer, got {v!r}")
    for name in ("step_size", "objective_eps"):
        if value.get(name) is not None and not positive(value[name]):
            raise ConfigError(f"robustness: {name} must be a positive number, got {value[name]!r}")
    if value.get("objective_eps") is not None and value["objective_eps"] not in eps:
        raise ConfigError(f"robustness: objective_eps {value['objective_eps']!r} is not one of eps {eps!r}")
    return AttackSettings(eps=tuple(float(e) for e in sorted(eps)), steps=value.get("steps", 20),
                          restarts=value.get("restarts", 1), batch_size=value.get("batch_size", 500),
                          step_size=None if value.get("step_size") is None else float(value["step_size"]),
                          objective_eps=None if value.get("objective_eps") is None else float(value["objective_eps"]))


# -- attacks --------------------------------------------------------------------------------------


def _input_grad(model: Logits, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∇ₓ of the summed cross-entropy, taken with respect to ``x`` alone."""
    import torch
    import torch.nn.functional as F

    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        loss = F.cross_entropy(model(x).float(), y, reduction="sum")
        return torch.autograd.grad(loss, x)[0]


def _project(x_adv: torch.Tensor, x: torch.Tensor, eps: float, bounds: Bounds) -> torch.Tensor:
    import torch

    x_adv = torch.min(torch.max(x_adv, x - eps), x + eps)
    return x_adv.clamp(*bounds) if bounds is not None else x_adv


def fgsm(model: Logits, x: torch.Tensor, y: torch.Tensor, eps: float, bounds: Bounds = (0.0, 1.0)) -> torch.Tensor:
    """The FGSM input: one step of ``eps`` along the sign of the loss gradient, clamped to ``bounds``."""
    return _project(x + eps * _input_grad(model, x, y).sign(), x, eps, bounds).detach()


def pgd(model: Logits, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, step_size: float,
        bounds: Bounds = (0.0, 1.0), random_start: bool = True,
        generator: torch.Generator | None = None) -> torch.Tensor:
    """The L∞ PGD input after ``steps`` signed-gradient steps from a uniform random start in the ball."""
    import torch

    x = x.detach()
    if random_start:
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x_adv = _project(x + (2 * noise - 1) * eps, x, eps, bounds)
    else:
        x_adv = x.clone()
    for _ in range(steps):
        x_adv = _project(x_adv + step_size * _input_grad(model, x_adv, y).sign(), x, eps, bounds).detach()
    return x_adv


def _correct(model: Logits, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    import torch

    with torch.no_grad():
        return model(x).argmax(-1) == y


def accuracy_under(attack: str, model: Logits, x: torch.Tensor, y: torch.Tensor, eps: float, *,
                   steps: int = 20, step_size: float | None = None, restarts: int = 1, bounds: Bounds = (0.0, 1.0),
                   batch_size: int = 500, seed: int = 0) -> float:
    """Accuracy on ``(x, y)`` under ``attack`` (``"fgsm"`` or ``"pgd"``) at ``eps``; an example is
    robust only if no PGD restart fools it. Batched; the random starts come from ``seed``."""
    import torch

    if attack not in ("fgsm", "pgd"):
        raise ValueError(f"unknown attack {attack!r}")
    gen = torch.Generator(device=x.device).manual_seed(seed)
    alpha = step_size if step_size is not None else 2.5 * eps / steps
    robust = 0
    for i in range(0, x.shape[0], batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        if attack == "fgsm":
            ok = _correct(model, fgsm(model, xb, yb, eps, bounds), yb)
        else:
            ok = _correct(model, xb, yb)  # already wrong on the clean input: not robust
            for _ in range(restarts):
                if not ok.any():
                    break
                live = ok.nonzero().squeeze(1)  # only examples no restart has fooled yet
                adv = pgd(model, xb[live], yb[live], eps, steps, alpha, bounds, generator=gen)
                ok[live] = _correct(model, adv, yb[live])
        robust += int(ok.sum())
    return robust / max(1, x.shape[0])


@dataclass(frozen=True)
class RobustnessResult:
    """Accuracy under FGSM and PGD per ε, and the extra runs the sanity checks read."""

    fgsm: dict[float, float]
    pgd: dict[float, float]
    pgd_more_steps: tuple[float, int, float]  # (ε, steps, accuracy) with twice the steps
    pgd_whole_range: tuple[float, float] | None  # (ε, accuracy) at an ε that covers the valid range
    num_classes: int

    def row(self) -> dict[str, Any]:
        """The columns of a seed's result: ``robust_acc@ε``, ``fgsm_acc@ε``, ``robust_acc`` and flags."""
        out: dict[str, Any] = {key(ROBUST, e): a for e, a in self.pgd.items()}
        out.update({key(FGSM, e): a for e, a in self.fgsm.items()})
        flags = sanity_flags(self)
        if flags:
            out[FLAGS] = "; ".join(flags)
        return out


def measure(model: Logits, x: torch.Tensor, y: torch.Tensor, settings: AttackSettings, bounds: Bounds,
            num_classes: int, seed: int = 0, checks: bool = True) -> RobustnessResult:
    """FGSM and PGD accuracy at every ε of ``settings``; with ``checks`` also PGD with twice the steps
    at the objective's ε and PGD at an ε spanning the whole valid range (for :func:`sanity_flags`)."""
    common = {"bounds": bounds, "batch_size": settings.batch_size, "seed": seed}
    fg = {e: accuracy_under("fgsm", model, x, y, e, **common) for e in settings.eps}
    pg = {e: accuracy_under("pgd", model, x, y, e, steps=settings.steps, step_size=settings.alpha(e),
                            restarts=settings.restarts, **common) for e in settings.eps}
    more = whole = None
    if checks:
        e, k = settings.target_eps, 2 * settings.steps
        more = (e, k, accuracy_under("pgd", model, x, y, e, steps=k, step_size=settings.alpha(e, k) if
                                     settings.step_size is None else settings.step_size / 2,
                                     restarts=settings.restarts, **common))
        if bounds is not None:
            big = bounds[1] - bounds[0]
            whole = (big, accuracy_under("pgd", model, x, y, big, steps=settings.steps,
                                         step_size=2.5 * big / settings.steps, **common))
    return RobustnessResult(fg, pg, more, whole, num_classes)


def sanity_flags(r: RobustnessResult, tolerance: float = TOLERANCE, margin: float = CHANCE_MARGIN) -> list[str]:
    """The gradient-masking symptoms ``r`` shows, each as a one-line reason (empty: none)."""
    flags = []
    eps = sorted(r.pgd)
    for a, b in zip(eps, eps[1:]):
        if r.pgd[b] > r.pgd[a] + tolerance:
            flags.append(f"PGD accuracy rises with ε ({r.pgd[a]:.3f} at ε={a:g}, {r.pgd[b]:.3f} at ε={b:g})")
    for e in eps:
        if e in r.fgsm and r.pgd[e] > r.fgsm[e] + tolerance:
            flags.append(f"PGD weaker than FGSM at ε={e:g} ({r.pgd[e]:.3f} vs {r.fgsm[e]:.3f})")
    if r.pgd_more_steps is not None:
        e, k, acc = r.pgd_more_steps
        if e in r.pgd and acc > r.pgd[e] + tolerance:
            flags.append(f"PGD-{k} weaker than fewer steps at ε={e:g} ({acc:.3f} vs {r.pgd[e]:.3f})")
    if r.pgd_whole_range is not None:
        e, acc = r.pgd_whole_range
        if acc > 1 / r.num_classes + margin:
            flags.append(f"accuracy {acc:.3f} above chance ({1 / r.num_classes:.3f}) at ε={e:g}, "
                         "which covers the whole input range")
    return flags


def score(view: Logits | str, x: torch.Tensor, y: torch.Tensor, settings: AttackSettings, bounds: Bounds,
          num_classes: int, seed: int = 0) -> dict[str, Any]:
    """A seed result's robustness columns from a method's differentiable view (or the reason it has none)."""
    if isinstance(view, str):
        return {REASON: view}
    return measure(view, x, y, settings, bounds, num_classes, seed).row()


def objective(view: Logits | str, x: torch.Tensor, y: torch.Tensor, settings: AttackSettings, bounds: Bounds,
              seed: int = 0) -> float:
    """PGD accuracy at the objective's ε (``robust_acc`` while tuning, on the validation split)."""
    if isinstance(view, str):
        raise ConfigError(f"the robust_acc objective needs a differentiable view: {view}")
    e = settings.target_eps
    return accuracy_under("pgd", view, x, y, e, steps=settings.steps, step_size=settings.alpha(e),
                          restarts=settings.restarts, bounds=bounds, batch_size=settings.batch_size, seed=seed)
