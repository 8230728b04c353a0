import numpy as np
import pandas as pd
import pytest
import torch

from harness.data import label_budget, load_task, stratified_split
from harness.errors import ConfigError, DataError


def test_digits_task_shapes_and_disjoint_stratified_splits(digits):
    assert digits.kind == "image" and digits.input_shape == (1, 8, 8) and digits.num_classes == 10
    idx = [set(s.index.tolist()) for s in (digits.train, digits.val, digits.test)]
    assert not (idx[0] & idx[1] or idx[0] & idx[2] or idx[1] & idx[2])
    assert sum(map(len, idx)) == 1797
    for split in (digits.train, digits.val, digits.test):
        share = torch.bincount(split.y, minlength=10).double() / len(split)
        assert (share - 0.1).abs().max() < 0.02  # stratified
    assert 0.0 <= digits.train.x.min() and digits.train.x.max() <= 1.0


def test_splits_fixed_by_data_seed():
    y = torch.arange(300) % 3
    a, b, c = stratified_split(y, 0.2, 0.2, 0), stratified_split(y, 0.2, 0.2, 0), stratified_split(y, 0.2, 0.2, 1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["test"], c["test"])


def test_tabular_standardised_with_train_statistics_only(iris):
    assert iris.kind == "tabular"
    assert torch.allclose(iris.train.x.mean(0), torch.zeros(4), atol=1e-5)
    assert not torch.allclose(iris.test.x.mean(0), torch.zeros(4), atol=1e-3)


def test_mnist5k_vendored(registry):
    task = load_task(registry, "mnist5k")
    assert task.input_shape == (1, 28, 28) and task.num_classes == 10
    assert (len(task.train), len(task.val), len(task.test)) == (3000, 1000, 1000)


def test_label_budget_keeps_k_per_class_and_hides_the_rest(registry):
    task = load_task(registry, "digits", labels_per_class=5)
    assert torch.bincount(task.train.y).tolist() == [5] * 10
    assert task.unlabeled.y is None and len(task.unlabeled) == 1077 - 50
    again = load_task(registry, "digits", labels_per_class=5)
    assert torch.equal(task.train.index, again.train.index)


@pytest.mark.parametrize("k", [0, -1, 10_000])
def test_label_budget_out_of_range_is_an_error(k):
    with pytest.raises(ConfigError):
        label_budget(torch.arange(100) % 10, k, None, 0)


def test_csv_with_target(tmp_path, registry):
    frame = pd.DataFrame({"a": np.arange(60.0), "colour": ["red", "blue", "green"] * 20, "label": ["x", "y"] * 30})
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    task = load_task(registry, f"csv:{path}", options={"target": "label"})
    assert task.kind == "tabular" and task.num_classes == 2 and task.input_shape == (4,)
    with pytest.raises(DataError, match="no column 'missing'"):
        load_task(registry, f"csv:{path}", options={"target": "missing"})


def test_unknown_dataset_is_a_config_error(registry):
    with pytest.raises(ConfigError, match="unknown data set"):
        load_task(registry, "no_such_data")


def test_torchvision_by_name_with_fakedata(registry, tmp_path):
    task = load_task(registry, "tv:FakeData", options={"size": 120, "image_size": [3, 12, 12], "num_classes": 3},
                     root=str(tmp_path))
    assert task.input_shape == (3, 12, 12) and task.num_classes == 3
    assert len(task.train) + len(task.val) + len(task.test) == 120


def test_torchvision_download_failure_is_one_line(registry, tmp_path):
    with pytest.raises(DataError, match="cannot load torchvision MNIST"):
        load_task(registry, "tv:MNIST", options={"download": False}, root=str(tmp_path))
