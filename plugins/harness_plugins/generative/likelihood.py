"""Shared pieces of the generative classifiers: class priors and Bayes' rule, Monte-Carlo per-class
scoring with common random numbers, time/class conditioning, DDPM noise schedules with their
variational bound and sampler, a fitted temperature, a content-addressed model cache, sample grids,
and a check that class-conditional samples show their class (a classifier of real images judges them).

A generative classifier turns class-conditional likelihood estimates ``log p(x|y)`` (an ELBO, an
importance-weighted bound, a denoising loss) into ``p(y|x) ∝ p(x|y)·p(y)``. The estimates are
Monte-Carlo, so every class of one example is scored with the *same* random draws (the same latent
noise, the same diffusion timesteps and noise): the comparison between classes is then paired, and
most of the Monte-Carlo noise cancels in the differences that decide the class.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import ConfigError

LOG2 = math.log(2.0)


# --------------------------------------------------------------------------- priors and Bayes' rule

def log_class_prior(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """log p(y) from the training label frequencies (add-one smoothed, so no class has zero mass)."""
    counts = torch.bincount(y, minlength=num_classes).float() + 1.0
    return (counts / counts.sum()).log()


def class_posterior(log_lik: torch.Tensor, log_prior: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """p(y|x) = softmax_y(log p(x|y)/T + log p(y)) for an ``N×K`` matrix of log-likelihood estimates."""
    return torch.softmax(log_lik.float() / temperature + log_prior.to(log_lik.device), dim=1)


def log_marginal(log_lik: torch.Tensor, log_prior: torch.Tensor) -> torch.Tensor:
    """log p(x) = logsumexp_y [log p(x|y) + log p(y)], per example; a lower bound on log p(x) whenever
    every ``log_lik`` entry is one (a sum of bounds on the joint cannot exceed the sum of the joints)."""
    return torch.logsumexp(log_lik + log_prior.to(log_lik.device), dim=1)


def class_labels(batch: int, num_classes: int, device: torch.device) -> torch.Tensor:
    """``[0, 1, …, K-1]`` repeated for each of ``batch`` examples: the labels of a class-expanded batch."""
    return torch.arange(num_classes, device=device).repeat(batch)


def expand_classes(t: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Repeat every row of ``t`` K times (row ``i`` becomes rows ``i·K … i·K+K-1``), so each class of an
    example sees the same input and the same random draw."""
    return t.repeat_interleave(num_classes, dim=0)


