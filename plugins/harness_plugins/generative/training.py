"""The generative models, how they train, score and sample; :mod:`harness_plugins.generative.methods`' hooks import this on first use."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.context import FitContext
from harness.errors import ConfigError
from harness.task import Split, Task
from harness.toolkit.train import EMA, TrainConfig, train
from harness_plugins.generative.likelihood import (
    NoiseSchedule, bits_per_dim, cache_load, cache_store, class_posterior,
    ddpm_sample, expand_classes, fingerprint, fit_sample_judge, fit_temperature, log_class_prior,
    log_marginal, mc_class_scores, quantise, sample_class_agreement, save_grid, stratified_timesteps,
)
from harness_plugins.generative.unet import ConditionalUNet

SAMPLES_PER_CLASS = 10
LOG_2PI = math.log(2 * math.pi)
# Keys that change only how a trained diffusion model is scored: not part of its cache key.
_EVAL_ONLY = ("mc_evals", "t_lo", "t_hi", "bpd_evals", "calib_images")


def _sample_labels(num_classes: int, device: torch.device) -> torch.Tensor:
    """Labels of a sample grid: ``SAMPLES_PER_CLASS`` of class 0, then of class 1, …"""
    return torch.arange(num_classes, device=device).repeat_interleave(SAMPLES_PER_CLASS)


def _report_samples(images: torch.Tensor, labels: torch.Tensor, task: Task, ctx: FitContext) -> None:
    """In the final phase: the sample grid, and the share of samples a classifier of real images
    assigns to the class they were generated for (``sample_class_acc``)."""
    if ctx.phase != "final":
        return
    if ctx.artifact_dir is not None:
        save_grid(images, ctx.artifact_dir / "samples.png", nrow=SAMPLES_PER_CLASS)
    judge = fit_sample_judge(task.train.x, task.train.y, task.num_classes, cache_dir=ctx.cache_dir)
    ctx.extras["sample_class_acc"] = sample_class_agreement(judge, images, labels)


# --------------------------------------------------------------------------- VAE

class ConditionedMLP(nn.Module):
    """An MLP with ReLU between layers whose every layer also sees the condition ``c`` (appended to
    its input), so the condition cannot fade out in the deeper layers."""

    def __init__(self, sizes: list[int], cond: int):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a + cond, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            h = layer(torch.cat([h, c], 1))
            if i < len(self.layers) - 1:
                h = F.relu(h)
        return h


class ConditionalVAE(nn.Module):
    """q(z|x,y) = N(μ, σ²) and p(x|z,y), MLPs over the flattened image with the class one-hot appended
    to every layer's input."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, latent: int, hidden: int, decoder: str):
        super().__init__()
        if decoder not in ("bernoulli", "gaussian"):
            raise ConfigError(f"unknown VAE decoder {decoder!r} (known: bernoulli, gaussian)")
        self.input_shape, self.num_classes, self.latent, self.decoder = input_shape, num_classes, latent, decoder
        dims = math.prod(input_shape)
        self.enc = ConditionedMLP([dims, hidden, hidden, 2 * latent], num_classes)
        self.dec = ConditionedMLP([latent, hidden, hidden, dims], num_classes)
        # Gaussian decoder: one learned log-σ per pixel, shared by all images.
        self.log_sigma = nn.Parameter(torch.full((dims,), -1.0)) if decoder == "gaussian" else None

    def _onehot(self, y: torch.Tensor) -> torch.Tensor:
        return F.one_hot(y, self.num_classes).float()

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_var = self.enc(x.flatten(1), self._onehot(y)).chunk(2, dim=1)
        return mu, log_var.clamp(-12, 8)

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.dec(z, self._onehot(y))

    def log_px(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """log p(x|z,y) per example, in nats, from the decoder output ``out``."""
        x = x.flatten(1)
        if self.decoder == "bernoulli":
            return -F.binary_cross_entropy_with_logits(out, x, reduction="none").sum(1)
        log_sigma = self.log_sigma.clamp(-5, 2)
        return (-0.5 * ((x - out) / log_sigma.exp()).pow(2) - log_sigma - 0.5 * LOG_2PI).sum(1)

    def loss(self, x: torch.Tensor, y: torch.Tensor, beta: float) -> torch.Tensor:
        """Mean over the batch of −(E_q log p(x|z,y) − β·KL(q(z|x,y) ‖ N(0, I)))."""
        mu, log_var = self.encode(x, y)
        z = mu + (0.5 * log_var).exp() * torch.randn_like(mu)
        kl = 0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var).sum(1)
        return (beta * kl - self.log_px(x, self.decode(z, y))).mean()

    def log_weight(self, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """log p(x, z|y) − log q(z|x, y) at z = μ + σ·ε: one importance weight of log p(x|y)."""
        mu, log_var = self.encode(x, y)
        z = mu + (0.5 * log_var).exp() * eps
        log_q = (-0.5 * eps.pow(2) - 0.5 * log_var - 0.5 * LOG_2PI).sum(1)
        log_prior = (-0.5 * z.pow(2) - 0.5 * LOG_2PI).sum(1)
        return self.log_px(x, self.decode(z, y)) + log_prior - log_q

    @torch.no_grad()
    def sample(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The decoder's mean image for z ~ N(0, I), in [0, 1]."""
        z = torch.randn(y.shape[0], self.latent, generator=generator, device=y.device)
        out = self.decode(z, y)
        mean = out.sigmoid() if self.decoder == "bernoulli" else out.clamp(0, 1)
        return mean.view(-1, *self.input_shape)


@dataclass
class VAEFit:
    model: ConditionalVAE
    log_prior: torch.Tensor
    iw_samples: int


def _vae_log_weights(model: ConditionalVAE, x: torch.Tensor, draws: int, seed: int) -> torch.Tensor:
    """``draws × N × K`` importance log-weights; each example's ε is shared across its classes."""
    model.eval()
    gen = torch.Generator(device=x.device)
    gen.manual_seed(seed)
    k = model.num_classes

    def score(xb: torch.Tensor, yb: torch.Tensor, draw: int) -> torch.Tensor:
        eps = torch.randn(xb.shape[0] // k, model.latent, generator=gen, device=xb.device)
        return model.log_weight(xb, yb, expand_classes(eps, k))

    return mc_class_scores(score, x, k, draws, batch_size=128)


def _logmeanexp(t: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(t, 0) - math.log(t.shape[0])


def _fit_vae(task: Task, config: dict[str, Any], ctx: FitContext) -> VAEFit:
    model = ConditionalVAE(task.input_shape, task.num_classes, int(config["latent"]), int(config["hidden"]),
                           config["decoder"]).to(ctx.device)
    x, y, beta = task.train.x, task.train.y, float(config["beta"])
    log_prior = log_class_prior(y, task.num_classes)

    def val_accuracy() -> float:  # one paired ELBO sample per class: cheap enough for every epoch
        log_lik = _vae_log_weights(model, task.val.x, 1, ctx.seed)[0]
        return (class_posterior(log_lik, log_prior).argmax(1) == task.val.y).float().mean().item()

    train(model, lambda idx, progress: model.loss(x[idx], y[idx], beta), len(x),
          TrainConfig.from_config(config, ctx), ctx, val_fn=val_accuracy)
    model.eval()
    labels = _sample_labels(task.num_classes, ctx.device)
    _report_samples(model.sample(labels, ctx.generator(7)), labels, task, ctx)
    return VAEFit(model, log_prior, int(config["iw_samples"]))


def _evaluate_vae(fitted: VAEFit, split: Split, ctx: FitContext) -> torch.Tensor:
    log_w = _vae_log_weights(fitted.model, split.x, fitted.iw_samples, ctx.seed)
    log_lik = _logmeanexp(log_w)
    if ctx.phase == "final":
        ctx.extras["nelbo_nats"] = -log_marginal(log_w.mean(0), fitted.log_prior).mean().item()
        ctx.extras["niw_nats"] = -log_marginal(log_lik, fitted.log_prior).mean().item()
    return class_posterior(log_lik, fitted.log_prior)


# --------------------------------------------------------------------------- diffusion

@dataclass
class DiffusionFit:
    model: ConditionalUNet
    schedule: NoiseSchedule
    log_prior: torch.Tensor
    temperature: float
    config: dict[str, Any]


def _classifier_timesteps(config: dict[str, Any], schedule: NoiseSchedule, device: torch.device) -> torch.Tensor:
    """``mc_evals`` timesteps evenly spaced over ``[t_lo·T, t_hi·T]`` (midpoints of equal strata)."""
    lo, hi, n = float(config["t_lo"]), float(config["t_hi"]), int(config["mc_evals"])
    if not 0.0 <= lo < hi <= 1.0 or n < 1:
        raise ConfigError(f"diffusion needs 0 ≤ t_lo < t_hi ≤ 1 and mc_evals ≥ 1, got {lo}, {hi}, {n}")
    pos = lo + (hi - lo) * (torch.arange(n, device=device, dtype=torch.float64) + 0.5) / n
    return (pos * schedule.steps).ceil().long().clamp(1, schedule.steps)


@torch.no_grad()
def _denoising_errors(fit: DiffusionFit, x: torch.Tensor, ctx: FitContext) -> torch.Tensor:
    """``N × K`` mean squared ε-prediction error per class over the fixed timesteps; each example's noise
    is drawn once per timestep and shared by all classes (a paired comparison)."""
    model, k = fit.model.eval(), fit.log_prior.shape[0]
    steps = _classifier_timesteps(fit.config, fit.schedule, x.device)
    gen = ctx.generator(11)
    x0 = quantise(x)

    def score(xb: torch.Tensor, yb: torch.Tensor, draw: int) -> torch.Tensor:
        noise = expand_classes(torch.randn(xb.shape[0] // k, *xb.shape[1:], generator=gen, device=xb.device), k)
        t = steps[draw].expand(xb.shape[0])
        return (model(fit.schedule.q_sample(xb, t, noise), t, yb) - noise).pow(2).flatten(1).mean(1)

    return mc_class_scores(score, x0, k, len(steps), batch_size=64).mean(0)


@torch.no_grad()
def _negative_elbo(fit: DiffusionFit, x: torch.Tensor, y: torch.Tensor, ctx: FitContext, batch_size: int = 256) -> torch.Tensor:
    """An unbiased estimate of −ELBO(x, y) = L_T + Σ_{t=2..T} L_{t−1} + L_0 per example, in nats."""
    model, sched = fit.model.eval(), fit.schedule
    n_t, big_t = int(fit.config["bpd_evals"]), sched.steps
    gen = ctx.generator(13)
    out = []
    for i in range(0, x.shape[0], batch_size):
        x0, yb = quantise(x[i:i + batch_size]), y[i:i + batch_size]
        b = x0.shape[0]
        total = sched.prior_kl(x0)
        ones = torch.ones(b, dtype=torch.long, device=x.device)
        noise = torch.randn(x0.shape, generator=gen, device=x.device)
        x1 = sched.q_sample(x0, ones, noise)
        total = total + sched.decoder_nll(x0, sched.predict_x0(x1, ones, model(x1, ones, yb)).clamp(-1, 1))
        kl_sum = torch.zeros(b, device=x.device)
        for t in stratified_timesteps(n_t, 2, big_t, b, gen, x.device):
            noise = torch.randn(x0.shape, generator=gen, device=x.device)
            x_t = sched.q_sample(x0, t, noise)
            x0_hat = sched.predict_x0(x_t, t, model(x_t, t, yb)).clamp(-1, 1)
            kl_sum += sched.kl_weight(t) * (x0 - x0_hat).pow(2).flatten(1).sum(1)
        out.append(total + kl_sum * (big_t - 1) / n_t)
    return torch.cat(out)


def _diffusion_model(task: Task, config: dict[str, Any]) -> ConditionalUNet:
    channels, height, width = task.input_shape
    if height != width:
        raise ConfigError(f"diffusion needs square images, got {height}×{width}")
    return ConditionalUNet(channels, height, task.num_classes, int(config["width"]), patch=int(config["patch"]))


def _fit_diffusion(task: Task, config: dict[str, Any], ctx: FitContext) -> DiffusionFit:
    model = _diffusion_model(task, config).to(ctx.device)
    schedule = NoiseSchedule.make(config["noise_schedule"], int(config["timesteps"]), ctx.device)
    x, y = quantise(task.train.x), task.train.y
    train_keys = {k: v for k, v in sorted(config.items()) if k not in _EVAL_ONLY}
    key = fingerprint("diffusion/1", train_keys, ctx.epochs, ctx.seed, task.input_shape, task.train.x, y)
    cached = cache_load(ctx.cache_dir, key)
    if cached is not None:
        model.load_state_dict(cached["model"])
        ctx.track(model)
        samples = cached["samples"].to(ctx.device)
    else:
        ema = EMA(model, float(config["ema_decay"]))
        gen = ctx.generator(5)

        def step(idx: torch.Tensor, progress: float) -> torch.Tensor:
            t = torch.randint(1, schedule.steps + 1, (idx.numel(),), generator=gen, device=ctx.device)
            noise = torch.randn(x[idx].shape, generator=gen, device=ctx.device)
            return F.mse_loss(model(schedule.q_sample(x[idx], t, noise), t, y[idx]), noise)

        train(model, step, len(x), TrainConfig.from_config(config, ctx), ctx, ema=ema)
        model.load_state_dict(ema.model.state_dict())
        model.eval()
        labels = _sample_labels(task.num_classes, ctx.device)
        samples = (ddpm_sample(model, schedule, labels, task.input_shape, int(config["sample_steps"]),
                               ctx.generator(7)) + 1) / 2
        cache_store(ctx.cache_dir, key, {"model": {k: v.cpu() for k, v in model.state_dict().items()},
                                         "samples": samples.cpu()})
    if ctx.phase == "final":
        ctx.extras["train_cached"] = float(cached is not None)
    _report_samples(samples, _sample_labels(task.num_classes, ctx.device), task, ctx)
    fit = DiffusionFit(model.eval(), schedule, log_class_prior(y, task.num_classes), 1.0, dict(config))
    n_cal = min(len(task.val), int(config["calib_images"]))
    errors = _denoising_errors(fit, task.val.x[:n_cal], ctx)
    fit.temperature = fit_temperature(-errors, task.val.y[:n_cal], fit.log_prior)
    return fit


def _evaluate_diffusion(fit: DiffusionFit, split: Split, ctx: FitContext) -> torch.Tensor:
    probs = class_posterior(-_denoising_errors(fit, split.x, ctx), fit.log_prior, fit.temperature)
    if ctx.phase == "final":
        predicted = probs.argmax(1)
        nats = _negative_elbo(fit, split.x, predicted, ctx) - fit.log_prior.to(predicted.device)[predicted]
        ctx.extras["bpd"] = bits_per_dim(nats, math.prod(split.x.shape[1:])).mean().item()
    return probs


def fit(method: str, task: Task, config: dict[str, Any], ctx: FitContext):
    if task.kind != "image":
        raise ConfigError(f"{method} models images; {task.name} is a {task.kind} task")
    return _fit_vae(task, config, ctx) if method == "vae" else _fit_diffusion(task, config, ctx)


def evaluate(method: str, fitted, split: Split, ctx: FitContext) -> torch.Tensor:
    if method == "vae":
        return _evaluate_vae(fitted, split, ctx)
    return _evaluate_diffusion(fitted, split, ctx)


__all__ = ["ConditionalVAE", "ConditionedMLP", "VAEFit", "DiffusionFit"]
