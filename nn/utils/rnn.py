"""Variable-length batches for recurrent layers: `PackedSequence` and the functions that pack
and pad, under PyTorch's names and semantics.

A packed batch stores the time steps one after another, each holding only the sequences that
are still running: step t has `batch_sizes[t]` rows, sequences sorted by decreasing length.
`sorted_indices[i]` is the original batch position of the i-th sorted sequence;
`unsorted_indices` is its inverse. Packing and padding are each one gather (an index built on
the host from the lengths), so their backward is the framework's own indexing backward.
"""
from collections import namedtuple

import numpy as np

from ...tensor import Tensor, backend, cat, stack

__all__ = ["PackedSequence", "invert_permutation", "pack_padded_sequence",
           "pad_packed_sequence", "pad_sequence", "unpad_sequence", "pack_sequence",
           "unpack_sequence"]


def _host_ints(values, what):
    """A 1-D int64 NumPy array from a list, tuple, NumPy array or CPU tensor."""
    if isinstance(values, Tensor):
        if values.device.type != "cpu":
            raise RuntimeError(f"'{what}' argument should be a 1D CPU int64 tensor, but got 1D "
                               f"{values.device.type} {values.dtype} tensor; call "
                               f"{what}.cpu() first")
        values = values._data
    arr = np.asarray(values)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise RuntimeError(f"'{what}' should be a 1-D sequence of integers, got shape "
                           f"{list(arr.shape)} and dtype {arr.dtype}")
    return arr.astype(np.int64)


def _index_tensor(arr, device):
    return Tensor._make(backend.to_device(np.ascontiguousarray(arr, dtype=np.int64), device))


def invert_permutation(permutation):
    """The inverse of a permutation of 0..n-1 (None stays None)."""
    if permutation is None:
        return None
    perm = _host_ints(permutation, "permutation")
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(perm.size)
    device = permutation.device if isinstance(permutation, Tensor) else "cpu"
    return _index_tensor(inverse, device)


class PackedSequence(namedtuple("PackedSequence",
                                ["data", "batch_sizes", "sorted_indices", "unsorted_indices"])):
    """What `pack_padded_sequence` returns; RNN, LSTM and GRU take it and return one.
    Build it with the pack functions rather than by hand."""

    def __new__(cls, data, batch_sizes=None, sorted_indices=None, unsorted_indices=None):
        if batch_sizes is None:
            raise TypeError("PackedSequence needs batch_sizes; build one with "
                            "pack_padded_sequence or pack_sequence")
        if not isinstance(batch_sizes, Tensor):
            batch_sizes = _index_tensor(_host_ints(batch_sizes, "batch_sizes"), "cpu")
        if unsorted_indices is None:
            unsorted_indices = invert_permutation(sorted_indices)
        return super().__new__(cls, data, batch_sizes, sorted_indices, unsorted_indices)

    def _with_data(self, data):
        sorted_i, unsorted_i = self.sorted_indices, self.unsorted_indices
        if sorted_i is not None and sorted_i.device != data.device:
            sorted_i, unsorted_i = sorted_i.to(data.device), unsorted_i.to(data.device)
        return type(self)(data, self.batch_sizes, sorted_i, unsorted_i)

    def to(self, *args, **kwargs):
        """Move or cast `data` as `Tensor.to` does; the index tensors follow its device and
        `batch_sizes` stays on the CPU, as in PyTorch."""
        data = self.data.to(*args, **kwargs)
        return self if data is self.data else self._with_data(data)

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None):
        return self.to("cuda" if device is None else device)

    def double(self):
        return self._with_data(self.data.double())

    def float(self):
        return self._with_data(self.data.float())

    def half(self):
        return self._with_data(self.data.half())

    def long(self):
        return self._with_data(self.data.long())

    def int(self):
        return self._with_data(self.data.int())

    @property
    def is_cuda(self):
        return self.data.device.type == "cuda"

    def is_pinned(self):
        return False


# ---- packing ---------------------------------------------------------------------------------
def _batch_sizes(lengths):
    """batch_sizes[t] = number of sequences longer than t (lengths sorted decreasing)."""
    return (lengths[None, :] > np.arange(int(lengths[0]))[:, None]).sum(axis=1)


def pack_padded_sequence(input, lengths, batch_first=False, enforce_sorted=True):
    """Pack a padded batch (T, B, *) (or (B, T, *) with batch_first) of sequences of the given
    lengths. With `enforce_sorted=True` the lengths must be decreasing; otherwise the batch is
    sorted here and the permutation kept in the result."""
    lengths = _host_ints(lengths, "lengths")
    if input.ndim < 2:
        raise ValueError(f"pack_padded_sequence: input must have a time and a batch dimension, "
                         f"got shape {list(input.shape)}")
    if batch_first:
        input = input.transpose(0, 1)
    steps, batch = input.shape[0], input.shape[1]
    if lengths.size != batch:
        raise RuntimeError(f"Expected `len(lengths)` to be equal to batch_size, but got "
                           f"{lengths.size} (batch_size={batch})")
    if enforce_sorted:
        if np.any(np.diff(lengths) > 0):
            raise RuntimeError("`lengths` array must be sorted in decreasing order when "
                               "`enforce_sorted` is True. You can pass `enforce_sorted=False` "
                               "to pack_padded_sequence and/or pack_sequence to sidestep this "
                               "requirement if you do not need ONNX exportability.")
        order = None
    else:
        order = np.argsort(-lengths, kind="stable")
        lengths = lengths[order]
    if batch and lengths[-1] <= 0:
        raise RuntimeError(f"Length of all samples has to be greater than 0, but found an "
                           f"element in 'lengths' that is <= 0 (lengths {lengths.tolist()})")
    if batch and lengths[0] > steps:
        raise RuntimeError(f"pack_padded_sequence: the longest length {int(lengths[0])} "
                           f"exceeds the {steps} time steps of the input of shape "
                           f"{list(input.shape)}")
    batch_sizes = _batch_sizes(lengths)
    # row (t, i) of the packed data is padded row t * batch + (original position of sorted i)
    source = np.arange(batch) if order is None else order
    gather = np.concatenate([t * batch + source[:n] for t, n in enumerate(batch_sizes)])
    flat = input.reshape(steps * batch, *input.shape[2:])
    data = flat[_index_tensor(gather, input.device)]
    sorted_indices = None if order is None else _index_tensor(order, input.device)
    return PackedSequence(data, _index_tensor(batch_sizes, "cpu"), sorted_indices, None)