@torch.no_grad()
def mc_class_scores(
    score: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor],
    x: torch.Tensor,
    num_classes: int,
    draws: int,
    batch_size: int = 256,
) -> torch.Tensor:
    """Monte-Carlo class scores of every example, ``draws × N × K``, batched over examples.

    ``score(xb, yb, draw)`` receives a class-expanded batch (``B·K`` rows: each example repeated for
    every class, ``yb`` the classes) and the index of the Monte-Carlo draw, and returns ``B·K`` values;
    it must make its random draw once per *example* and share it across the example's classes
    (:func:`expand_classes`). The caller reduces over draws: a mean for a denoising loss, a
    log-mean-exp for an importance-weighted bound.
    """
    k = num_classes
    parts = []
    for i in range(0, x.shape[0], batch_size):
        xb = expand_classes(x[i:i + batch_size], k)
        yb = class_labels(xb.shape[0] // k, k, x.device)
        parts.append(torch.stack([score(xb, yb, d).float().view(-1, k) for d in range(draws)]))
    return torch.cat(parts, dim=1) if parts else torch.zeros(draws, 0, k, device=x.device)


def fit_temperature(scores: torch.Tensor, y: torch.Tensor, log_prior: torch.Tensor) -> float:
    """The temperature T minimising the NLL of ``softmax(scores/T + log p(y))`` on labelled examples
    (Guo et al., 2017): one scalar, searched on a log grid then refined, so it cannot overfit."""
    scores = scores.detach().double().cpu()
    y = y.cpu()
    prior = log_prior.double().cpu()

    def nll(log_t: float) -> float:
        return F.cross_entropy(scores / math.exp(log_t) + prior, y).item()

    grid = [i / 4 for i in range(-40, 41)]  # T from e^-10 to e^10
    best = min(grid, key=nll)
    lo, hi = best - 0.25, best + 0.25
    for _ in range(30):  # golden-section refinement inside the best grid cell
        a, b = hi - 0.618 * (hi - lo), lo + 0.618 * (hi - lo)
        if nll(a) < nll(b):
            hi = b
        else:
            lo = a
    return math.exp((lo + hi) / 2)


# --------------------------------------------------------------------------- conditioning

def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal features of (integer or real) timesteps, as in the Transformer's positions."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([args.sin(), args.cos()], dim=1)
    return F.pad(emb, (0, dim % 2))


class TimeClassEmbedding(nn.Module):
    """One conditioning vector per example: an MLP of the timestep's sinusoidal features plus a learned
    embedding of the class."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.dim = dim
        self.time = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.label = nn.Embedding(num_classes, dim)

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.time(timestep_embedding(t, self.dim)) + self.label(y)


# --------------------------------------------------------------------------- DDPM

SCHEDULES = ("linear", "cosine")


@dataclass
class NoiseSchedule:
    """A DDPM forward process over timesteps 1…T (index ``t-1`` in the tensors).

    ``betas``: the per-step noise variances; ``alpha_bar[t-1] = Π_{s≤t} (1 - β_s)``.
    """

    betas: torch.Tensor

    @classmethod
    def make(cls, kind: str, steps: int, device: torch.device | str = "cpu") -> NoiseSchedule:
        """``linear``: β from 1e-4 to 0.02 scaled to T steps (Ho et al., 2020); ``cosine``: ᾱ follows a
        squared cosine (Nichol & Dhariwal, 2021), β clipped at 0.999."""
        if steps < 2:
            raise ConfigError(f"a diffusion needs at least 2 timesteps, got {steps}")
        if kind == "linear":
            scale = 1000.0 / steps
            betas = torch.linspace(1e-4 * scale, 0.02 * scale, steps, dtype=torch.float64)
        elif kind == "cosine":
            s = 0.008
            u = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
            f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
            betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
        else:
            raise ConfigError(f"unknown noise schedule {kind!r} (known: {', '.join(SCHEDULES)})")
        return cls(betas.clamp(max=0.999).to(device))

    @property
    def steps(self) -> int:
        return int(self.betas.shape[0])

    @property
    def alpha_bar(self) -> torch.Tensor:
        return torch.cumprod(1 - self.betas, 0)

    def _at(self, values: torch.Tensor, t: torch.Tensor, ndim: int) -> torch.Tensor:
        return values[t - 1].float().view(-1, *([1] * (ndim - 1)))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t·x0 + √(1-ᾱ_t)·ε."""
        ab = self._at(self.alpha_bar, t, x0.ndim)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def kl_weight(self, t: torch.Tensor) -> torch.Tensor:
        """For t ≥ 2, KL(q(x_{t-1}|x_t,x0) ‖ p(x_{t-1}|x_t)) = w_t·‖x0 − x̂0‖² when p is the posterior
        q(x_{t-1}|x_t, x̂0) at the model's clipped estimate x̂0 (the process :func:`ddpm_sample` runs):
        w_t = ᾱ_{t-1}·β_t / (2·(1 − ᾱ_t)·(1 − ᾱ_{t-1})). Writing the same KL through ε̂ instead divides
        by √α_t, which explodes where a cosine schedule clips β_t near 1."""
        ab = self.alpha_bar[t - 1]
        ab_prev = self.alpha_bar[(t - 2).clamp(min=0)]
        beta = self.betas[t - 1]
        return (ab_prev * beta / (2 * (1 - ab) * (1 - ab_prev))).float()

    def prior_kl(self, x0: torch.Tensor) -> torch.Tensor:
        """KL(q(x_T|x0) ‖ N(0, I)) per example, in nats."""
        ab = self.alpha_bar[-1].float()
        per_dim = 0.5 * (ab * x0.pow(2) + (1 - ab) - 1 - torch.log(1 - ab))
        return per_dim.flatten(1).sum(1)

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        ab = self._at(self.alpha_bar, t, x_t.ndim)
        return (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()

    def decoder_nll(self, x0: torch.Tensor, mean: torch.Tensor, bins: int = 256) -> torch.Tensor:
        """−log p(x0|x1) per example: a Gaussian with the model's ``mean`` (its clipped x̂0 at t = 1)
        and variance β_1, integrated over the data's quantisation bins in [−1, 1] (the edge bins reach to
        ±∞), as in Ho et al. (2020)."""
        beta1 = self.betas[0].float()
        std = beta1.sqrt()
        half = 1.0 / (bins - 1)
        centred = (x0 - mean) / std
        upper = torch.where(x0 > 1 - half, torch.full_like(x0, math.inf), centred + half / std)
        lower = torch.where(x0 < -1 + half, torch.full_like(x0, -math.inf), centred - half / std)
        normal = torch.distributions.Normal(0.0, 1.0)
        # log of Φ(upper) − Φ(lower), computed on the side of the mean where it does not cancel.
        mass = torch.where(lower > 0, normal.cdf(-lower) - normal.cdf(-upper), normal.cdf(upper) - normal.cdf(lower))
        return -mass.clamp_min(1e-12).log().flatten(1).sum(1)


def quantise(x: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """Images in [0, 1] onto the centres of ``bins`` levels in [−1, 1]: the discrete data the
    bits/dim figure is a likelihood of."""
    return torch.round(x.clamp(0, 1) * (bins - 1)) / (bins - 1) * 2 - 1


def stratified_timesteps(n: int, lo: int, hi: int, batch: int, generator: torch.Generator | None,
                         device: torch.device) -> torch.Tensor:
    """``n × batch`` integer timesteps in [lo, hi]: draw ``j`` falls uniformly in the ``j``-th of ``n``
    equal strata, so a few draws still cover the whole range."""
    u = torch.rand(n, batch, generator=generator, device=device)
    pos = (torch.arange(n, device=device)[:, None] + u) / n
    return (lo + (pos * (hi - lo + 1)).floor().long()).clamp(lo, hi)


@torch.no_grad()
def ddpm_sample(
    eps_model: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    schedule: NoiseSchedule,
    y: torch.Tensor,
    shape: tuple[int, ...],
    steps: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Ancestral sampling of images of class ``y`` in [−1, 1] on ``steps`` evenly spaced timesteps
    (the respaced process of Nichol & Dhariwal, 2021: the same ᾱ at the kept steps, new β's)."""
    device = y.device
    keep = torch.linspace(1, schedule.steps, min(steps, schedule.steps), device=device).round().long().unique()
    ab_all = schedule.alpha_bar.to(device)
    x = torch.randn(y.shape[0], *shape, generator=generator, device=device)
    for i in range(len(keep) - 1, -1, -1):
        t = keep[i]
        ab = ab_all[t - 1].float()
        ab_prev = ab_all[keep[i - 1] - 1].float() if i > 0 else torch.ones((), device=device)
        beta = 1 - ab / ab_prev
        eps = eps_model(x, t.expand(y.shape[0]), y)
        x0 = ((x - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(-1, 1)
        # Posterior mean of q(x_{t-1} | x_t, x0) with the clipped x0, and its variance β̃.
        mean = (ab_prev.sqrt() * beta / (1 - ab)) * x0 + ((1 - beta).sqrt() * (1 - ab_prev) / (1 - ab)) * x
        if i > 0:
            var = beta * (1 - ab_prev) / (1 - ab)
            x = mean + var.sqrt() * torch.randn(x.shape, generator=generator, device=device)
        else:
            x = mean
    return x.clamp(-1, 1)


def bits_per_dim(nats: torch.Tensor, dims: int) -> torch.Tensor:
    return nats / (dims * LOG2)


# --------------------------------------------------------------------------- cache and grids

def fingerprint(*parts: Any) -> str:
    """A content hash of JSON-able values and tensors: the key of a cached fitted model."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            h.update(part.detach().to("cpu").contiguous().numpy().tobytes())
            h.update(str((part.dtype, tuple(part.shape))).encode())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()[:24]


def cache_load(cache_dir: Path, key: str) -> dict[str, Any] | None:
    path = Path(cache_dir) / "generative" / f"{key}.pt"
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def cache_store(cache_dir: Path, key: str, payload: dict[str, Any]) -> None:
    folder = Path(cache_dir) / "generative"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{key}.{os.getpid()}.tmp"
    torch.save(payload, tmp)
    tmp.replace(folder / f"{key}.pt")  # atomic: a reader never sees half a file


def image_grid(images: torch.Tensor, nrow: int, pad: int = 2) -> torch.Tensor:
    """Tile ``N×C×H×W`` images in [0, 1] into one ``C×H'×W'`` image, ``nrow`` images a row."""
    n, c, h, w = images.shape
    rows = math.ceil(n / nrow)
    grid = torch.ones(c, rows * (h + pad) + pad, nrow * (w + pad) + pad)
    for i, img in enumerate(images.detach().float().cpu().clamp(0, 1)):
        r, col = divmod(i, nrow)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + col * (w + pad): pad + col * (w + pad) + w] = img
    return grid


def save_grid(images: torch.Tensor, path: Path, nrow: int, scale: int = 3) -> Path:
    """Write a sample grid as a PNG (each pixel enlarged ``scale`` times so small digits are visible)."""
    from PIL import Image

    grid = image_grid(images, nrow)
    arr = (grid * 255).round().byte()
    arr = arr.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    mode = "L" if arr.shape[0] == 1 else "RGB"
    data = arr[0].numpy() if mode == "L" else arr[:3].permute(1, 2, 0).numpy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(data, mode=mode).save(path)
    return path


# --------------------------------------------------------------------------- do samples show their class?

class SampleJudge(nn.Module):
    """A small CNN of real images (two 3×3 conv–ReLU stages, 2×2 max-pooling, a linear head) that
    judges generated ones; adaptive pooling lets it take any image size."""

    def __init__(self, channels: int, num_classes: int, width: int = 16):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(4),
            nn.Flatten(), nn.Linear(2 * width * 16, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def fit_sample_judge(x: torch.Tensor, y: torch.Tensor, num_classes: int, *, epochs: int = 8,
                     batch_size: int = 64, seed: int = 0, cache_dir: Path | None = None) -> SampleJudge:
    """A :class:`SampleJudge` trained on real images ``x`` (``N×C×H×W`` in [0, 1]) with labels ``y``.

    Its seed is fixed rather than the row's, so every row and seed of a data set is judged by the same
    classifier; with ``cache_dir`` it is trained once per training set and reused.
    """
    key = fingerprint("sample-judge/1", epochs, batch_size, seed, num_classes, x, y)
    cached = cache_load(cache_dir, key) if cache_dir is not None else None
    with torch.random.fork_rng(devices=[]):  # the row's own random stream stays untouched
        torch.manual_seed(seed)
        judge = SampleJudge(x.shape[1], num_classes).to(x.device)
        if cached is not None:
            judge.load_state_dict(cached["model"])
            return judge.eval()
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(judge.parameters(), lr=1e-3)
        judge.train()
        for _ in range(epochs):
            for idx in torch.randperm(x.shape[0], generator=gen).to(x.device).split(batch_size):
                loss = F.cross_entropy(judge(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    if cache_dir is not None:
        cache_store(cache_dir, key, {"model": {k: v.cpu() for k, v in judge.state_dict().items()}})
    return judge.eval()


@torch.no_grad()
def sample_class_agreement(judge: nn.Module, samples: torch.Tensor, labels: torch.Tensor) -> float:
    """The share of ``samples`` that ``judge`` assigns to the class they were generated for
    (``labels``): 1 when every sample shows its class, about 1/K when the condition is ignored."""
    judge.eval()
    predicted = torch.cat([judge(b).argmax(1) for b in samples.float().split(256)])
    return (predicted == labels.to(predicted.device)).float().mean().item()


__all__ = [
    "NoiseSchedule", "SCHEDULES", "SampleJudge", "TimeClassEmbedding", "bits_per_dim", "cache_load",
    "cache_store", "class_labels", "class_posterior", "ddpm_sample", "expand_classes", "fingerprint",
    "fit_sample_judge", "fit_temperature", "image_grid", "log_class_prior", "log_marginal", "mc_class_scores",
    "quantise", "sample_class_agreement", "save_grid", "stratified_timesteps", "timestep_embedding",
]
