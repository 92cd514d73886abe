"""Muon: SGD with (Nesterov) momentum whose update for a 2-D parameter is orthogonalised by a
few Newton-Schulz iterations, run in bfloat16 as PyTorch runs them. For the hidden layers'
weight matrices only; optimise biases and embeddings with another optimizer."""
import math

import numpy as np

from ..tensor.backend import array_module
from ._array_ops import lerp_
from .optimizer import Optimizer, zeros_state

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


class Muon(Optimizer):
    _elementwise = False    # orthogonalises whole matrices
    def __init__(self, params, lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True,
                 ns_coefficients=NS_COEFFICIENTS, eps=1e-7, ns_steps=5, adjust_lr_fn=None):
        if lr < 0.0:
            raise ValueError(f"Learning rate should be >= 0 but is: {lr}")
        if momentum < 0.0:
            raise ValueError(f"momentum should be >= 0 but is: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"weight decay should be >= 0 but is: {weight_decay}")
        if adjust_lr_fn not in (None, "original", "match_rms_adamw"):
            raise ValueError(f"Adjust learning rate function {adjust_lr_fn} is not supported; "
                             f"use 'original' or 'match_rms_adamw'")
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum,
                                      nesterov=nesterov, ns_coefficients=ns_coefficients,
                                      eps=eps, ns_steps=ns_steps, adjust_lr_fn=adjust_lr_fn))
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(f"Muon only supports 2D parameters, but found one of shape "
                                     f"{tuple(p.shape)}; optimise it with another optimizer "
                                     f"(e.g. AdamW)")

    def _init_state(self, param, group):
        return {"momentum_buffer": zeros_state(param)}

    def _update_group(self, group, params, grads, states):
        muon([p._data for p in params], grads, [s["momentum_buffer"]._data for s in states],
             lr=group["lr"], weight_decay=group["weight_decay"], momentum=group["momentum"],
             nesterov=group["nesterov"], ns_coefficients=group["ns_coefficients"],
             ns_steps=group["ns_steps"], eps=group["eps"], adjust_lr_fn=group["adjust_lr_fn"])


def muon(params, grads, momentum_buffers, *, lr, weight_decay, momentum, nesterov,
         ns_coefficients, ns_steps, eps, adjust_lr_fn):
    """Muon on lists of 2-D arrays, in place."""
    for i, p in enumerate(params):
        xp = array_module(p)
        g, buf = grads[i], momentum_buffers[i]
        lerp_(buf, g, 1 - momentum, xp.empty_like(p))
        update = lerp_(g.copy(), buf, momentum, xp.empty_like(p)) if nesterov else buf
        update = zeropower_via_newtonschulz(update, ns_coefficients, ns_steps, eps)
        p *= 1 - lr * weight_decay
        update = update.astype(p.dtype)  # before scaling, so the product has p's precision
        update *= _adjusted_lr(lr, adjust_lr_fn, p.shape)
        p -= update


def _adjusted_lr(lr, adjust_lr_fn, shape):
    """Scale the rate so the orthogonalised update's RMS is alike across matrix shapes."""
    rows, cols = shape[:2]
    if adjust_lr_fn in (None, "original"):
        return lr * math.sqrt(max(1, rows / cols))
    return lr * 0.2 * math.sqrt(max(rows, cols))  # "match_rms_adamw"


def zeropower_via_newtonschulz(g, ns_coefficients, ns_steps, eps):
    """An approximately orthogonal matrix with g's singular vectors (U S' V^T with S' near 1),
    by the quintic Newton-Schulz iteration X <- aX + (bA + cA^2)X, A = X X^T. In bfloat16: each
    operation computes in float32 and rounds its result, as PyTorch's CPU bfloat16 kernels do.
    Returns float32 values that bfloat16 represents."""
    if ns_steps >= 100:
        raise ValueError(f"Number of steps must be less than 100 for computational efficiency, "
                         f"got {ns_steps}")
    if g.ndim != 2:
        raise ValueError(f"Input tensor gradient must be a 2D matrix, got shape {g.shape}")
    if len(ns_coefficients) != 3:
        raise ValueError(f"Coefficients must be a tuple of exactly 3 values, got "
                         f"{ns_coefficients}")
    xp = array_module(g)
    a, b, c = (float(v) for v in ns_coefficients)
    x = _bf16(g.astype(np.float32))
    transposed = g.shape[0] > g.shape[1]
    if transposed:
        x = x.T
    eps = np.float32(_bf16(np.float32(eps)))  # a host scalar, fine for either backend
    norm = xp.maximum(_bf16(xp.sqrt(xp.sum(x * x, dtype=np.float32))), eps)
    x = _bf16(x / norm)  # spectral norm at most 1
    for _ in range(ns_steps):
        gram = _bf16(x @ x.T)
        gram_update = _bf16(b * gram + c * (gram @ gram))
        x = _bf16(a * x + gram_update @ x)
    return x.T if transposed else x


def _bf16(x):
    """float32 values rounded to the nearest bfloat16 (ties to even), kept as float32."""
    xp = array_module(x)
    x = xp.asarray(x, dtype=np.float32)
    bits = x.view(np.uint32).astype(np.uint32)
    bits += np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    bits &= np.uint32(0xFFFF0000)
    return bits.view(np.float32)
