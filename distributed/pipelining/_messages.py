"""The messages between neighbouring pipeline stages.

Activations travel as self-describing messages: a fixed-size int64 header (how many
tensors; for each its dtype, whether it requires grad, its shape), then one message per
tensor. The receiver therefore needs no shape inference and microbatches may differ in
shape (an uneven split, a different batch next step). Gradients travel back without a
header: the stage that sent the activations knows their metadata, and a gradient comes back
for exactly the activations that required grad.

Every send is non-blocking (`isend`) and the caller keeps the handles until the end of the
step, so a stage only ever waits on a receive. Between two ranks the activations flow one
way and the gradients the other, and MPI (like our other backends) delivers messages from
one sender in the order they were sent, so header and tensors match without tags.
"""
from collections import namedtuple

import numpy as np

from ...tensor import dtypes as _dtypes
from ...tensor import empty, tensor
from .. import collectives as _comm

HEADER_SLOTS = 64
TensorMeta = namedtuple("TensorMeta", "shape dtype requires_grad")


def meta_of(t):
    return TensorMeta(tuple(t.shape), t.dtype, bool(t.requires_grad))


def encode_header(metas, stage_index):
    words = [len(metas)]
    for m in metas:
        words += [_dtypes.ALL.index(m.dtype), int(m.requires_grad), len(m.shape), *m.shape]
    if len(words) > HEADER_SLOTS:
        raise NotImplementedError(
            f"stage {stage_index} sends {len(metas)} tensors of shapes "
            f"{[m.shape for m in metas]}: their description needs {len(words)} words but a "
            f"pipeline header holds {HEADER_SLOTS}; pack the activations into fewer tensors")
    return np.array(words + [0] * (HEADER_SLOTS - len(words)), np.int64)


def decode_header(words):
    count, at, metas = int(words[0]), 1, []
    for _ in range(count):
        dtype, requires_grad, ndim = (int(w) for w in words[at:at + 3])
        shape = tuple(int(w) for w in words[at + 3:at + 3 + ndim])
        metas.append(TensorMeta(shape, _dtypes.ALL[dtype], bool(requires_grad)))
        at += 3 + ndim
    return metas


class Link:
    """Point-to-point traffic of one stage with its neighbours in `group`; the pending sends
    stay here until `wait_sends` (the end of a step)."""

    def __init__(self, group, device):
        self.group, self.device = group, device
        self.pending = []

    def send_tensors(self, tensors, dst, header=None):
        if header is not None:
            self.pending.append(_comm.isend(tensor(header, device=self.device), dst, self.group))
        for t in tensors:
            self.pending.append(_comm.isend(t.detach(), dst, self.group))

    def recv_header(self, src):
        buf = empty((HEADER_SLOTS,), dtype=_dtypes.int64, device=self.device)
        _comm.irecv(buf, src, self.group).wait()
        return decode_header(buf.cpu().numpy())

    def recv_tensors(self, metas, src):
        bufs = [empty(m.shape, dtype=m.dtype, device=self.device) for m in metas]
        works = [_comm.irecv(b, src, self.group) for b in bufs]
        for w in works:
            w.wait()
        return bufs

    def wait_sends(self):
        pending, self.pending = self.pending, []
        for w in pending:
            w.wait()