def pad_packed_sequence(sequence, batch_first=False, padding_value=0.0, total_length=None):
    """Undo `pack_padded_sequence`: returns (padded, lengths), the batch back in its original
    order, padded with `padding_value` to the longest length (or to `total_length`)."""
    batch_sizes = _host_ints(sequence.batch_sizes, "batch_sizes")
    data = sequence.data
    steps, batch = batch_sizes.size, int(batch_sizes[0]) if batch_sizes.size else 0
    if total_length is not None:
        if total_length < steps:
            raise ValueError(f"Expected total_length to be at least the length of the longest "
                             f"sequence in input, but got total_length={total_length} and max "
                             f"sequence length being {steps}")
        steps_out = int(total_length)
    else:
        steps_out = steps
    unsorted = (np.arange(batch) if sequence.unsorted_indices is None
                else _host_ints(sequence.unsorted_indices, "unsorted_indices"))
    # padded row (t, b) takes packed row offset[t] + unsorted[b], or the padding row past the end
    offsets = np.concatenate([[0], np.cumsum(batch_sizes)])
    n_rows = int(offsets[-1])
    gather = np.full((steps_out, batch), n_rows, dtype=np.int64)
    for t, n in enumerate(batch_sizes):
        running = unsorted < n
        gather[t, running] = offsets[t] + unsorted[running]
    pad_row = data.new_full((1, *data.shape[1:]), padding_value)
    padded = cat([data, pad_row])[_index_tensor(gather.reshape(-1), data.device)]
    padded = padded.reshape(steps_out, batch, *data.shape[1:])
    if batch_first:
        padded = padded.transpose(0, 1)
    lengths = (batch_sizes[None, :] > np.arange(batch)[:, None]).sum(axis=1)[unsorted]
    return padded, _index_tensor(lengths, "cpu")


def pad_sequence(sequences, batch_first=False, padding_value=0.0, padding_side="right"):
    """Stack sequences of shape (L_i, *) into (max L, B, *) (or (B, max L, *)), padding each at
    its end (`padding_side='right'`) or its start ('left') with `padding_value`."""
    if padding_side not in ("left", "right"):
        raise RuntimeError(f"Expected padding_side to be one of left or right, but got "
                           f"{padding_side}.")
    if isinstance(sequences, Tensor):
        sequences = sequences.unbind(0)
    sequences = list(sequences)
    if not sequences:
        raise RuntimeError("received an empty list of sequences")
    trailing = tuple(sequences[0].shape[1:])
    for i, s in enumerate(sequences):
        if tuple(s.shape[1:]) != trailing:
            raise RuntimeError(f"pad_sequence: every sequence must have the trailing shape "
                               f"{list(trailing)} of the first, but sequence {i} has shape "
                               f"{list(s.shape)}")
    longest = max(s.shape[0] for s in sequences)
    rows = []
    for s in sequences:
        missing = longest - s.shape[0]
        if missing:
            fill = s.new_full((missing, *trailing), padding_value)
            s = cat([s, fill] if padding_side == "right" else [fill, s])
        rows.append(s)
    return stack(rows, dim=0 if batch_first else 1)


def unpad_sequence(padded_sequences, lengths, batch_first=False):
    """Split a padded batch back into a list of its sequences (inverse of `pad_sequence`)."""
    lengths = _host_ints(lengths, "lengths")
    if not batch_first:
        padded_sequences = padded_sequences.transpose(0, 1)
    if lengths.size != padded_sequences.shape[0]:
        raise RuntimeError(f"unpad_sequence: {lengths.size} lengths for a batch of "
                           f"{padded_sequences.shape[0]}")
    return [padded_sequences[i, :int(n)] for i, n in enumerate(lengths)]


def pack_sequence(sequences, enforce_sorted=True):
    """Pack a list of sequences (L_i, *); with `enforce_sorted=True` they must come longest
    first."""
    lengths = [s.shape[0] for s in sequences]
    return pack_padded_sequence(pad_sequence(sequences), lengths,
                                enforce_sorted=enforce_sorted)


def unpack_sequence(packed_sequences):
    """The list of sequences a PackedSequence holds, in their original order."""
    padded, lengths = pad_packed_sequence(packed_sequences, batch_first=True)
    return unpad_sequence(padded, lengths, batch_first=True)
