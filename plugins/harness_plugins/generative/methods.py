"""Generative classifiers: a class-conditional VAE and a class-conditional DDPM.

Both model p(x|y) and classify by Bayes' rule, p(y|x) ∝ p(x|y)·p(y) with p(y) the training label
frequencies. Every class of an example is scored with the same Monte-Carlo draws (common random
numbers, :func:`harness_plugins.generative.likelihood.mc_class_scores`), so the class comparison is paired.

* ``vae``: encoder q(z|x,y) (reparameterised Gaussian) and decoder p(x|z,y) (Bernoulli over grey
  levels, or Gaussian with learned per-pixel variance), MLPs with the class one-hot appended to the
  input of every layer; trained on the β-weighted ELBO (Kingma & Welling, 2014; Sohn et al., 2015).
  Samples draw z from the prior N(0, I). Whether they show their class hinges on z carrying no class
  information: with the label only at each network's input and β = 1 (the Gaussian decoder's learned σ
  outweighs the KL term) z encoded the digit and about a third of the samples showed another class;
  the label at every layer alone left 30 % wrong, with β = 2 about 10 % (``sample_class_acc`` on
  MNIST-5k after 30 epochs). log p(x|y) is the importance-weighted
  bound with ``iw_samples`` = k samples (Burda et al., 2016; k = 1 is the ELBO), and the returned
  probabilities are exactly the normalised posteriors. Generative columns on test (labels hidden, so
  the bound is on log p(x) = logsumexp_y[log p(x|y) + log p(y)], in nats per image):
  ``nelbo_nats`` (each log p(x|y) bounded by its ELBO) and ``niw_nats`` (by the k-sample bound). With the
  Bernoulli decoder the grey levels are scored as Bernoulli targets, the usual MNIST practice; the
  Gaussian decoder (the default, more accurate as a classifier) is a density on [0, 1]-valued pixels,
  so its nats can be negative. Either way they compare VAEs with the same decoder, not model families.
* ``diffusion``: a DDPM (Ho et al., 2020) with a small class-conditional U-Net predicting ε, linear or
  cosine schedule with T steps, trained on the simple denoising loss with an EMA of the weights. It
  classifies as a diffusion classifier (Li et al., 2023; Clark & Jaini, 2023): the per-class ε-prediction
  error averaged over ``mc_evals`` (timestep, noise) pairs, the timesteps evenly spaced over the
  informative middle range ``[t_lo·T, t_hi·T]`` and each example's noise shared across its classes, then
  softmax(−error/τ). The temperature τ is fitted on the validation split (the denoising errors are not
  calibrated log-likelihoods; τ changes no prediction). What makes a briefly trained model classify
  well: the paired noise (class differences carry almost no Monte-Carlo noise) and skipping the
  uninformative ends of the schedule (nearly clean and nearly pure-noise inputs look alike to every
  class); the U-Net folds 2×2 patches into channels so that it runs at 14×14 on MNIST. Generative column on test: ``bpd``, bits per
  dimension of the variational bound on −log p(x) for 8-bit data, ≤ −log p(x, ŷ) for the predicted class
  ŷ (at most log K nats looser than summing the classes); the T − 1 KL terms are estimated with
  ``bpd_evals`` stratified timesteps, the prior and decoder terms exactly. The trained model (and its
  sample grid) is cached under ``ctx.cache_dir`` by configuration, data and seed, excluding the
  evaluation-only keys, so rows that differ only in ``mc_evals`` train once; those rows show
  ``extra_train_cached`` = 1 and no train throughput.

In the final phase both write ``samples.png`` to ``ctx.artifact_dir`` (one row of samples per class)
and report ``sample_class_acc``: the share of those samples that a small CNN trained on the real
training images (:func:`harness_plugins.generative.likelihood.fit_sample_judge`, the same one for every row of a data set)
assigns to the class they were generated for; about 1/K when a model ignores its condition.

The hooks in this module describe the methods and sample their spaces without importing torch; the models
and their training are in :mod:`harness_plugins.generative.training`, imported with the first fit.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness import hookimpl
from harness.hookspecs import lazy_hooks
from harness.info import MethodInfo

if TYPE_CHECKING:
    from harness.task import Task

VAE_DEFAULTS = {"latent": 8, "hidden": 512, "beta": 2.0, "decoder": "gaussian", "iw_samples": 16,
                "optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-6, "batch_size": 64}
DIFFUSION_DEFAULTS = {"width": 24, "patch": 2, "noise_schedule": "cosine", "timesteps": 1000, "optimizer": "adam",
                      "lr": 2e-3, "weight_decay": 0.0, "batch_size": 64, "ema_decay": 0.995, "mc_evals": 16,
                      "t_lo": 0.2, "t_hi": 0.7, "bpd_evals": 10, "sample_steps": 100, "calib_images": 200}


@hookimpl
def harness_methods() -> list[MethodInfo]:
    return [
        MethodInfo("vae", ("image",), "class-conditional VAE as a generative classifier (importance-weighted bound)",
                   "Kingma & Welling, Auto-Encoding Variational Bayes, ICLR 2014; Burda et al., Importance "
                   "Weighted Autoencoders, ICLR 2016", defaults=VAE_DEFAULTS),
        MethodInfo("diffusion", ("image",), "class-conditional DDPM as a diffusion classifier (paired MC denoising error)",
                   "Ho et al., Denoising Diffusion Probabilistic Models, NeurIPS 2020; Li et al., Your Diffusion "
                   "Model is Secretly a Zero-Shot Classifier, ICCV 2023", defaults=DIFFUSION_DEFAULTS),
    ]



@hookimpl
def harness_search_space(method: str, trial, task: Task) -> dict[str, Any]:
    from harness_plugins.generative.likelihood import SCHEDULES  # torch: sampling happens with a task at hand

    if method == "vae":
        return {
            "latent": trial.suggest_categorical("latent", [8, 16, 32]),
            "hidden": trial.suggest_categorical("hidden", [256, 512]),
            "beta": trial.suggest_float("beta", 1.5, 3.0),  # below, z took over the class
            "decoder": trial.suggest_categorical("decoder", ["bernoulli", "gaussian"]),
            "iw_samples": trial.suggest_categorical("iw_samples", [1, 16]),
            "optimizer": trial.suggest_categorical("optimizer", ["adam", "adamw"]),
            "lr": trial.suggest_float("lr", 3e-4, 3e-3, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-7, 1e-4, log=True),
            "batch_size": trial.suggest_categorical("batch_size", [64, 128]),
        }
    return {
        "width": trial.suggest_categorical("width", [24, 32, 48]),
        "patch": trial.suggest_categorical("patch", [1, 2]),
        "noise_schedule": trial.suggest_categorical("noise_schedule", list(SCHEDULES)),
        "timesteps": trial.suggest_categorical("timesteps", [200, 500, 1000]),
        "optimizer": trial.suggest_categorical("optimizer", ["adam", "adamw"]),
        "lr": trial.suggest_float("lr", 5e-4, 4e-3, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 0.0, 1e-4),
        "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128]),
        "ema_decay": trial.suggest_categorical("ema_decay", [0.99, 0.995, 0.999]),
        "mc_evals": trial.suggest_int("mc_evals", 4, 32, log=True),
        "t_lo": trial.suggest_float("t_lo", 0.0, 0.3),
        "t_hi": trial.suggest_float("t_hi", 0.4, 1.0),
        "bpd_evals": trial.suggest_categorical("bpd_evals", [10]),
        "sample_steps": trial.suggest_categorical("sample_steps", [100]),
        "calib_images": trial.suggest_categorical("calib_images", [200]),
    }


# torch loads with the first fit, not with the listing
harness_fit, harness_evaluate = lazy_hooks("harness_plugins.generative.training")
