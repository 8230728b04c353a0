"""Semi-supervised methods and the consistency pieces only they use (paired batches, VAT, temporal ensembles)."""
