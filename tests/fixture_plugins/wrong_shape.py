"""Returns one probability column too many."""
import torch

from fixture_plugins import _base

harness_methods, harness_search_space, harness_fit, harness_evaluate = _base.broken_hooks(
    "wrong_shape", "one column too many", lambda p, split: torch.cat([p, torch.zeros(len(split), 1)], 1))
