"""CIFAR-10 from the binary version's files (`cifar-10-batches-bin/`)."""
import os

import numpy as np

from ._base import ImageDataset, missing_files_error

_RECORD = 1 + 3 * 32 * 32  # label byte, then the red, green and blue 32x32 planes


def read_cifar_bin(path):
    """One CIFAR-10 binary batch file -> (uint8 images (N, 3, 32, 32), int64 labels (N,))."""
    raw = np.fromfile(path, np.uint8)
    if raw.size == 0 or raw.size % _RECORD:
        raise ValueError(f"{path}: {raw.size} bytes is not a whole number of CIFAR-10 records "
                         f"({_RECORD} bytes each); the file is truncated or not CIFAR-10 binary")
    records = raw.reshape(-1, _RECORD)
    return records[:, 1:].reshape(-1, 3, 32, 32), records[:, 0].astype(np.int64)


class CIFAR10(ImageDataset):
    """CIFAR-10: samples are (float32 tensor (3, 32, 32) in [0, 1], int label).

    `root` is the folder holding `cifar-10-batches-bin/` (or that folder itself), with
    `data_batch_1.bin` .. `data_batch_5.bin` (train) and `test_batch.bin` (test).
    """

    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
               "ship", "truck"]
    base_folder = "cifar-10-batches-bin"

    def __init__(self, root, train=True, transform=None, target_transform=None):
        self.root = os.fspath(root)
        self.train = train
        names = [f"data_batch_{i}.bin" for i in range(1, 6)] if train else ["test_batch.bin"]
        folder = os.path.join(self.root, self.base_folder)
        if not os.path.isdir(folder) and os.path.basename(os.path.normpath(self.root)) == \
                self.base_folder:
            folder = self.root
        paths = [os.path.join(folder, n) for n in names]
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise missing_files_error("CIFAR10", missing,
                                      f"Unpack cifar-10-binary.tar.gz into {self.root!r}.")
        parts = [read_cifar_bin(p) for p in paths]
        super().__init__(np.concatenate([p[0] for p in parts]),
                         np.concatenate([p[1] for p in parts]), transform, target_transform)
        meta = os.path.join(folder, "batches.meta.txt")
        if os.path.isfile(meta):
            with open(meta) as f:
                self.classes = [line.strip() for line in f if line.strip()]
