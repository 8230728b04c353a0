"""Forwarding for import paths whose code moved, so plugins written against them keep working."""
from __future__ import annotations

import importlib
import types
import warnings
from typing import Any, Callable


def forward(old: str, new: str) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``__getattr__``, ``__dir__`` and ``__all__`` for module ``old`` that resolve every public name
    of module ``new`` to the same object, with a :class:`DeprecationWarning` naming ``new``."""
    target = importlib.import_module(new)
    public = sorted(
        name for name, value in vars(target).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
        and getattr(value, "__module__", new).startswith("harness")  # skip re-exported torch/typing names
    )

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):  # import machinery probing dunders such as __path__
            raise AttributeError(name)
        try:
            value = getattr(target, name)
        except AttributeError:
            raise AttributeError(f"module {old!r} has no attribute {name!r}") from None
        warnings.warn(f"{old}.{name} moved to {new}.{name}; import it from there", DeprecationWarning,
                      stacklevel=2)
        return value

    def __dir__() -> list[str]:
        return public

    return __getattr__, __dir__, public
