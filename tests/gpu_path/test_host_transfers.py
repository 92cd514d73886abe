"""The steady-state training step reads nothing back from the device (CPU-only test).

On a GPU every read of an array's values on the host (`float(x)`, `.item()`, `.tolist()`,
`bool(x.any())`, a copy to NumPy) waits for all the work queued before it. The step must make
none: checks that need values run only in debug mode (`PHALANX_DEBUG=1`).

Without a GPU the device is played by `DeviceArray`, a NumPy array subclass that counts every
such read, and by the backend's own count of transfers (`backend.to_host`, through which every
deliberate device-to-host copy goes). NumPy carries the subclass through every ufunc, so the
parameters, activations, gradients and optimizer states of the step are all DeviceArrays. The
first step (lazy state, optimizer buffers) may read; the following ones must not.
"""
import traceback

import numpy as np
import pytest

import phalanx as px
import phalanx.nn as nn
import phalanx.nn.functional as F
from phalanx.tensor import backend

pytestmark = [pytest.mark.mpi_skip, pytest.mark.timeout(120)]


class DeviceArray(np.ndarray):
    """An ndarray standing in for a GPU array: reading its values on the host is recorded."""

    reads = []

    def _read(self, what):
        where = [f"{f.filename.split('/phalanx/')[-1].split('/main/')[-1]}:{f.lineno}"
                 for f in traceback.extract_stack()[-8:-2]]
        DeviceArray.reads.append((what, " <- ".join(reversed(where))))
        return self.view(np.ndarray)

    def __float__(self):
        return float(self._read("float()"))

    def __int__(self):
        return int(self._read("int()"))

    def __index__(self):
        return self._read("index").__index__()

    def __bool__(self):
        return bool(self._read("bool()"))

    def __array_function__(self, func, types, args, kwargs):
        # np.where, np.dot, np.einsum...: run on plain arrays (some refuse subclasses) and
        # keep their results "on the device" too
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    def item(self, *args):
        return self._read(".item()").item(*args)

    def tolist(self):
        return self._read(".tolist()").tolist()


def _wrap(out):
    if isinstance(out, np.generic):
        return np.asarray(out).view(DeviceArray)
    if type(out) is np.ndarray:
        return out.view(DeviceArray)
    if isinstance(out, (tuple, list)):
        return type(out)(_wrap(o) for o in out)
    return out


def _unwrap(obj):
    if isinstance(obj, DeviceArray):
        return obj.view(np.ndarray)
    if isinstance(obj, (tuple, list)):
        return type(obj)(_unwrap(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _unwrap(v) for k, v in obj.items()}
    return obj


def _on_device(tensors):
    for t in tensors:
        t._data = t._data.view(DeviceArray)


def _batch(*tensors):
    _on_device(tensors)
    return tensors


def _count_steps(step, n=3):
    """Reads made by steps 2..n (step 1 is warm-up)."""
    step()
    DeviceArray.reads.clear()
    backend.reset_transfer_counts()
    for _ in range(n - 1):
        step()
    return list(DeviceArray.reads), dict(backend.transfer_counts)


def _assert_no_reads(step, model, grads_on_device=True):
    _on_device(list(model.parameters()) + list(model.buffers()))
    reads, transfers = _count_steps(step)
    if grads_on_device:  # the stand-in reached backward (kernels writing into fresh buffers,
        # and DDP's buckets, give plain arrays: a stand-in's limit, not a GPU's)
        assert any(isinstance(p.grad._data, DeviceArray) for p in model.parameters())
    assert not reads and not transfers, (
        "host reads in the steady-state step:\n" + "\n".join(f"  {w}: {s}" for w, s in reads)
        + f"\ntransfers: {transfers}")


def _train_step(model, opt, make_loss, clip=None):
    def step():
        opt.zero_grad()
        loss = make_loss()
        loss.backward()
        if clip is not None:
            clip()
        opt.step()
    return step


def test_the_fake_device_counts_reads():
    # the test can fail: a step that reads the loss is caught
    x = px.ones(3)
    _on_device([x])
    DeviceArray.reads.clear()
    backend.reset_transfer_counts()
    assert float((x * 2).sum()) == 6.0 and x.sum().item() == 3.0 and x.tolist() == [1] * 3
    assert backend.transfer_counts == {"DeviceArray": 3}   # through the backend's one door
    assert not DeviceArray.reads
    assert bool((x._data > 0).all()) and int(x._data.sum()) == 3   # around it: caught too
    assert [w for w, _ in DeviceArray.reads] == ["bool()", "int()"]


def test_mlp_step_makes_no_host_read():
    px.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 5))
    opt = px.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x, y = _batch(px.randn(16, 20), px.randint(0, 5, (16,)))
    _assert_no_reads(_train_step(model, opt, lambda: F.cross_entropy(model(x), y)), model)


