"""Layers, optimizers and DDP on each device (the `device` fixture: "cpu", and "cuda" when a
GPU is usable) against the same computation on the CPU, at float32 tolerances.

On a machine without a GPU the "cuda" cases skip; the "cpu" cases still check that moving a
model and its inputs with `.to(device)` keeps every value.
"""
import copy

import numpy as np
import pytest

import phalanx as px
import phalanx.nn as nn
import phalanx.nn.functional as F

pytestmark = [pytest.mark.mpi_skip, pytest.mark.timeout(120)]

TOL = dict(rtol=2e-4, atol=2e-5)


def _host(t):
    return t.detach().cpu().numpy()


def _attention():
    return nn.MultiheadAttention(8, 2, batch_first=True)


LAYERS = {
    "linear": (lambda: nn.Linear(6, 4), (5, 6)),
    "conv2d": (lambda: nn.Conv2d(3, 4, 3, padding=1, stride=2), (2, 3, 7, 7)),
    "conv_transpose2d": (lambda: nn.ConvTranspose2d(3, 2, 3, stride=2), (2, 3, 4, 4)),
    "batchnorm2d": (lambda: nn.BatchNorm2d(3), (4, 3, 5, 5)),
    "layernorm": (lambda: nn.LayerNorm(6), (3, 4, 6)),
    "maxpool2d": (lambda: nn.MaxPool2d(2), (2, 3, 6, 6)),
    "avgpool2d": (lambda: nn.AvgPool2d(3, stride=2, padding=1), (2, 3, 7, 7)),
    "gelu": (lambda: nn.GELU(), (4, 5)),
    "lstm": (lambda: nn.LSTM(5, 6, batch_first=True), (2, 4, 5)),
    "transformer_encoder_layer": (lambda: nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0,
                                                                    batch_first=True),
                                  (2, 5, 8)),
}


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _run_layer(make, shape, device, seed=0):
    px.manual_seed(seed)
    layer = make().to(device)
    x = px.tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32),
                  device=device, requires_grad=True)
    out = _first(layer(x, x, x) if isinstance(layer, nn.MultiheadAttention) else layer(x))
    out.backward(px.ones_like(out))
    grads = {n: _host(p.grad) for n, p in layer.named_parameters() if p.grad is not None}
    buffers = {n: _host(b) for n, b in layer.named_buffers()}
    return _host(out), _host(x.grad), grads, buffers


@pytest.mark.parametrize("name", sorted(LAYERS) + ["multihead_attention"])
def test_layer_on_device_matches_cpu(name, device):
    make, shape = LAYERS.get(name, (_attention, (2, 5, 8)))
    want = _run_layer(make, shape, "cpu")
    got = _run_layer(make, shape, device)
    np.testing.assert_allclose(got[0], want[0], **TOL)
    np.testing.assert_allclose(got[1], want[1], **TOL)
    assert got[2].keys() == want[2].keys() and got[3].keys() == want[3].keys()
    for k in want[2]:
        np.testing.assert_allclose(got[2][k], want[2][k], **TOL, err_msg=k)
    for k in want[3]:
        np.testing.assert_allclose(got[3][k], want[3][k], **TOL, err_msg=k)


def _cross_entropy_losses(device):
    rng = np.random.default_rng(3)
    logits = px.tensor(rng.standard_normal((6, 5)).astype(np.float32), device=device,
                       requires_grad=True)
    target = px.tensor(rng.integers(0, 5, 6), device=device)
    weight = px.tensor(rng.uniform(0.5, 2, 5).astype(np.float32), device=device)
    loss = (F.cross_entropy(logits, target, weight=weight, label_smoothing=0.1)
            + F.nll_loss(F.log_softmax(logits, 1), target, ignore_index=2)
            + F.mse_loss(logits, logits.detach() * 0.5))
    loss.backward()
    return _host(loss), _host(logits.grad)


def test_losses_on_device_match_cpu(device):
    for got, want in zip(_cross_entropy_losses(device), _cross_entropy_losses("cpu")):
        np.testing.assert_allclose(got, want, **TOL)


OPTIMIZERS = {
    "sgd_momentum": lambda ps: px.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True,
                                            weight_decay=1e-3),
    "adam": lambda ps: px.optim.Adam(ps, lr=1e-2),
    "adamw_amsgrad": lambda ps: px.optim.AdamW(ps, lr=1e-2, amsgrad=True),
    "rmsprop": lambda ps: px.optim.RMSprop(ps, lr=1e-2, momentum=0.5),
    "adagrad": lambda ps: px.optim.Adagrad(ps, lr=1e-1),
}


def _train(make_opt, device, steps=3):
    px.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).to(device)
    opt = make_opt(model.parameters())
    rng = np.random.default_rng(1)
    x = px.tensor(rng.standard_normal((10, 6)).astype(np.float32), device=device)
    y = px.tensor(rng.integers(0, 3, 10), device=device)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return [_host(p) for p in model.parameters()]


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_on_device_matches_cpu(name, device):
    for got, want in zip(_train(OPTIMIZERS[name], device), _train(OPTIMIZERS[name], "cpu")):
        np.testing.assert_allclose(got, want, **TOL)


def test_ddp_world_of_one_on_device_matches_plain_cpu_training(world_of_one, device):
    px.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    reference = copy.deepcopy(net)
    net = net.to(device)
    ddp = nn.parallel.DistributedDataParallel(
        net, device_ids=[px.device(device).index] if device != "cpu" else None)
    rng = np.random.default_rng(2)
    x = px.tensor(rng.standard_normal((8, 6)).astype(np.float32))   # inputs stay on the CPU:
    y = px.tensor(rng.integers(0, 3, 8))                            # device_ids moves them
    for model, on in ((ddp, device), (reference, "cpu")):
        opt = px.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        for _ in range(3):
            opt.zero_grad()
            out = model(x if model is ddp and device != "cpu" else x.to(on))
            F.cross_entropy(out, y.to(out.device)).backward()
            nn.utils.clip_grad_norm_(model.parameters(), 0.5)
            opt.step()
    for got, want in zip(ddp.parameters(), reference.parameters()):
        np.testing.assert_allclose(_host(got), _host(want), **TOL)
