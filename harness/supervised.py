"""Former home of the supervised recipe, now :mod:`harness.toolkit.recipes`;
importing from here still works, with a :class:`DeprecationWarning`."""
from harness._moved import forward

__getattr__, __dir__, __all__ = forward(__name__, "harness.toolkit.recipes")
