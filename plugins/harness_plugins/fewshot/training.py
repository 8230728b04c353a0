"""The few-shot methods' meta-training and per-episode adaptation, over the shared loop."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from harness.context import FitContext
from harness.task import Split, Task
from harness.tasks.episodic import Episode, episodes
from harness.toolkit.models import network_from_config
from harness.toolkit.train import TrainConfig, train

QUERIES = 15  # query examples per class in meta-training episodes
VAL_EPISODES = 20  # episodes of the validation split scored after each meta-training epoch


@dataclass
class Adapted:
    """An encoder and a head for one episode: ``probs(x)``."""

    probs: Callable[[torch.Tensor], torch.Tensor]


def _encoder(config: dict[str, Any], task: Task, num_classes: int | None = None) -> nn.Module:
    shaped = task if num_classes is None else _with_classes(task, num_classes)
    return network_from_config({**config, "model": config.get("model", "conv4")}, shaped)


def _with_classes(task: Task, k: int) -> Task:
    import dataclasses

    return dataclasses.replace(task, num_classes=k)


def _sq_distances(query: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    return torch.cdist(query, prototypes) ** 2


def _prototypes(features: torch.Tensor, labels: torch.Tensor, ways: int) -> torch.Tensor:
    return torch.stack([features[labels == c].mean(0) for c in range(ways)])


def _episode_stream(task: Task, shot: int, ctx: FitContext, pool: Split | None = None, offset: int = 0):
    ways = min(int(task.meta.get("ways", 5)), task.num_classes)
    pool = pool if pool is not None else task.train
    return ways, episodes(pool, ways, shot, QUERIES, 10**9, ctx.seed * 7 + offset)


def _episodic_val(task: Task, ctx: FitContext, score: Callable[[Episode, int], float]) -> Callable[[], float]:
    """Mean query accuracy over a fixed set of validation episodes (for best-epoch restoring and pruning)."""
    ways = min(int(task.meta.get("ways", 5)), task.num_classes)
    shot = int(task.meta.get("shots", [1])[0])
    queries = min(QUERIES, int(torch.bincount(task.val.y).min().item()) - shot)
    fixed = list(episodes(task.val, ways, shot, queries, VAL_EPISODES, 12345))
    return lambda: sum(score(e, ways) for e in fixed) / len(fixed)


def _accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    return (probs.argmax(1) == labels).float().mean().item()


# --- prototypical networks and the random-encoder reference -------------------------------------

def _nc_probs(encoder: nn.Module, support: Split, ways: int, cosine_scale: float | None) -> Adapted:
    encoder.eval()
    with torch.no_grad():
        feats = encoder(support.x)
        if cosine_scale is not None:
            feats = F.normalize(feats, dim=1)
        protos = _prototypes(feats, support.y, ways)
        if cosine_scale is not None:
            protos = F.normalize(protos, dim=1)

    def probs(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            q = encoder(x)
            if cosine_scale is not None:
                return (cosine_scale * F.normalize(q, dim=1) @ protos.T).softmax(1)
            return (-_sq_distances(q, protos)).softmax(1)
    return Adapted(probs)


def fit_protonet(task: Task, config: dict[str, Any], ctx: FitContext) -> nn.Module:
    encoder = _encoder(config, task).encoder
    ways, stream = _episode_stream(task, int(config.get("train_shot", 5)), ctx)

    def step(idx: torch.Tensor, progress: float) -> torch.Tensor:
        e = next(stream)
        ctx.samples_seen += len(e.support) + len(e.query) - idx.numel()
        protos = _prototypes(encoder(e.support.x), e.support.y, ways)
        return F.cross_entropy(-_sq_distances(encoder(e.query.x), protos), e.query.y)

    def score(e: Episode, ways: int) -> float:
        return _accuracy(_nc_probs(encoder, e.support, ways, None).probs(e.query.x), e.query.y)

    cfg = TrainConfig.from_config({"optimizer": "adam", "schedule": "constant", **config}, ctx, batch_size=1)
    train(encoder, step, int(config.get("episodes_per_epoch", 50)), cfg, ctx, val_fn=_episodic_val(task, ctx, score))
    return encoder


# --- first-order MAML ---------------------------------------------------------------------------

def _adapt(model: nn.Module, params: dict[str, torch.Tensor], support: Split, lr: float, steps: int,
           keep_graph: bool) -> dict[str, torch.Tensor]:
    """``steps`` SGD steps on the support loss from ``params``. First order: each step's gradient is
    a constant, so the adapted weights are the initial ones plus a constant and the query gradient
    flows straight to the initialisation (Finn et al.'s FOMAML)."""
    for _ in range(steps):
        loss = F.cross_entropy(functional_call(model, params, (support.x,)), support.y)
        grads = torch.autograd.grad(loss, list(params.values()))
        params = {n: p - lr * g.detach() for (n, p), g in zip(params.items(), grads)}
        if not keep_graph:
            params = {n: p.detach().requires_grad_() for n, p in params.items()}
    return params


def fit_maml(task: Task, config: dict[str, Any], ctx: FitContext) -> nn.Module:
    ways, stream = _episode_stream(task, int(config.get("train_shot", 5)), ctx)
    model = _encoder(config, task, num_classes=ways)
    inner_lr, inner_steps = float(config.get("inner_lr", 0.1)), int(config.get("inner_steps", 3))

    def step(idx: torch.Tensor, progress: float) -> torch.Tensor:
        e = next(stream)
        ctx.samples_seen += len(e.support) + len(e.query) - idx.numel()
        fast = _adapt(model, dict(model.named_parameters()), e.support, inner_lr, inner_steps, keep_graph=True)
        return F.cross_entropy(functional_call(model, fast, (e.query.x,)), e.query.y)

    def score(e: Episode, ways: int) -> float:
        return _accuracy(_maml_adapted(model, e.support, config).probs(e.query.x), e.query.y)

    cfg = TrainConfig.from_config({"optimizer": "adam", "schedule": "constant", **config}, ctx, batch_size=1)
    train(model, step, int(config.get("episodes_per_epoch", 50)), cfg, ctx, val_fn=_episodic_val(task, ctx, score))
    return model


def _maml_adapted(model: nn.Module, support: Split, config: dict[str, Any]) -> Adapted:
    model.train()  # transductive BatchNorm, as in MAML's reference implementation
    start = {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()}
    with torch.enable_grad():
        fast = _adapt(model, start, support, float(config.get("inner_lr", 0.1)),
                      int(config.get("test_inner_steps", 3)), keep_graph=False)
    fast = {n: p.detach() for n, p in fast.items()}

    def probs(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return functional_call(model, fast, (x,)).softmax(1)
    return Adapted(probs)


# --- baseline++ ---------------------------------------------------------------------------------

class CosineHead(nn.Module):
    """Logits = scale · cosine similarity between features and per-class weight vectors (Chen et al. 2019)."""

    def __init__(self, features: int, classes: int, scale: float):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(classes, features) * 0.01)
        self.scale = scale

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.scale * F.normalize(f, dim=1) @ F.normalize(self.weight, dim=1).T


def fit_baseline_pp(task: Task, config: dict[str, Any], ctx: FitContext) -> nn.Module:
    net = _encoder(config, task)
    scale = float(config.get("cosine_scale", 10.0))
    model = nn.Sequential(net.encoder, CosineHead(net.feature_dim, task.num_classes, scale))
    x, y = task.train.x, task.train.y

    def step(idx: torch.Tensor, progress: float) -> torch.Tensor:
        return F.cross_entropy(model(x[idx]), y[idx])

    def score(e: Episode, ways: int) -> float:
        return _accuracy(_nc_probs(net.encoder, e.support, ways, scale).probs(e.query.x), e.query.y)

    train(model, step, len(x), TrainConfig.from_config({"optimizer": "adam", "schedule": "cosine", **config}, ctx),
          ctx, val_fn=_episodic_val(task, ctx, score))
    return net.encoder


def fit(method: str, task: Task, config: dict[str, Any], ctx: FitContext) -> Any:
    if task.meta.get("stage") == "episode":
        return adapt(method, task, config, ctx)
    if method == "protonet":
        return fit_protonet(task, config, ctx)
    if method == "maml":
        return fit_maml(task, config, ctx)
    if method == "baseline_pp":
        return fit_baseline_pp(task, config, ctx)
    encoder = _encoder(config, task).encoder.to(ctx.device)  # nc_random: never trained
    ctx.track(encoder)
    return encoder


def adapt(method: str, task: Task, config: dict[str, Any], ctx: FitContext) -> Adapted:
    """Adapt the meta-trained state ``ctx.previous`` to one episode's support set ``task.train``."""
    if method == "maml":
        return _maml_adapted(ctx.previous, task.train, config)
    scale = float(config.get("cosine_scale", 10.0)) if method == "baseline_pp" else None
    return _nc_probs(ctx.previous, task.train, task.num_classes, scale)


def evaluate(method: str, fitted: Any, split: Split, ctx: FitContext) -> torch.Tensor:
    if isinstance(fitted, Adapted):
        return fitted.probs(split.x)
    raise ValueError(f"{method}: harness_evaluate is called on an episode's query set, after adapting to it")
