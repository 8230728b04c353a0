"""Supervised training (ERM, mixup, label smoothing); the recipe itself is shared, in :mod:`harness.toolkit.recipes`."""
