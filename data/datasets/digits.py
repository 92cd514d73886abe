"""The 8x8 handwritten digits that scikit-learn ships (1797 images, 10 classes), split into
train and test sets deterministically (stratified by class)."""
import numpy as np

from ._base import ImageDataset


def _digits_arrays():
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as e:
        raise ImportError("the digits data set comes with scikit-learn: "
                          "pip install 'phalanx[examples]' (or pip install scikit-learn)") from e
    bunch = sk_load_digits()
    return bunch.images.astype(np.float32), bunch.target.astype(np.int64)


def _split(labels, test_fraction, seed):
    """Per class, a seeded shuffle; the first `test_fraction` of each class is the test set."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(len(idx) * test_fraction))
        test.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


class DigitsDataset(ImageDataset):
    """scikit-learn's digits: samples are (float32 tensor (1, 8, 8) in [0, 1], int label).

    `train=True` gives the training part of a stratified split that holds out `test_fraction`
    of each class; the split depends only on `seed`.
    """

    scale = 1.0 / 16  # pixel values are 0..16

    def __init__(self, train=True, test_fraction=0.2, seed=0, transform=None,
                 target_transform=None):
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
        images, labels = _digits_arrays()
        train_idx, test_idx = _split(labels, test_fraction, seed)
        idx = train_idx if train else test_idx
        super().__init__(images[idx], labels[idx], transform, target_transform)
        self.train = train
        self.classes = list(range(10))


def load_digits(test_fraction=0.2, seed=0, transform=None):
    """(train, test) `DigitsDataset`s of the same deterministic split."""
    return (DigitsDataset(True, test_fraction, seed, transform),
            DigitsDataset(False, test_fraction, seed, transform))
