"""What every non-classification task object shares: it describes itself through a template
:class:`~harness.task.Task` (modality, classes, input shape), so a search space and
``MethodInfo.defaults`` read it like a plain task, while its data reach a method only through the
protocol of its kind."""
from __future__ import annotations

from typing import Any

from harness.task import Task


class KindTask:
    """Attributes a search space reads, taken from ``self.template`` (a Task without its test split)."""

    task_kind = "classification"
    template: Task

    @property
    def name(self) -> str:
        return self.template.name

    @property
    def kind(self) -> str:
        return self.template.kind

    @property
    def num_classes(self) -> int:
        return self.template.num_classes

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.template.input_shape

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.template.class_names

    @property
    def meta(self) -> dict[str, Any]:
        return self.template.meta

    @property
    def device(self):
        return self.template.device


def positive_int(value: Any, what: str) -> int:
    from harness.errors import ConfigError

    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}")
    return value


def class_list(value: Any, what: str) -> tuple[int, ...]:
    from harness.errors import ConfigError

    if not isinstance(value, (list, tuple)) or not value or not all(
            isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in value):
        raise ConfigError(f"{what} must be a list of class indices, got {value!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{what} lists a class twice: {list(value)}")
    return tuple(value)
