"""Former home of batched augmentation, now :mod:`harness.toolkit.augment`;
importing from here still works, with a :class:`DeprecationWarning`."""
from harness._moved import forward

__getattr__, __dir__, __all__ = forward(__name__, "harness.toolkit.augment")
