"""Pre-training pieces shared by representation-learning and transfer methods.

* two-view augmentation (:class:`ViewAugment`) and projection heads for self-supervised learning;
* the NT-Xent contrastive loss (SimCLR) and the BYOL regression loss;
* :func:`pretrain_self_supervised` and :func:`pretrain_supervised`, the two ways an encoder is
  pre-trained inside the harness, both behind :func:`cached_pretrain`, a cache addressed by the
  content of what is trained (configuration, data, seed) so that tuning a later stage reuses it;
* :func:`fit_probe`: a linear probe on a frozen encoder, the standard offline linear evaluation.

Pre-training runs in its own :class:`FitContext` (:func:`stage_context`): its networks are not
tracked (the parameter columns count only what predicts) and it never reports to the pruner.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from harness.context import FitContext
from harness.errors import ConfigError
from harness.task import Split, Task
from harness.toolkit.augment import Augment
from harness.toolkit.models import Classifier
from harness.toolkit.ssl_objectives import MoCoQueue, info_nce, projection_spread, simsiam_loss
from harness.toolkit.spaces import PRETRAIN_DEFAULTS, PROBE_DEFAULTS, VIEW_STRENGTHS, suggest_probe  # noqa: F401  (public here too)
from harness.toolkit.train import EMA, TrainConfig, autocast, predict_logits, train, val_accuracy

CACHE_VERSION = 1  # bump when a change here alters what a cached state means


# -- networks by configuration ---------------------------------------------------------------

ENCODER_KEYS = ("model", "width", "stages", "patch_size", "pretrained", "depth", "embed_dim", "num_heads",
                "global_pool")
_OPTIONAL_KEYS = ("depth", "embed_dim", "num_heads", "global_pool")


def encoder_spec(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a configuration that decides the network, for cache keys (``depth`` and a ViT's
    ``embed_dim``, ``num_heads`` and ``global_pool`` only where set, so keys of networks without them stay what they were)."""
    return {k: config.get(k) for k in ENCODER_KEYS if k not in _OPTIONAL_KEYS or config.get(k) is not None}


# -- two views --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ViewAugment(Augment):
    """:class:`Augment` plus per-example contrast/brightness jitter and random erasing (a blanked
    rectangle), the extra distortions that make two views of a small grey image hard to match by
    pixel statistics alone (Chen et al., 2020, sec. 3: the composition of augmentations matters)."""

    jitter: float = 0.0
    erase: float = 0.0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = super().__call__(x)
        n, dev = x.shape[0], x.device
        if self.jitter > 0:
            shape = (n,) + (1,) * (x.ndim - 1)
            contrast = 1 + (torch.rand(shape, device=dev) * 2 - 1) * self.jitter
            bright = (torch.rand(shape, device=dev) * 2 - 1) * self.jitter * 0.5
            mean = out.mean(dim=tuple(range(1, x.ndim)), keepdim=True)
            out = (out - mean) * contrast + mean + bright
        if self.erase > 0:
            h, w = x.shape[-2:]
            size = torch.rand(n, 2, device=dev) * self.erase
            lo = torch.rand(n, 2, device=dev) * (1 - size)
            rows = torch.linspace(0, 1, h, device=dev)
            cols = torch.linspace(0, 1, w, device=dev)
            in_r = (rows[None] >= lo[:, :1]) & (rows[None] <= lo[:, :1] + size[:, :1])
            in_c = (cols[None] >= lo[:, 1:]) & (cols[None] <= lo[:, 1:] + size[:, 1:])
            hole = (in_r[:, :, None] & in_c[:, None, :]).unsqueeze(1)
            out = out.masked_fill(hole, 0.0)
        return out


def view_augment(strength: str, hflip: bool = False) -> ViewAugment:
    """The view distributions a self-supervised search space offers."""
    if strength == "light":
        return ViewAugment(degrees=10, translate=0.1, scale=(0.85, 1.15), hflip=hflip, jitter=0.2, erase=0.0)
    if strength == "medium":
        return ViewAugment(degrees=15, translate=0.15, scale=(0.75, 1.2), hflip=hflip, jitter=0.4, erase=0.4)
    if strength == "strong":
        return ViewAugment(degrees=25, translate=0.2, scale=(0.6, 1.25), hflip=hflip, noise=0.1, jitter=0.5,
                           erase=0.5)
    raise ConfigError(f"unknown view strength {strength!r} (known: {', '.join(VIEW_STRENGTHS)})")


