"""Returns scores whose rows do not sum to one (a softmax forgotten)."""
from fixture_plugins import _base

harness_methods, harness_search_space, harness_fit, harness_evaluate = _base.broken_hooks(
    "unnormalised", "rows that do not sum to one", lambda p, split: p * 2)
