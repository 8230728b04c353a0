"""A suite's data-set entry with a list of label budgets: one data set per training size."""
import pytest

from harness.errors import ConfigError
from harness.suite import from_mapping


def _suite(labels_per_class, **extra):
    return from_mapping({"datasets": [{"name": "digits", "labels_per_class": labels_per_class, **extra}],
                         "methods": ["erm"]})


def test_a_list_of_sizes_is_one_data_set_per_size():
    suite = _suite([10, 50, "all"])
    assert [d.label for d in suite.datasets] == ["digits@10pc", "digits@50pc", "digits"]
    assert [d.labels_per_class for d in suite.datasets] == [10, 50, None]
    assert {r for _, r in suite.pairs()} == {"erm"} and len(suite.pairs()) == 3


@pytest.mark.parametrize("sizes, message", [
    ([], "positive integer"), ([0, 10], "got 0"), (["most"], "got 'most'"), ([10, 10], "twice"),
])
def test_bad_sizes_are_one_line_errors(sizes, message):
    with pytest.raises(ConfigError, match=message) as err:
        _suite(sizes)
    assert "\n" not in str(err.value)


def test_a_size_listed_beside_the_sweep_is_listed_twice():
    with pytest.raises(ConfigError, match="listed twice"):
        from_mapping({"datasets": ["digits", {"name": "digits", "labels_per_class": [10, "all"]}], "methods": ["erm"]})