# -- heads and losses -------------------------------------------------------------------------


def mlp_head(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """Linear → BatchNorm → ReLU → Linear: SimCLR's projection head and BYOL's projector/predictor."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, out_dim))


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Normalised-temperature cross-entropy over 2N views: each view's positive is its twin, the
    other 2N − 2 views of the batch are its negatives (Chen et al., ICML 2020)."""
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    n = z1.shape[0]
    sim = (z @ z.T) / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), -1e9)  # no self-pairs
    twin = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, twin)


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """2 − 2·cos(p, z) with the target ``z`` treated as a constant (Grill et al., NeurIPS 2020)."""
    return (2 - 2 * F.cosine_similarity(p.float(), z.detach().float(), dim=-1)).mean()


class SelfSupervised(nn.Module):
    """An encoder with the heads a self-supervised objective trains on top of it.

    ``objective``: ``"contrastive"`` (SimCLR: projector + NT-Xent), ``"byol"`` (projector and
    predictor; the target network is an EMA of this module, passed to :func:`train`), ``"simsiam"``
    (projector ending in BatchNorm and a bottleneck predictor, no target network) or ``"moco"``
    (projector; the key encoder is an EMA of this module).
    """

    def __init__(self, encoder: nn.Module, feature_dim: int, objective: str, proj_dim: int = 64,
                 hidden: int = 256):
        super().__init__()
        if objective not in SSL_OBJECTIVES:
            raise ConfigError(f"unknown self-supervised objective {objective!r}")
        self.objective = objective
        self.proj_dim = proj_dim
        self.encoder = encoder
        self.projector = mlp_head(feature_dim, hidden, proj_dim)
        self.predictor = mlp_head(proj_dim, hidden, proj_dim) if objective == "byol" else None
        if objective == "simsiam":
            # Chen & He, 2021, sec. 4: BN on the projection and a predictor with a bottleneck of a
            # quarter of the projection's width (2048 → 512 → 2048 in the paper)
            self.projector.append(nn.BatchNorm1d(proj_dim, affine=False))
            self.predictor = mlp_head(proj_dim, max(8, proj_dim // 4), proj_dim)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.encoder(x))

    @torch.no_grad()
    def spread(self, x: torch.Tensor, ctx: FitContext, n: int = 1024) -> float:
        """:func:`~harness.toolkit.ssl_objectives.projection_spread` of the first ``n`` images of
        ``x`` in eval mode: ≈ 1 healthy, → 0 collapsed."""
        was = self.training
        self.eval()
        try:
            with autocast(ctx):
                return projection_spread(self.project(x[:n].to(ctx.device)))
        finally:
            self.train(was)


SSL_OBJECTIVES = ("contrastive", "byol", "simsiam", "moco")


# -- contexts and the cache -------------------------------------------------------------------


def stage_context(ctx: FitContext, seed: int) -> FitContext:
    """A context for a pre-training stage: same device and budget, its own seed, no pruning
    reports and its own module list (so the stage's heads never enter the parameter columns)."""
    return dataclasses.replace(ctx, seed=seed, reporter=None, samples_seen=0, modules=[], extras={},
                               artifact_dir=None)


def data_digest(*tensors: torch.Tensor) -> str:
    """SHA-256 of the tensors' shapes and bytes: the data part of a cache key."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().to("cpu").contiguous()
        h.update(f"{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def cache_key(what: dict[str, Any], data: str, seed: int) -> str:
    blob = json.dumps({"v": CACHE_VERSION, "what": what, "data": data, "seed": seed}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch for a stage without disturbing the caller's random stream, so a cache hit and a
    miss leave the rest of ``fit`` with the same random numbers."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def cached_pretrain(
    build: Callable[[], nn.Module],
    pretrain: Callable[[nn.Module, FitContext], None],
    *,
    what: dict[str, Any],
    data: str,
    seed: int,
    ctx: FitContext,
) -> tuple[nn.Module, bool]:
    """Build a network with ``build()`` and give it pre-trained weights: from ``ctx.cache_dir`` when
    this exact stage (``what``: the configuration that shapes it, ``data``: a :func:`data_digest`,
    ``seed``) ran before, otherwise by running ``pretrain(model, stage_ctx)`` and storing the result.
    Returns the network and whether the cache answered.
    """
    key = cache_key(what, data, seed)
    path = Path(ctx.cache_dir) / "pretrain" / f"{key}.pt"
    with _seeded(seed, ctx.device):
        model = build().to(ctx.device)
        if path.is_file():
            model.load_state_dict(torch.load(path, map_location=ctx.device, weights_only=True))
            return model, True
        stage = stage_context(ctx, seed)
        pretrain(model, stage)
    ctx.samples_seen += stage.samples_seen
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)  # atomic: a concurrent worker sees the whole file or none
    return model, False


def stage_seed(ctx: FitContext) -> int:
    """The seed of a pre-training stage: the run's seed for the final re-runs (so the spread over
    seeds includes pre-training), one shared seed while tuning (so trials that differ only in a
    later stage reuse one cached pre-training)."""
    return ctx.seed if ctx.phase == "final" else 0


# -- the two pre-training recipes -------------------------------------------------------------

def _stage_train_config(config: dict[str, Any], batch_size: int | None = None) -> TrainConfig:
    c = {**PRETRAIN_DEFAULTS, **config}
    return TrainConfig(optimizer="adamw", lr=float(c["pretrain_lr"]), weight_decay=float(c["pretrain_weight_decay"]),
                       batch_size=int(batch_size or c["pretrain_batch_size"]), epochs=int(c["pretrain_epochs"]),
                       schedule="cosine", warmup_epochs=min(1.0, 0.1 * int(c["pretrain_epochs"])),
                       restore_best=False)


def pretrain_self_supervised(ssl: SelfSupervised, x: torch.Tensor, config: dict[str, Any], ctx: FitContext,
                             hflip: bool = False) -> None:
    """Train ``ssl`` on unlabelled images ``x`` with two augmented views per image.

    Contrastive: NT-Xent between the projections of the two views. BYOL: the online predictor of
    each view regresses the EMA target's projection of the other view, symmetrised. SimSiam: the
    same without a target network, the other view's projection behind a stop-gradient. MoCo: each
    view's projection must pick the momentum encoder's key of the other view out of a queue of
    earlier keys (InfoNCE), symmetrised; both keys then enter the queue.
    """
    c = {**PRETRAIN_DEFAULTS, **config}
    aug = view_augment(c["views"], hflip)
    temperature = float(c["temperature"])
    target = EMA(ssl, decay=float(c["ema_decay"]), warmup=False) if ssl.objective in ("byol", "moco") else None
    queue = MoCoQueue(ssl.proj_dim, int(c.get("queue_size", 1024)), ctx.device) \
        if ssl.objective == "moco" else None

    def step(idx: torch.Tensor, progress: float) -> torch.Tensor:
        xb = x[idx]
        v1, v2 = aug(xb), aug(xb)
        if ssl.objective == "contrastive":
            return nt_xent(ssl.project(v1), ssl.project(v2), temperature)
        if ssl.objective == "simsiam":
            z1, z2 = ssl.project(v1), ssl.project(v2)
            return simsiam_loss(ssl.predictor(z1), ssl.predictor(z2), z1, z2)
        if ssl.objective == "moco":
            q1, q2 = ssl.project(v1), ssl.project(v2)
            with torch.no_grad():
                k1, k2 = target.model.project(v1), target.model.project(v2)
            loss = info_nce(q1, k2, queue.keys, temperature) + info_nce(q2, k1, queue.keys, temperature)
            queue.push(torch.cat([k1, k2]))
            return loss
        z1, z2 = ssl.project(v1), ssl.project(v2)
        with torch.no_grad():
            t1, t2 = target.model.project(v1), target.model.project(v2)
        return byol_loss(ssl.predictor(z1), t2) + byol_loss(ssl.predictor(z2), t1)

    train(ssl, step, len(x), _stage_train_config(c), ctx, ema=target)


def pretrain_supervised(model: Classifier, task: Task, config: dict[str, Any], ctx: FitContext) -> None:
    """Cross-entropy training on a (source) task, keeping the best-validation weights."""
    c = {**PRETRAIN_DEFAULTS, **config}
    x, y = task.train.x, task.train.y
    aug = view_augment("light", bool(task.meta.get("hflip", False))) if c.get("source_augment", True) else None

    def step(idx: torch.Tensor, progress: float) -> torch.Tensor:
        xb = x[idx] if aug is None else aug(x[idx])
        return F.cross_entropy(model(xb), y[idx])

    cfg = dataclasses.replace(_stage_train_config(c, batch_size=int(c.get("source_batch_size", 64))),
                              restore_best=True)
    train(model, step, len(x), cfg, ctx, val_fn=lambda: val_accuracy(model, task.val, ctx))


# -- frozen encoders and linear probes --------------------------------------------------------


def _stats_frozen(module: nn.Module, args) -> None:
    module.training = False


def freeze(module: nn.Module) -> nn.Module:
    """Stop every parameter of ``module`` from training and keep its normalisation statistics
    fixed too: a forward pre-hook holds BatchNorm layers in eval mode whatever ``train()`` says."""
    for p in module.parameters():
        p.requires_grad_(False)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not getattr(m, "_harness_frozen", False):
            m.register_forward_pre_hook(_stats_frozen)
            m._harness_frozen = True
    return module


class Standardize(nn.Module):
    """(x − mean) / std with fixed statistics: puts frozen features on one scale for the probe."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean.detach().clone())
        self.register_buffer("std", std.detach().clone().clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


@torch.no_grad()
def encode(encoder: nn.Module, x: torch.Tensor, ctx: FitContext) -> torch.Tensor:
    """Features of ``x`` under the encoder in eval mode, batched."""
    return predict_logits(encoder, x, ctx)


def standardized_head(encoder: nn.Module, task: Task, ctx: FitContext, feats: torch.Tensor | None = None) -> nn.Sequential:
    """A new linear head for ``task`` behind a :class:`Standardize` layer holding the statistics of
    the encoder's features over every training input, labelled or not, so that a head on a
    pre-trained encoder starts on a sensible scale whatever the encoder's."""
    feats = encode(encoder, task.train.x, ctx) if feats is None else feats
    pool = feats if task.unlabeled is None else torch.cat([feats, encode(encoder, task.unlabeled.x, ctx)])
    head = nn.Sequential(Standardize(pool.mean(0), pool.std(0)), nn.Linear(feats.shape[1], task.num_classes))
    return head.to(ctx.device)


def fit_probe(model: Classifier, task: Task, config: dict[str, Any], ctx: FitContext) -> Classifier:
    """Freeze ``model.encoder`` and train a new linear head on its features of the labelled train
    split. Features are computed once (the encoder never changes); the head standardises them with
    statistics of every training input, labelled or not. Returns ``model`` with the new head."""
    c = {**PROBE_DEFAULTS, **config}
    freeze(model.encoder.to(ctx.device))
    feats = encode(model.encoder, task.train.x, ctx)
    head = model.head = standardized_head(model.encoder, task, ctx, feats)
    ctx.track(model)
    val = Split(encode(model.encoder, task.val.x, ctx), task.val.y)
    y = task.train.y

    def step(idx: torch.Tensor, progress: float) -> torch.Tensor:
        return F.cross_entropy(head(feats[idx]), y[idx])

    cfg = TrainConfig(optimizer="adamw", lr=float(c["probe_lr"]), weight_decay=float(c["probe_weight_decay"]),
                      batch_size=int(c["probe_batch_size"]), epochs=int(c["probe_epochs"]), schedule="cosine")
    train(head, step, len(feats), cfg, ctx, val_fn=lambda: val_accuracy(head, val, ctx))
    return model


__all__ = [
    "encoder_spec",
    "ViewAugment", "view_augment", "mlp_head", "nt_xent", "byol_loss", "SelfSupervised", "stage_context",
    "data_digest", "cache_key", "cached_pretrain", "stage_seed", "pretrain_self_supervised",
    "pretrain_supervised", "freeze", "Standardize", "standardized_head", "encode", "fit_probe", "suggest_probe",
    "PRETRAIN_DEFAULTS", "PROBE_DEFAULTS",
]
