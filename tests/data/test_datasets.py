"""Real data sets: scikit-learn's digits, and MNIST / Fashion-MNIST / CIFAR-10 files that the
tests write themselves."""
import gzip
import sys

import numpy as np
import pytest

import phalanx as px
from phalanx.data import DataLoader
from phalanx.data.datasets import (CIFAR10, DigitsDataset, FashionMNIST, MNIST, load_digits,
                                   read_idx)


def test_digits_split_is_deterministic_stratified_and_disjoint():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    bunch = sklearn_datasets.load_digits()
    train, test = load_digits()
    assert len(train) + len(test) == len(bunch.target) == 1797
    assert abs(len(test) - 0.2 * 1797) < 10
    img, label = train[0]
    assert img.shape == (1, 8, 8) and img.dtype == px.float32 and isinstance(label, int)
    assert 0 <= img.min().item() and img.max().item() <= 1
    # disjoint and covering: every original image appears exactly once
    ours = np.concatenate([train.data.numpy(), test.data.numpy()]).reshape(1797, -1)
    key = lambda rows: sorted(map(bytes, rows.astype(np.float32)))  # noqa: E731
    assert key(ours) == key(bunch.images.reshape(1797, -1))
    assert np.array_equal(DigitsDataset(train=False).targets.numpy(), test.targets.numpy())
    assert not np.array_equal(DigitsDataset(False, seed=1).targets.numpy(),
                              test.targets.numpy())
    counts = np.bincount(test.targets.numpy(), minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38  # ~20% of each class (~180 per class)
    x, y = next(iter(DataLoader(train, batch_size=16)))
    assert x.shape == (16, 1, 8, 8) and y.dtype == px.int64


def test_digits_without_sklearn_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"pip install 'phalanx\[examples\]'"):
        DigitsDataset()


def _write_idx(path, arr, compress):
    codes = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D,
             np.float64: 0x0E}
    header = bytes([0, 0, codes[arr.dtype.type], arr.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(data)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32,
                                   np.float64])
def test_read_idx_round_trips(tmp_path, dtype):
    arr = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    if dtype is np.uint8:
        arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a.idx", arr, compress=False)
    out = read_idx(tmp_path / "a.idx")
    assert out.dtype == dtype and np.array_equal(out, arr)


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x12\x34\x08\x01\x00\x00\x00\x01\x00")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    _write_idx(tmp_path / "short", np.zeros((4, 2), np.uint8), compress=False)
    data = (tmp_path / "short").read_bytes()
    (tmp_path / "short").write_bytes(data[:-1])
    with pytest.raises(ValueError, match=r"should have 20 bytes, but has 19"):
        read_idx(tmp_path / "short")


@pytest.mark.parametrize("cls, layout, compress", [(MNIST, "", True), (MNIST, "MNIST/raw", False),
                                                   (FashionMNIST, "FashionMNIST/raw", True)])
def test_mnist_readers(tmp_path, cls, layout, compress):
    folder = tmp_path / layout
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    sets = {}
    for prefix, n in (("train", 5), ("t10k", 3)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        ext = ".gz" if compress else ""
        _write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", images, compress)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", labels, compress)
        sets[prefix] = images, labels
    for train, prefix in ((True, "train"), (False, "t10k")):
        ds = cls(tmp_path, train=train)
        images, labels = sets[prefix]
        assert len(ds) == len(labels) and ds.data.dtype == px.uint8
        assert np.array_equal(ds.data.numpy(), images)
        assert ds.targets.tolist() == labels.tolist()
        img, label = ds[2]
        assert img.shape == (1, 28, 28) and label == labels[2]
        np.testing.assert_allclose(img.numpy()[0], images[2] / 255, rtol=1e-6)


def test_mnist_missing_files_names_the_expected_paths(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        MNIST(tmp_path, train=False)
    msg = str(e.value)
    assert str(tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz") in msg
    assert "t10k-labels-idx1-ubyte" in msg and "never downloads" in msg


def _write_cifar(path, images, labels):
    records = np.concatenate([labels[:, None].astype(np.uint8), images.reshape(len(labels), -1)],
                             axis=1)
    records.tofile(path)


def test_cifar10_reader(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    rng = np.random.default_rng(1)
    written = {}
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        images = rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, 2)
        _write_cifar(folder / name, images, labels)
        written[name] = images, labels
    train = CIFAR10(tmp_path, train=True)
    assert len(train) == 10 and train.data.shape == (10, 3, 32, 32)
    assert np.array_equal(train.data.numpy()[2:4], written["data_batch_2.bin"][0])
    assert train.targets.tolist()[8:] == written["data_batch_5.bin"][1].tolist()
    test = CIFAR10(folder, train=False)  # the batches folder itself works too
    img, label = test[1]
    assert img.shape == (3, 32, 32) and label == written["test_batch.bin"][1][1]
    np.testing.assert_allclose(img.numpy(), written["test_batch.bin"][0][1] / 255, rtol=1e-6)
    assert train.classes[0] == "airplane"
    (folder / "test_batch.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="not a whole number of CIFAR-10 records"):
        CIFAR10(tmp_path, train=False)


def test_cifar10_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data_batch_1\.bin(.|\n)*data_batch_5\.bin"):
        CIFAR10(tmp_path)
