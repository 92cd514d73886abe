"""AdaptiveLogSoftmaxWithLoss: the adaptive softmax of Grave et al. for large vocabularies.

Frequent classes (below the first cutoff) sit in a head softmax together with one entry per
tail cluster; the rarer classes of cluster i get their own softmax, reached through a
projection to in_features / div_value**(i+1) features. log p(class) is the head's log-prob of
the class (shortlist) or of its cluster plus the cluster's log-prob of the class. Parameter
names and shapes are PyTorch's (head, tail.i.0, tail.i.1), so its state dicts load.
"""
from collections import namedtuple

import numpy as np

from ...tensor import cat, tensor
from ...tensor.backend import to_host
from ..functional import log_softmax
from .container import ModuleList, Sequential
from .linear import Linear
from .module import Module

_ASMoutput = namedtuple("_ASMoutput", ["output", "loss"])


class AdaptiveLogSoftmaxWithLoss(Module):
    def __init__(self, in_features, n_classes, cutoffs, div_value=4.0, head_bias=False,
                 device=None, dtype=None):
        super().__init__()
        cutoffs = list(cutoffs)
        if (len(cutoffs) == 0 or cutoffs != sorted(cutoffs) or min(cutoffs) <= 0 or
                max(cutoffs) > n_classes - 1 or len(set(cutoffs)) != len(cutoffs) or
                any(int(c) != c for c in cutoffs)):
            raise ValueError(f"cutoffs should be a sequence of unique, positive integers sorted "
                             f"in an increasing order, where each value is between 1 and "
                             f"n_classes-1 ({n_classes - 1}); got {cutoffs}")
        self.in_features, self.n_classes = in_features, n_classes
        self.cutoffs = cutoffs + [n_classes]
        self.div_value, self.head_bias = div_value, head_bias
        self.shortlist_size = self.cutoffs[0]
        self.n_clusters = len(self.cutoffs) - 1
        self.head_size = self.shortlist_size + self.n_clusters
        factory = {"device": device, "dtype": dtype}
        self.head = Linear(in_features, self.head_size, bias=head_bias, **factory)
        self.tail = ModuleList()
        for i in range(self.n_clusters):
            hidden = int(in_features // (div_value ** (i + 1)))
            size = self.cutoffs[i + 1] - self.cutoffs[i]
            self.tail.append(Sequential(Linear(in_features, hidden, bias=False, **factory),
                                        Linear(hidden, size, bias=False, **factory)))

    def reset_parameters(self):
        self.head.reset_parameters()
        for projection in self.tail:
            for layer in projection:
                layer.reset_parameters()

    def _batched(self, input, target=None):
        if input.ndim not in (1, 2):
            raise RuntimeError(f"{type(self).__name__}: expected a 1-D (in_features,) or 2-D "
                               f"(batch, in_features) input, got shape {list(input.shape)}")
        if input.shape[-1] != self.in_features:
            raise RuntimeError(f"Input should have {self.in_features} features, got "
                               f"{input.shape[-1]} (input shape {list(input.shape)})")
        if target is not None and (target.ndim != input.ndim - 1 or
                                   (input.ndim == 2 and target.shape[0] != input.shape[0])):
            raise RuntimeError(f"Input and target should have the same size in the batch "
                               f"dimension, and target one dimension fewer: input "
                               f"{list(input.shape)}, target {list(target.shape)}")
        return input.ndim == 2

    def forward(self, input, target):
        """(log-prob of each target, mean negative log-likelihood)."""
        batched = self._batched(input, target)
        x = input if batched else input.unsqueeze(0)
        labels = to_host(target._data).reshape(-1).astype(np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= self.n_classes):
            raise RuntimeError(f"Target values should be in [0, {self.n_classes - 1}], but "
                               f"values in range [{labels.min()}, {labels.max()}] were found.")
        cluster_of = np.searchsorted(self.cutoffs, labels, side="right")   # 0: the shortlist
        head_column = np.where(cluster_of == 0, labels, self.shortlist_size + cluster_of - 1)
        head_lp = log_softmax(self.head(x), dim=1)
        output = head_lp.gather(1, _index(x, head_column[:, None])).squeeze(1)
        for i in range(1, self.n_clusters + 1):
            rows = np.nonzero(cluster_of == i)[0]
            if rows.size == 0:
                continue
            row_index = _index(x, rows)
            cluster_lp = log_softmax(self.tail[i - 1](x.index_select(0, row_index)), dim=1)
            local = _index(x, (labels[rows] - self.cutoffs[i - 1])[:, None])
            output = output.index_add(0, row_index, cluster_lp.gather(1, local).squeeze(1))
        loss = (-output).mean()
        return _ASMoutput(output if batched else output.squeeze(0), loss)

    def _full_log_prob(self, x, head_lp):
        parts = [head_lp[:, :self.shortlist_size]]
        for i, projection in enumerate(self.tail):
            cluster_lp = log_softmax(projection(x), dim=1)
            parts.append(cluster_lp + head_lp[:, self.shortlist_size + i:
                                              self.shortlist_size + i + 1])
        return cat(parts, 1)

    def log_prob(self, input):
        """Log-probabilities of every class, (batch, n_classes) (or (n_classes,))."""
        batched = self._batched(input)
        x = input if batched else input.unsqueeze(0)
        out = self._full_log_prob(x, log_softmax(self.head(x), dim=1))
        return out if batched else out.squeeze(0)

    def predict(self, input):
        """The most likely class of each input (the argmax of log_prob)."""
        return self.log_prob(input).argmax(dim=-1)


def _index(like, values):
    """An int64 index tensor of `values` on `like`'s device."""
    return tensor(values, device=like.device)
