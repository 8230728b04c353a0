"""Generative classifiers (VAE, DDPM) with their likelihood scoring, noise schedules and U-Net."""
