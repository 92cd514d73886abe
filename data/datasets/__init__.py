"""Real data sets that need no network: scikit-learn's 8x8 handwritten digits, and readers for
MNIST / Fashion-MNIST IDX files and CIFAR-10 binary files already on disk."""
from .cifar import CIFAR10
from .digits import DigitsDataset, load_digits
from .mnist import MNIST, FashionMNIST, read_idx

__all__ = ["CIFAR10", "DigitsDataset", "FashionMNIST", "MNIST", "load_digits", "read_idx"]
