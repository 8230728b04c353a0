"""Multi-task learning: a shared trunk with equal weights, uncertainty weighting, PCGrad; single-task networks."""