def test_cnn_with_batchnorm_step_makes_no_host_read():
    px.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.2), nn.Linear(4 * 4 * 4, 10))
    opt = px.optim.Adam(model.parameters(), lr=1e-3)
    x, y = _batch(px.randn(8, 1, 8, 8), px.randint(0, 10, (8,)))
    _assert_no_reads(_train_step(model, opt, lambda: F.cross_entropy(model(x), y,
                                                                     label_smoothing=0.1)),
                     model)


def test_transformer_encoder_step_makes_no_host_read():
    px.manual_seed(0)
    vocab, d, seq = 17, 16, 6

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(vocab, d)
            layer = nn.TransformerEncoderLayer(d, 4, 32, dropout=0.1, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, 2)
            self.head = nn.Linear(d, vocab)

        def forward(self, tokens, mask, padding):
            return self.head(self.encoder(self.embed(tokens), mask=mask,
                                          src_key_padding_mask=padding))

    model = Encoder()
    opt = px.optim.AdamW(model.parameters(), lr=1e-3)
    padding = px.zeros(4, seq, dtype=px.bool)
    padding[1, 4:] = True                                  # a shorter second sequence
    tokens, mask, padding = _batch(px.randint(0, vocab, (4, seq)),
                                   nn.Transformer.generate_square_subsequent_mask(seq), padding)
    target, = _batch(px.randint(0, vocab, (4 * seq,)))
    _assert_no_reads(_train_step(model, opt, lambda: F.cross_entropy(
        model(tokens, mask, padding).reshape(-1, vocab), target)), model)


def test_ddp_step_with_clipping_makes_no_host_read(world_of_one):
    px.manual_seed(0)
    net = nn.Sequential(nn.Linear(12, 24), nn.Tanh(), nn.Linear(24, 3))
    _on_device(list(net.parameters()))
    model = nn.parallel.DistributedDataParallel(net)
    opt = px.optim.Adam(model.parameters(), lr=1e-2)
    x, y = _batch(px.randn(10, 12), px.randint(0, 3, (10,)))
    step = _train_step(model, opt, lambda: F.nll_loss(F.log_softmax(model(x), 1), y),
                       clip=lambda: nn.utils.clip_grad_norm_(model.parameters(), 0.5))
    _assert_no_reads(step, net, grads_on_device=False)


def test_debug_mode_brings_the_checks_back(monkeypatch):
    monkeypatch.setattr(backend, "_debug_checks", False)
    with pytest.raises(IndexError, match="Target 7 is out of bounds"):
        F.cross_entropy(px.randn(2, 3), px.tensor([0, 7]))  # on the CPU: always checked
    logits, good, bad = _batch(px.randn(2, 3), px.tensor([0, 2]), px.tensor([0, 7]))
    DeviceArray.reads.clear()
    F.cross_entropy(logits, good)                           # on a device: not read
    assert not DeviceArray.reads
    backend.set_debug_checks(True)
    with pytest.raises(IndexError, match="Target 7 is out of bounds"):
        F.cross_entropy(logits, bad)
    assert DeviceArray.reads
