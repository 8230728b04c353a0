"""Data sets, splits and label budgets. :func:`load_task` turns a data-set name into a :class:`Task`."""
from harness.data.splits import label_budget, stratified_split
from harness.data.tasks import load_task

__all__ = ["load_task", "stratified_split", "label_budget"]
