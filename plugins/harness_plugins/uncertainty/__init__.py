"""MC dropout and deep ensembles, with the ensemble trainer only they use."""
