"""Self-supervised pre-training (SimCLR, BYOL) evaluated by a linear probe."""
