"""The hooks a harness plugin implements. This module is the plugin author's contract.

A plugin is any module (or object) with functions decorated by :data:`harness.hookimpl` whose
names match the hooks below. It reaches the core through the entry-point group ``harness_automl``
(named after the distribution, ``pip install harness-automl``)::

    [project.entry-points.harness_automl]
    my_methods = "my_package.methods"

(or ``harness run --plugin my_package.methods`` for a module that is not installed). The built-in
methods load exactly the same way.

How the core uses a method, for every row of every table:

1. ``harness_methods`` is called once; the core remembers which plugin owns each method name.
2. Tuning: for each Optuna trial, ``harness_search_space`` returns a configuration, ``harness_fit``
   trains on ``task.train`` (``task.val`` may be used for early stopping and pruning reports), and
   ``harness_evaluate`` returns class probabilities for the validation split; the core scores them.
3. The best configuration is re-trained with several seeds; ``harness_evaluate`` on the test split
   gives the probabilities from which the core computes every metric and the throughput.
4. Optionally, when the suite asks for robustness, ``harness_differentiable`` hands the core the
   fitted model as a differentiable function, which it attacks on the test split.

Task kinds beyond classification (:mod:`harness.tasks`; a method lists those it supports in
``MethodInfo.tasks``) keep these hooks and call them in stages: a continual *stream* calls
``harness_fit`` once per experience with that experience's task alone (``ctx.previous``: what the
previous call returned) and ``harness_evaluate`` on every experience's split after each; an
*episodic* task calls ``harness_fit`` to meta-train, then once per episode on the support set
(``task.meta["stage"] == "episode"``, ``ctx.previous``: the meta-trained state) before
``harness_evaluate`` on its query set; a *multitask* task's labels have one column per head and
``harness_evaluate`` returns a dict of probabilities by head (``task.meta["heads"]``).

The method hooks are called only on the plugin that declared the method, so an implementation
never needs to check ``method`` against names it does not own; it still receives ``method`` so one
plugin can serve several methods. Hooks are typed with the project's dataclasses, never loose
dicts, except ``config``: a flat ``dict`` of JSON-serialisable values, as stored in the study.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:
    import optuna
    import torch

    from harness.context import FitContext
    from harness.info import DatasetInfo, MethodInfo
    from harness.metrics import Metric
    from harness.predictions import Predictions
    from harness.task import Split, Task

PROJECT = "harness"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def harness_methods() -> list[MethodInfo]:
    """Describe the methods this plugin provides.

    Called once when plugins load. Return a list of :class:`harness.info.MethodInfo`; one plugin may
    provide several methods. A method name that another plugin also declares can run nowhere: using it
    (``harness run``, ``harness plugins --check``) is an error naming both plugins. To take over a
    built-in method on purpose, declare ``MethodInfo(name, ..., replaces=name)``; only a built-in
    can be replaced, and ``harness plugins`` shows the replacement.
    """


@hookspec
def harness_datasets() -> list[DatasetInfo]:
    """Describe the data sets this plugin provides.

    Called once when plugins load. Return a list of :class:`harness.info.DatasetInfo`.
    """


@hookspec
def harness_metrics() -> list[Metric]:
    """Describe the metrics this plugin adds to every table.

    Called once when plugins load. Return a list of :class:`harness.metrics.Metric`, each with a
    name, ``fn(probs, labels) -> float`` (float64 ``N × K`` probabilities that passed the core's
    checks, integer labels), ``higher_is_better``, a ``label`` and its format (``scale``,
    ``digits``, ``unit``), and optionally ``applies(num_classes) -> bool`` to limit it to some tasks
    (e.g. AUROC only where there are 2 classes; it is left out elsewhere). The core then computes it
    for every prediction set it scores (tuning trials, test seeds, shifted copies) and shows it in
    the summary, the comparisons, the ranks and the report page, like the built-in metrics; it can
    also be named as a tuning objective. A name that a built-in metric, a column or another plugin
    already uses is reported as a problem and the metric is skipped.
    """


@hookspec(firstresult=True)
def harness_search_space(method: str, trial: optuna.Trial, task: Task) -> dict[str, Any]:
    """Sample one configuration of ``method`` for ``task``, define-by-run.

    Called at the start of every tuning trial. Use ``trial.suggest_*``; spaces may be conditional
    (sample ``momentum`` only when the optimiser is SGD). Values the user pinned in the suite come
    back from ``suggest_*`` unchanged. Return the full configuration as a flat dict of plain Python
    values (``str``, ``int``, ``float``, ``bool``, ``None``, lists and dicts of them): it is stored as
    JSON with the trial and passed to ``harness_fit`` as the storage holds it. A value JSON cannot hold
    (``np.float32``, ``torch.device``) is an error naming its key. The names given to ``suggest_*``
    are Optuna parameters, which ``MethodInfo.defaults`` sets; the returned keys are config keys.
    ``task.test`` is withheld (``task.has_test`` is ``False``).
    """


@hookspec(firstresult=True)
def harness_fit(method: str, task: Task, config: dict[str, Any], ctx: FitContext) -> Any:
    """Train ``method`` with ``config`` on ``task`` and return the fitted state.

    The test split is withheld: ``task.has_test`` is ``False`` and any use of ``task.test`` raises an
    error that says so. Train on ``task.train`` (and ``task.unlabeled`` for
    semi-supervised methods); ``task.val`` may be used for early stopping and for
    ``ctx.report(epoch, val_accuracy)``, which prunes unpromising trials by raising
    ``optuna.TrialPruned`` (let it propagate). Build the loop from :mod:`harness.toolkit.train` so that AMP,
    devices, pruning reports and throughput counting behave the same for every method.

    The returned object is opaque to the core and is handed back to ``harness_evaluate``. Raise
    any exception to fail the trial; its message is recorded as the failure reason.
    """


@hookspec(firstresult=True)
def harness_evaluate(method: str, fitted: Any, split: Split, ctx: FitContext) -> Predictions | torch.Tensor:
    """Return class probabilities for every example of ``split``: :class:`harness.Predictions`
    holding a float tensor ``N × K``, or that tensor alone.

    Called after ``harness_fit`` on the validation split (while tuning) and on the test split (for
    the table), and on shifted copies of the test split. ``split.y`` is ``None``. Each row must be
    non-negative and sum to one; the core checks the shape and values and computes every metric
    (accuracy, ECE, NLL, Brier, and those plugins add through ``harness_metrics``) from these
    probabilities, and times this call for the inference-throughput column.

    A method that averages several sampled predictions (an ensemble, MC dropout) returns them as
    ``Predictions(probs, members=S × N × K tensor)``; the core then reports their mutual information
    (the older way, putting them on ``ctx.extras["member_probs"]``, still works).
    Numbers on ``Predictions.extras``, or put on ``ctx.extras`` while scoring the test split in the
    final phase (``ctx.phase == "final"``), become ``extra_<name>`` columns of the tables.
    """


@hookspec(firstresult=True)
def harness_differentiable(method: str, fitted: Any, ctx: FitContext) -> Callable[[torch.Tensor], torch.Tensor] | str | None:
    """Hand the core a differentiable view of the fitted model, for white-box robustness.

    Optional. Called in the final phase after ``harness_fit`` when the suite asks for robustness
    (its ``robustness:`` key, :mod:`harness.robustness`), and while tuning when ``robust_acc`` is
    an objective. Return a function from an input batch (a float tensor shaped like ``split.x``,
    on ``ctx.device``, on the data's own scale: pixel values in [0, 1] for images) to its ``B × K``
    logits, differentiable with respect to the input and deterministic (eval mode); the core
    attacks it with FGSM and PGD on the test split and writes ``robust_acc@ε`` columns. Log-probabilities
    serve as logits (an ensemble or MC average: the log of the mean probability). The core never
    trains through it: gradients are taken with respect to the input only.

    Return a one-line ``str`` saying why the method has no such view (a non-differentiable model,
    a graph method); the table shows it. ``None``, or not implementing the hook, reads the same as
    a reason naming the plugin.
    """


def lazy_hooks(module: str) -> tuple[Any, Any]:
    """``harness_fit`` and ``harness_evaluate`` implementations that import ``module`` on first use and
    call its ``fit(method, task, config, ctx)`` and ``evaluate(method, fitted, split, ctx)``.

    A plugin whose describing module assigns ``harness_fit, harness_evaluate = lazy_hooks(...)``
    lists its methods without importing torch; the heavy module loads with the first fit.
    """
    import importlib

    @hookimpl
    def harness_fit(method: str, task: Task, config: dict[str, Any], ctx: FitContext) -> Any:
        return importlib.import_module(module).fit(method, task, config, ctx)

    @hookimpl
    def harness_evaluate(method: str, fitted: Any, split: Split, ctx: FitContext) -> Any:
        return importlib.import_module(module).evaluate(method, fitted, split, ctx)

    return harness_fit, harness_evaluate
