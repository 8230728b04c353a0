"""The generative classifiers (VAE, DDPM) and their shared core: they learn, sample and score."""
import math

import pytest
import torch

from harness.context import FitContext, seed_everything
from harness.metrics import accuracy
from harness_plugins.generative.likelihood import (
    NoiseSchedule, class_posterior, ddpm_sample, expand_classes, fit_sample_judge, fit_temperature, image_grid,
    log_class_prior, log_marginal, mc_class_scores, quantise, sample_class_agreement, save_grid,
    stratified_timesteps,
)
from harness_plugins.generative.unet import ConditionalUNet

CPU = torch.device("cpu")
TINY_DIFFUSION = {"width": 16, "patch": 1, "noise_schedule": "linear", "timesteps": 100, "batch_size": 64,
                  "lr": 3e-3, "ema_decay": 0.99, "mc_evals": 4, "bpd_evals": 4, "sample_steps": 20,
                  "calib_images": 60}


# ----------------------------------------------------------------------------- core

@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_noise_schedules(kind):
    s = NoiseSchedule.make(kind, 200)
    ab = s.alpha_bar
    assert s.steps == 200 and (ab[1:] < ab[:-1]).all() and 0 < ab[-1] < 0.05 and ab[0] > 0.99
    x0 = torch.rand(4, 1, 8, 8) * 2 - 1
    t = torch.tensor([1, 50, 100, 200])
    noise = torch.randn_like(x0)
    xt = s.q_sample(x0, t, noise)
    assert xt.shape == x0.shape
    assert torch.allclose(xt[3], ab[-1].float().sqrt() * x0[3] + (1 - ab[-1].float()).sqrt() * noise[3], atol=1e-6)
    assert (s.kl_weight(torch.arange(2, 201)) > 0).all()
    assert (s.prior_kl(x0) >= 0).all()


def test_decoder_nll_is_a_probability_of_the_quantised_pixel():
    s = NoiseSchedule.make("linear", 1000)
    x0 = quantise(torch.rand(3, 1, 4, 4))
    exact = s.decoder_nll(x0, x0)  # the mean on the pixel
    assert torch.isfinite(exact).all() and (exact >= 0).all()
    assert (exact / 16 < math.log(256)).all()  # far better than a uniform guess over 256 levels
    wrong = s.decoder_nll(x0, (x0 + 0.1).clamp(-1, 1))
    assert (wrong > exact).all()


def test_quantise_and_stratified_timesteps():
    q = quantise(torch.tensor([0.0, 1.0, 0.5]))
    assert q[0] == -1 and q[1] == 1 and q.abs().max() <= 1
    t = stratified_timesteps(5, 2, 101, 7, torch.Generator().manual_seed(0), CPU)
    assert t.shape == (5, 7) and t.min() >= 2 and t.max() <= 101
    assert (t[1:] >= t[:-1]).all()  # draw j lies in stratum j


