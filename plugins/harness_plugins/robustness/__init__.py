"""Adversarial training: FGSM with a random start, PGD and TRADES."""
