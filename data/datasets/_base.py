"""What the image datasets share: images and labels held as arrays, returned as tensors."""
import numpy as np

from ...tensor import Tensor
from ..dataset import Dataset


class ImageDataset(Dataset):
    """`data` (N, ...) uint8 or float images, `targets` (N,) int64 labels. Sample `i` is
    (image as a float32 tensor scaled to [0, 1], with a channel axis; label as an int), then
    `transform` / `target_transform` if given."""

    scale = 1.0 / 255

    def __init__(self, images, labels, transform=None, target_transform=None):
        if len(images) != len(labels):
            raise ValueError(f"{type(self).__name__}: {len(images)} images but {len(labels)} "
                             f"labels")
        self.data = Tensor._make(np.ascontiguousarray(images))
        self.targets = Tensor._make(np.asarray(labels, dtype=np.int64))
        self.transform = transform
        self.target_transform = target_transform
        self._images = images  # NumPy views, so indexing costs no tensor op
        self._labels = np.asarray(labels, dtype=np.int64)

    def __len__(self):
        return len(self._labels)

    def __getitem__(self, index):
        img = self._images[index].astype(np.float32) * np.float32(self.scale)
        if img.ndim == 2:
            img = img[None]
        img = Tensor._make(img)
        label = int(self._labels[index])
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return img, label


def missing_files_error(name, paths, hint):
    listed = "\n  ".join(str(p) for p in paths)
    return FileNotFoundError(f"{name}: data files not found. Looked for:\n  {listed}\n{hint} "
                             f"(Phalanx never downloads: copy the files there first)")