def test_mc_class_scores_pairs_the_draws_across_classes():
    x = torch.arange(6.0).view(6, 1)
    seen = []

    def score(xb, yb, draw):
        noise = expand_classes(torch.randn(xb.shape[0] // 3, 1), 3)
        seen.append(noise.view(-1, 3))
        return xb[:, 0] + noise[:, 0] + 10 * yb + draw

    out = mc_class_scores(score, x, 3, draws=2, batch_size=4)
    assert out.shape == (2, 6, 3)
    for noise in seen:  # every class of an example got the same draw
        assert torch.equal(noise, noise[:, :1].expand_as(noise))
    diffs = out[..., 1] - out[..., 0]  # so class differences carry no Monte-Carlo noise
    assert torch.allclose(diffs, torch.full_like(diffs, 10.0))


def test_bayes_rule_and_temperature():
    log_lik = torch.tensor([[0.0, math.log(3.0)], [math.log(2.0), 0.0]])
    prior = log_class_prior(torch.tensor([0, 0, 0, 1, 1, 1]), 2)
    post = class_posterior(log_lik, prior)
    assert torch.allclose(post.sum(1), torch.ones(2))
    assert torch.allclose(post[0], torch.tensor([0.25, 0.75]))
    assert torch.allclose(log_marginal(log_lik, prior), torch.log(torch.tensor([2.0, 1.5])))
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4000, 5, generator=g) * 3
    y = torch.distributions.Categorical(logits=logits).sample()
    assert fit_temperature(logits * 4, y, torch.zeros(5)) == pytest.approx(4.0, rel=0.15)


def test_image_grid_and_png(tmp_path):
    imgs = torch.rand(7, 1, 8, 8)
    grid = image_grid(imgs, nrow=3, pad=2)
    assert grid.shape == (1, 3 * 10 + 2, 3 * 10 + 2)
    path = save_grid(imgs, tmp_path / "sub" / "g.png", nrow=3, scale=2)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unet_shapes_and_ddpm_sampler():
    for size, patch in ((8, 1), (28, 2)):
        net = ConditionalUNet(1, size, 10, width=8, mults=(1, 2, 2), patch=patch)
        x = torch.randn(3, 1, size, size)
        assert net(x, torch.tensor([1, 5, 9]), torch.tensor([0, 4, 9])).shape == x.shape
    net = ConditionalUNet(1, 8, 10, width=8)
    y = torch.arange(4)
    out = ddpm_sample(net, NoiseSchedule.make("cosine", 50), y, (1, 8, 8), steps=10, generator=torch.Generator().manual_seed(0))
    assert out.shape == (4, 1, 8, 8) and out.min() >= -1 and out.max() <= 1


class _StripeModel(torch.nn.Module):
    """A tiny conditional generator of 8×8 images: class k is a bright k-th row over noise. With
    ``follows=False`` it draws the row at random, ignoring the class it is asked for."""

    def __init__(self, follows: bool):
        super().__init__()
        self.follows = follows

    def forward(self, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        rows = y if self.follows else torch.randint(0, 8, y.shape, generator=generator)
        images = 0.3 * torch.rand(len(y), 1, 8, 8, generator=generator)
        images[torch.arange(len(y)), 0, rows] += 0.7
        return images


def test_sample_class_agreement_tells_a_model_that_follows_its_condition_from_one_that_ignores_it(tmp_path):
    g = torch.Generator().manual_seed(0)
    train_y = torch.arange(8).repeat(40)
    real = _StripeModel(follows=True)(train_y, g)
    judge = fit_sample_judge(real, train_y, 8, epochs=10, cache_dir=tmp_path)
    asked = torch.arange(8).repeat_interleave(50)
    follows = sample_class_agreement(judge, _StripeModel(follows=True)(asked, g), asked)
    ignores = sample_class_agreement(judge, _StripeModel(follows=False)(asked, g), asked)
    assert follows > 0.95
    assert abs(ignores - 1 / 8) < 0.08  # chance: 400 samples put its standard error near 0.017
    # The judge is cached by its training data: a second call loads the same weights.
    again = fit_sample_judge(real, train_y, 8, epochs=10, cache_dir=tmp_path)
    for a, b in zip(judge.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


# ----------------------------------------------------------------------------- methods

def _vae_negative_elbo(fitted, task):
    from harness_plugins.generative.training import _vae_log_weights

    return -_vae_log_weights(fitted.model, task.val.x, 1, 0)[0].gather(1, task.val.y[:, None]).mean().item()


def test_vae_elbo_improves_and_it_classifies_digits(registry, digits, tmp_path):
    m = registry.method("vae")
    config = {**m.info.defaults, "hidden": 256, "iw_samples": 8}
    seed_everything(0)
    untrained = m.fit(digits.without_test(), config, FitContext(device=CPU, seed=0, epochs=1))
    ctx = FitContext(device=CPU, seed=0, epochs=12, phase="final", artifact_dir=tmp_path / "art",
                     cache_dir=tmp_path / "cache")
    seed_everything(0)
    fitted = m.fit(digits.without_test(), config, ctx)
    assert _vae_negative_elbo(fitted, digits) < _vae_negative_elbo(untrained, digits) - 5
    probs = m.evaluate(fitted, digits.test.without_labels(), ctx)
    assert probs.shape == (len(digits.test), 10)
    assert (probs.sum(1) - 1).abs().max() < 1e-5
    assert accuracy(probs, digits.test.y) > 0.8
    # The k-sample bound is at least as tight as the ELBO (both are bounds on −log p(x)).
    assert math.isfinite(ctx.extras["nelbo_nats"]) and ctx.extras["niw_nats"] <= ctx.extras["nelbo_nats"] + 1e-3
    assert (tmp_path / "art" / "samples.png").is_file()
    assert ctx.extras["sample_class_acc"] > 0.5  # chance is 0.1: the samples follow their class
    samples = fitted.model.sample(torch.arange(10).repeat(2))
    assert samples.shape == (20, 1, 8, 8) and samples.min() >= 0 and samples.max() <= 1
    assert ctx.samples_seen == 12 * len(digits.train)


def test_vae_no_extras_while_tuning(registry, digits):
    m = registry.method("vae")
    ctx = FitContext(device=CPU, seed=1, epochs=1)
    fitted = m.fit(digits.without_test(), {**m.info.defaults, "hidden": 64}, ctx)
    probs = m.evaluate(fitted, digits.val.without_labels(), ctx)
    assert (probs.sum(1) - 1).abs().max() < 1e-5 and not ctx.extras


def test_diffusion_classifier_learns_caches_and_reports_bpd(registry, digits, tmp_path):
    m = registry.method("diffusion")
    config = {**m.info.defaults, **TINY_DIFFUSION}
    ctx = FitContext(device=CPU, seed=0, epochs=6, phase="final", artifact_dir=tmp_path / "a", cache_dir=tmp_path / "c")
    seed_everything(0)
    fitted = m.fit(digits.without_test(), config, ctx)
    probs = m.evaluate(fitted, digits.test.without_labels(), ctx)
    assert probs.shape == (len(digits.test), 10)
    assert (probs.sum(1) - 1).abs().max() < 1e-5
    assert accuracy(probs, digits.test.y) > 0.3  # chance is 0.1; a few CPU seconds of training
    assert ctx.extras["train_cached"] == 0.0 and 0 < ctx.extras["bpd"] < 20
    assert 0.0 <= ctx.extras["sample_class_acc"] <= 1.0
    assert (tmp_path / "a" / "samples.png").is_file() and ctx.samples_seen > 0
    # A second row that only changes the Monte-Carlo budget reuses the trained model.
    ctx2 = FitContext(device=CPU, seed=0, epochs=6, phase="final", artifact_dir=tmp_path / "b", cache_dir=tmp_path / "c")
    again = m.fit(digits.without_test(), {**config, "mc_evals": 2}, ctx2)
    assert ctx2.extras["train_cached"] == 1.0 and ctx2.samples_seen == 0
    for a, b in zip(fitted.model.state_dict().values(), again.model.state_dict().values()):
        assert torch.equal(a, b)
    assert (tmp_path / "b" / "samples.png").is_file()


def test_search_spaces_are_covered_by_defaults(registry, digits):
    import optuna

    for name in ("vae", "diffusion"):
        m = registry.method(name)
        m.search_space(optuna.trial.FixedTrial(m.info.defaults), digits.without_test())
