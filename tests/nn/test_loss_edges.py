"""Every loss at the edges of its domain (probabilities exactly 0 and 1, huge logits, zero
targets, the kink of piecewise losses, zero vectors, every target ignored, zero class weights,
-inf logits): values and gradients equal PyTorch's, including where PyTorch gives inf or nan."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import phalanx as px
import phalanx.nn.functional as F

INF = np.inf


def a64(*v):
    return np.array(v, np.float64)


# (id, functional loss, inputs, which inputs get a gradient, keyword arguments; arrays among
# the keyword arguments become tensors of each framework)
CASES = [
    ("bce_at_0_and_1", "binary_cross_entropy",
     [a64(0, 1, 0, 1, 0.5, 0, 1), a64(0, 1, 1, 0, 0.3, 0.5, 0.5)], [1, 1],
     {"reduction": "none"}),
    ("bce_weighted_edges", "binary_cross_entropy",
     [a64(0, 1, 1e-30, 1 - 1e-16), a64(1, 0, 1, 0)], [1, 0], {"weight": a64(2, 0.5, 1, 3)}),
    ("bce_logits_huge_and_zero", "binary_cross_entropy_with_logits",
     [a64(-1e4, 1e4, -100, 100, 0, 0, 30, -30), a64(0, 1, 1, 0, 1, 0.5, 0.2, 0.7)], [1, 1],
     {}),
    ("bce_logits_pos_weight", "binary_cross_entropy_with_logits",
     [a64(-1e4, 1e4, 0, 50), a64(1, 0, 1, 0.5)], [1, 1], {"pos_weight": a64(3, 0.5, 2, 1)}),
    ("kl_zero_target", "kl_div", [a64(-1, -2, -0.5, -30), a64(0, 0.5, 0, 1)], [1, 0],
     {"reduction": "sum"}),
    ("kl_log_target_minus_inf", "kl_div", [a64(-1, -2, -0.5), a64(-INF, 0, -1)], [1, 1],
     {"log_target": True, "reduction": "sum"}),
    ("smooth_l1_at_kink", "smooth_l1_loss",
     [a64(0, 1, -1, 2, 0.5), a64(0, 0, 0, 1.5, -0.5)], [1, 1],
     {"beta": 0.5, "reduction": "none"}),
    ("huber_at_kink", "huber_loss", [a64(0, 1, -1, 2, 3), a64(0, 0, 0, 1, 1)], [1, 1],
     {"delta": 1.0, "reduction": "none"}),
    ("l1_zero_difference", "l1_loss", [a64(0, 1, -2), a64(0, 1, -2)], [1, 1], {}),
    ("mse_zero_difference", "mse_loss", [a64(0, 1), a64(0, 1)], [1, 1], {}),
    ("cosine_emb_zero_vectors", "cosine_embedding_loss",
     [np.zeros((3, 4)), np.array([[0, 0, 0, 0], [1, 2, 3, 4], [0, 0, 0, 0.]]),
      a64(1, -1, -1)], [1, 1, 0], {}),
    ("ce_minus_inf_logit", "cross_entropy",
     [np.array([[-INF, 0, 1], [2, -INF, -INF]]), np.array([1, 0])], [1, 0], {}),
    ("ce_minus_inf_logit_smoothing", "cross_entropy",
     [np.array([[-INF, 0, 1], [2, 0, 1]]), np.array([1, 0])], [1, 0],
     {"label_smoothing": 0.1}),
    ("ce_all_ignored", "cross_entropy", [np.ones((2, 3)), np.array([-100, -100])], [1, 0], {}),
    ("ce_zero_class_weights", "cross_entropy", [np.ones((2, 3)), np.array([0, 1])], [1, 0],
     {"weight": a64(0, 0, 1)}),
    ("ce_zero_weights_ignore_smoothing", "cross_entropy",
     [np.ones((2, 3)), np.array([0, -100])], [1, 0],
     {"weight": a64(0, 0, 1), "label_smoothing": 0.2}),
    ("nll_all_ignored", "nll_loss", [np.ones((2, 3)), np.array([-100, -100])], [1, 0], {}),
    ("nll_zero_class_weights", "nll_loss", [np.ones((2, 3)), np.array([0, 1])], [1, 0],
     {"weight": a64(0, 0, 1)}),
    ("poisson_log_input_zero_target", "poisson_nll_loss",
     [a64(-30, 0, 2, 50), a64(0, 0, 3, 1)], [1, 1], {"reduction": "none"}),
    # with full=True PyTorch's target gradient is nan at target 0 (0 * log 0 inside its
    # masked Stirling term); ours is finite, so only the input gradient is compared there
    ("poisson_rate_zero_full", "poisson_nll_loss",
     [a64(0, 1e-12, 2, 5), a64(0, 1, 1.5, 0)], [1, 0], {"log_input": False, "full": True}),
    ("poisson_full_targets_0_1_2", "poisson_nll_loss",
     [a64(0.5, -1, 1, 0), a64(0, 1, 2, 1.0000001)], [1, 0], {"full": True, "reduction": "sum"}),
    ("poisson_full_target_gradient", "poisson_nll_loss",
     [a64(0.5, -1, 1, 0), a64(0.5, 1, 2, 1.0000001)], [1, 1], {"full": True}),
    ("gaussian_nll_zero_var", "gaussian_nll_loss",
     [a64(0, 1, 2), a64(0, 0.5, 2), a64(0, 1e-9, 1)], [1, 1, 1], {"reduction": "none"}),
    ("gaussian_nll_homoscedastic_full", "gaussian_nll_loss",
     [np.ones((2, 3)), np.zeros((2, 3)), a64(0.0, 2.0)], [1, 1, 1], {"full": True}),
    ("margin_ranking_at_margin", "margin_ranking_loss",
     [a64(1, 0, 2, 0), a64(0, 1, 2, 0), a64(1, 1, -1, -1)], [1, 1, 0], {"margin": 1.0}),
    ("hinge_embedding_at_margin", "hinge_embedding_loss",
     [a64(0, 1, 2, 1, -1), a64(1, -1, -1, 1, -1)], [1, 0], {"margin": 1.0}),
    ("soft_margin_large", "soft_margin_loss",
     [a64(-700, 700, 0, 40), a64(1, 1, -1, -1)], [1, 0], {}),
    ("multilabel_soft_margin_huge", "multilabel_soft_margin_loss",
     [np.array([[-1e4, 1e4, 0], [0, 50, -50.]]), np.array([[1, 0, 1], [0, 1, 1.]])], [1, 0],
     {"weight": a64(1, 2, 0.5)}),
    ("triplet_zero_vectors", "triplet_margin_loss",
     [np.zeros((2, 3)), np.zeros((2, 3)), np.array([[0, 0, 0], [1, 1, 1.]])], [1, 1, 1],
     {"swap": True}),
    ("multi_margin_at_margin", "multi_margin_loss",
     [np.array([[1, 0, 0.], [0, 0, 0.], [2, 1, 3.]]), np.array([0, 1, 2])], [1, 0],
     {"weight": a64(1, 2, 3), "p": 2}),
    ("multi_margin_1d", "multi_margin_loss",
     [a64(0.5, 1.5, 0.5), np.array(1)], [1, 0], {"margin": 1.0}),
    ("ce_prob_target_with_zeros", "cross_entropy",
     [np.array([[1e3, 0, -1e3], [0, 0, 0.]]), np.array([[1, 0, 0], [0, 0, 1.]])], [1, 1], {}),
]


def _as(mod, a, grad=False):
    if isinstance(a, np.ndarray):
        return mod.tensor(a, requires_grad=bool(grad) and a.dtype.kind == "f")
    return a


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_loss_at_domain_edges_matches_torch(case):
    name, fn, inputs, grads, kwargs = case
    pts = [_as(px, a, g) for a, g in zip(inputs, grads)]
    tts = [_as(torch, a, g) for a, g in zip(inputs, grads)]
    with np.errstate(all="ignore"):
        pout = getattr(F, fn)(*pts, **{k: _as(px, v) for k, v in kwargs.items()})
        tout = getattr(TF, fn)(*tts, **{k: _as(torch, v) for k, v in kwargs.items()})
        np.testing.assert_allclose(pout.detach().numpy(), tout.detach().numpy(), rtol=1e-6,
                                   atol=1e-9)
        seed = np.linspace(0.5, 1.5, max(tout.numel(), 1)).reshape(tuple(tout.shape))
        pout.backward(px.tensor(seed))
        tout.backward(torch.tensor(seed))
    for p, t in zip(pts, tts):
        if isinstance(t, torch.Tensor) and t.requires_grad:
            np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=1e-6, atol=1e-9,
                                       err_msg=f"gradient of {name}")


def test_margin_losses_stay_finite_where_torch_overflows():
    # PyTorch computes log(1 + exp(-y x)) directly and gives inf for -y x = 1e4
    x = px.tensor([-1e4, 1e4], dtype=px.float64, requires_grad=True)
    loss = F.soft_margin_loss(x, px.tensor([1.0, -1.0], dtype=px.float64), reduction="none")
    np.testing.assert_allclose(loss.detach().numpy(), [1e4, 1e4])
    loss.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [-1.0, 1.0])
