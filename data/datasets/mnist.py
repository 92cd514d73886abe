"""MNIST and Fashion-MNIST from local IDX files (gzip-compressed or raw)."""
import gzip
import os

import numpy as np

from ._base import ImageDataset, missing_files_error

# IDX type codes -> big-endian NumPy dtypes
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path):
    """An IDX file (as the MNIST files are) as a NumPy array; `.gz` files are decompressed."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {data[:4].hex()})")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{path}: an IDX file of shape {shape} and dtype {dtype} should have "
                         f"{expected} bytes, but has {len(data)} (truncated or corrupt)")
    arr = np.frombuffer(data, dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))


class MNIST(ImageDataset):
    """MNIST from `root`: samples are (float32 tensor (1, 28, 28) in [0, 1], int label);
    `.data` holds the uint8 images and `.targets` the labels.

    The four files (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
    `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each optionally `.gz`) are looked for
    in `root`, `root/<Name>/raw` (torchvision's layout) and `root/<Name>`.
    """

    classes = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five",
               "6 - six", "7 - seven", "8 - eight", "9 - nine"]

    def __init__(self, root, train=True, transform=None, target_transform=None):
        self.root = os.fspath(root)
        self.train = train
        prefix = "train" if train else "t10k"
        images_path, labels_path = self._find(f"{prefix}-images-idx3-ubyte",
                                              f"{prefix}-labels-idx1-ubyte")
        super().__init__(read_idx(images_path), read_idx(labels_path), transform,
                         target_transform)

    def _find(self, *stems):
        name = type(self).__name__
        folders = [self.root, os.path.join(self.root, name, "raw"), os.path.join(self.root, name)]
        found, missing = [], []
        for stem in stems:
            paths = [os.path.join(d, stem + ext) for d in folders for ext in ("", ".gz")]
            hit = next((p for p in paths if os.path.isfile(p)), None)
            found.append(hit)
            if hit is None:
                missing += paths
        if missing:
            raise missing_files_error(name, missing, f"Put the {name} IDX files in one of "
                                      f"{folders}.")
        return found


class FashionMNIST(MNIST):
    """Fashion-MNIST: the same IDX files and layout as MNIST, under `root/FashionMNIST/raw`."""

    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot"]
