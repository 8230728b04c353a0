"""Self-supervised pre-training (SimCLR, BYOL, SimSiam, MoCo, MAE) evaluated by a linear probe or fine-tuning."""
