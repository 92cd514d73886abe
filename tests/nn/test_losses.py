"""Losses against PyTorch CPU (values and gradients, every reduction), gradcheck of the fused
cross entropy (first and second order), and the error messages."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import phalanx as px
import phalanx.nn as nn
import phalanx.nn.functional as F
from phalanx.autograd import gradcheck, gradgradcheck

RNG = np.random.default_rng(1)


def check(tfn, pfn, arrays, grad_mask, rtol=1e-5, atol=1e-6):
    tx = [torch.tensor(a, requires_grad=g) for a, g in zip(arrays, grad_mask)]
    pxs = [px.tensor(a, requires_grad=g) for a, g in zip(arrays, grad_mask)]
    tout, pout = tfn(*tx), pfn(*pxs)
    np.testing.assert_allclose(pout.numpy(force=True), tout.detach().numpy(), rtol=rtol,
                               atol=atol)
    go = RNG.standard_normal(tuple(tout.shape))
    tout.backward(torch.tensor(go, dtype=tout.dtype))
    pout.backward(px.tensor(go, dtype=pout.dtype))
    for t, p in zip(tx, pxs):
        if t.requires_grad:
            np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=rtol, atol=atol)


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def prob(*shape):
    return RNG.uniform(0.05, 0.95, shape).astype(np.float32)


def labels(n, c, *rest):
    return RNG.integers(0, c, (n,) + rest).astype(np.int64)


REDUCTIONS = ["mean", "sum", "none"]

LOSSES = [
    ("mse", lambda L, r: L.MSELoss(reduction=r), lambda: [f32(4, 5), f32(4, 5)], [1, 1]),
    ("l1", lambda L, r: L.L1Loss(reduction=r), lambda: [f32(4, 5), f32(4, 5)], [1, 1]),
    ("smooth_l1", lambda L, r: L.SmoothL1Loss(reduction=r, beta=0.5),
     lambda: [f32(4, 5), f32(4, 5)], [1, 1]),
    ("smooth_l1_b0", lambda L, r: L.SmoothL1Loss(reduction=r, beta=0.0),
     lambda: [f32(4, 5), f32(4, 5)], [1, 0]),
    ("huber", lambda L, r: L.HuberLoss(reduction=r, delta=0.7),
     lambda: [f32(4, 5), f32(4, 5)], [1, 1]),
    ("bce", lambda L, r: L.BCELoss(reduction=r), lambda: [prob(4, 5), prob(4, 5)], [1, 1]),
    ("bce_weight", lambda L, r: L.BCELoss(weight=_t(L, prob(5)), reduction=r),
     lambda: [prob(4, 5), prob(4, 5)], [1, 0]),
    ("bce_logits", lambda L, r: L.BCEWithLogitsLoss(reduction=r),
     lambda: [f32(4, 5) * 5, prob(4, 5)], [1, 1]),
    ("bce_logits_pos", lambda L, r: L.BCEWithLogitsLoss(
        reduction=r, pos_weight=_t(L, prob(5) * 3), weight=_t(L, prob(4, 5))),
     lambda: [f32(4, 5) * 5, prob(4, 5)], [1, 1]),
    ("kl", lambda L, r: L.KLDivLoss(reduction=r),
     lambda: [np.log(prob(4, 5)), np.where(RNG.random((4, 5)) < 0.2, 0, prob(4, 5))
              .astype(np.float32)], [1, 0]),  # PyTorch's target grad is nan at 0
    ("kl_log_target", lambda L, r: L.KLDivLoss(reduction=r, log_target=True),
     lambda: [np.log(prob(4, 5)), np.log(prob(4, 5))], [1, 1]),
    ("cosine_emb", lambda L, r: L.CosineEmbeddingLoss(margin=0.2, reduction=r),
     lambda: [f32(6, 5), f32(6, 5), np.array([1, -1, 1, -1, -1, 1], np.float32)], [1, 1, 0]),
    ("nll", lambda L, r: L.NLLLoss(reduction=r), lambda: [f32(6, 4), labels(6, 4)], [1, 0]),
    ("nll_weight_ignore", lambda L, r: L.NLLLoss(weight=_t(L, prob(4)), ignore_index=1,
                                                 reduction=r),
     lambda: [f32(6, 4), labels(6, 4)], [1, 0]),
    ("nll_2d", lambda L, r: L.NLLLoss(reduction=r), lambda: [f32(2, 4, 3, 3), labels(2, 4, 3, 3)],
     [1, 0]),
    ("ce", lambda L, r: L.CrossEntropyLoss(reduction=r), lambda: [f32(6, 4), labels(6, 4)],
     [1, 0]),
    ("ce_all", lambda L, r: L.CrossEntropyLoss(weight=_t(L, prob(5)), ignore_index=2,
                                               label_smoothing=0.15, reduction=r),
     lambda: [f32(8, 5), labels(8, 5)], [1, 0]),
    ("ce_spatial", lambda L, r: L.CrossEntropyLoss(weight=_t(L, prob(3)), ignore_index=0,
                                                   label_smoothing=0.1, reduction=r),
     lambda: [f32(2, 3, 4, 2), labels(2, 3, 4, 2)], [1, 0]),
    ("ce_unbatched", lambda L, r: L.CrossEntropyLoss(reduction=r),
     lambda: [f32(5), np.array(3, np.int64)], [1, 0]),
    ("ce_probs", lambda L, r: L.CrossEntropyLoss(reduction=r, label_smoothing=0.2,
                                                 weight=_t(L, prob(4))),
     lambda: [f32(6, 4), _softmax(f32(6, 4))], [1, 1]),
    ("ce_probs_spatial", lambda L, r: L.CrossEntropyLoss(reduction=r),
     lambda: [f32(2, 4, 3), _softmax(f32(2, 4, 3), 1)], [1, 1]),
]


def _softmax(a, axis=-1):
    e = np.exp(a - a.max(axis, keepdims=True))
    return (e / e.sum(axis, keepdims=True)).astype(np.float32)


def _t(lib, a):
    return torch.tensor(a) if lib is torch.nn else px.tensor(a)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name,make,data,mask", LOSSES, ids=[r[0] for r in LOSSES])
def test_loss_matches_torch(name, make, data, mask, reduction):
    seed = RNG.integers(1 << 30)
    np.random.seed(seed)  # the weight arrays drawn by `make` must be the same for both
    state = RNG.bit_generator.state
    tmod = make(torch.nn, reduction)
    RNG.bit_generator.state = state
    pmod = make(nn, reduction)
    check(tmod, pmod, data(), [bool(m) for m in mask], rtol=2e-5, atol=1e-5)


def test_kl_batchmean():
    a, b = np.log(prob(4, 5)), prob(4, 5)
    check(lambda x, y: TF.kl_div(x, y, reduction="batchmean"),
          lambda x, y: F.kl_div(x, y, reduction="batchmean"), [a, b], [True, True])


def test_cross_entropy_functional_float64_and_ignored_all():
    x = RNG.standard_normal((5, 3))
    t = np.array([0, 2, 1, 1, 0])
    check(lambda a, b: TF.cross_entropy(a, b, label_smoothing=0.3),
          lambda a, b: F.cross_entropy(a, b, label_smoothing=0.3), [x, t], [True, False],
          rtol=1e-10, atol=1e-12)
    with np.errstate(all="ignore"):
        out = F.cross_entropy(px.tensor(x), px.tensor([-100] * 5))
    assert np.isnan(out.item())  # as PyTorch: 0 / 0


@pytest.mark.parametrize("kwargs", [{}, {"reduction": "sum", "label_smoothing": 0.2},
                                    {"reduction": "none", "ignore_index": 1},
                                    {"weight": [0.3, 1.0, 2.0], "label_smoothing": 0.1}])
def test_cross_entropy_gradcheck(kwargs):
    kwargs = dict(kwargs)
    if "weight" in kwargs:
        kwargs["weight"] = px.tensor(kwargs["weight"], dtype=px.float64)
    x = px.randn(4, 3, 2, dtype=px.float64, requires_grad=True)
    t = px.tensor([[0, 1], [2, 1], [1, 1], [0, 2]])
    assert gradcheck(lambda x: F.cross_entropy(x, t, **kwargs), (x,))
    assert gradgradcheck(lambda x: F.cross_entropy(x, t, **kwargs), (x,))


def test_cross_entropy_probs_gradcheck():
    x = px.randn(3, 4, dtype=px.float64, requires_grad=True)
    p = px.rand(3, 4, dtype=px.float64)
    p = (p / p.sum(1, keepdim=True)).detach().requires_grad_()
    assert gradcheck(lambda x, p: F.cross_entropy(x, p, label_smoothing=0.1), (x, p))
    assert gradgradcheck(lambda x: F.cross_entropy(x, p.detach(), reduction="sum"), (x,))


def test_loss_errors():
    x = px.randn(4, 3)
    with pytest.raises(IndexError, match="Target 3 is out of bounds"):
        F.cross_entropy(x, px.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"expected target of shape \[4\]"):
        F.cross_entropy(x, px.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"input's shape \[4, 3\]"):
        F.cross_entropy(x, px.rand(4, 2))
    with pytest.raises(RuntimeError, match=r"weight must have shape \[3\]"):
        F.cross_entropy(x, px.tensor([0, 1, 2, 0]), weight=px.ones(2))
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        F.mse_loss(x, x, reduction="avg")
    with pytest.raises(ValueError, match=r"target size \(\[4, 2\]\)"):
        F.mse_loss(x, px.randn(4, 2))
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        F.binary_cross_entropy(x, x.sigmoid())
    with pytest.raises(RuntimeError, match="class indices"):
        F.nll_loss(x, px.tensor([0.0, 1.0, 1.0, 0.0]))


def test_loss_modules_repr_and_buffers():
    ce = nn.CrossEntropyLoss(weight=px.ones(3))
    assert "weight" in ce.state_dict()
    assert repr(nn.HuberLoss()) == "HuberLoss()"


def pm1(*shape):
    return np.where(RNG.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)


FUNCTIONAL_LOSSES = [
    ("poisson_nll", "poisson_nll_loss", {}, lambda: [f32(4, 3), prob(4, 3) * 4], [1, 1]),
    ("poisson_nll_rate_full", "poisson_nll_loss", {"log_input": False, "full": True},
     lambda: [prob(4, 3) * 3, np.floor(prob(4, 3) * 5).astype(np.float32)], [1, 0]),
    ("gaussian_nll", "gaussian_nll_loss", {}, lambda: [f32(4, 3), f32(4, 3), prob(4, 3)],
     [1, 1, 1]),
    ("gaussian_nll_homo_full", "gaussian_nll_loss", {"full": True},
     lambda: [f32(4, 3), f32(4, 3), prob(4, 1)], [1, 1, 1]),
    ("margin_ranking", "margin_ranking_loss", {"margin": 0.3},
     lambda: [f32(6), f32(6), pm1(6)], [1, 1, 0]),
    ("hinge_embedding", "hinge_embedding_loss", {"margin": 0.8},
     lambda: [f32(4, 5), pm1(4, 5)], [1, 0]),
    ("soft_margin", "soft_margin_loss", {}, lambda: [f32(4, 5) * 3, pm1(4, 5)], [1, 0]),
    ("multilabel_soft_margin", "multilabel_soft_margin_loss", {},
     lambda: [f32(4, 5) * 3, (prob(4, 5) > 0.5).astype(np.float32)], [1, 0]),
    ("triplet_margin", "triplet_margin_loss", {"margin": 0.7, "p": 1, "swap": True},
     lambda: [f32(5, 4), f32(5, 4), f32(5, 4)], [1, 1, 1]),
    ("triplet_margin_p2", "triplet_margin_loss", {}, lambda: [f32(5, 4), f32(5, 4), f32(5, 4)],
     [1, 1, 1]),
    ("multi_margin", "multi_margin_loss", {"margin": 0.9},
     lambda: [f32(6, 4), labels(6, 4)], [1, 0]),
    ("multi_margin_p2_weight", "multi_margin_loss", {"p": 2, "weight": prob(4)},
     lambda: [f32(6, 4), labels(6, 4)], [1, 0]),
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name,fn,kwargs,data,mask", FUNCTIONAL_LOSSES,
                         ids=[r[0] for r in FUNCTIONAL_LOSSES])
def test_functional_loss_matches_torch(name, fn, kwargs, data, mask, reduction):
    kw_t = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    kw_p = {k: px.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    check(lambda *a: getattr(TF, fn)(*a, reduction=reduction, **kw_t),
          lambda *a: getattr(F, fn)(*a, reduction=reduction, **kw_p), data(),
          [bool(m) for m in mask], rtol=2e-5, atol=1e-5)


def test_functional_loss_errors():
    with pytest.raises(ValueError, match="var has negative"):
        F.gaussian_nll_loss(px.zeros(3), px.zeros(3), px.tensor([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="var is of incorrect size"):
        F.gaussian_nll_loss(px.zeros(3, 4), px.zeros(3, 4), px.ones(2, 2))
    with pytest.raises(ValueError, match="margin to be greater than 0"):
        F.triplet_margin_loss(px.zeros(2, 3), px.zeros(2, 3), px.zeros(2, 3), margin=0.0)
    with pytest.raises(ValueError, match="p == 1 and p == 2"):
        F.multi_margin_loss(px.zeros(2, 3), px.tensor([0, 1]), p=3)
    with pytest.raises(IndexError, match="out of bounds"):
        F.multi_margin_loss(px.zeros(2, 3), px.tensor([0, 3]))


@pytest.mark.parametrize("size_average, reduce", [(False, None), (None, False), (True, True),
                                                  (False, True), (True, False)])
@pytest.mark.parametrize("fn, data", [
    ("mse_loss", lambda: [f32(3, 4), f32(3, 4)]),
    ("binary_cross_entropy", lambda: [prob(3, 4), prob(3, 4)]),
    ("nll_loss", lambda: [f32(5, 3), labels(5, 3)]),
    ("cross_entropy", lambda: [f32(5, 3), labels(5, 3)]),
    ("kl_div", lambda: [np.log(prob(3, 4)), prob(3, 4)]),
    ("poisson_nll_loss", lambda: [f32(3, 4), prob(3, 4)]),
])
def test_legacy_size_average_and_reduce_are_honoured(fn, data, size_average, reduce):
    arrays = data()
    with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated"):
        ours = getattr(F, fn)(*[px.tensor(a) for a in arrays], size_average=size_average,
                              reduce=reduce)
    with pytest.warns(UserWarning):
        theirs = getattr(TF, fn)(*[torch.tensor(a) for a in arrays], size_average=size_average,
                                 reduce=reduce)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-6)
