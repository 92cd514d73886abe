"""ctc_loss, multilabel_margin_loss, triplet_margin_with_distance_loss (functional and
modules) and NLLLoss2d against PyTorch: values and gradients."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import phalanx as px
import phalanx.nn as nn
import phalanx.nn.functional as F

RNG = np.random.default_rng(9)


def _both(a):
    return px.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)


def _check(p_out, t_out, pairs, cot=None):
    np.testing.assert_allclose(p_out.detach().numpy(), t_out.detach().numpy(), rtol=1e-10,
                               atol=1e-12)
    cot = RNG.standard_normal(tuple(t_out.shape)) if cot is None else cot
    (p_out * px.tensor(cot)).sum().backward()
    (t_out * torch.tensor(cot)).sum().backward()
    for p, t in pairs:
        np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("zero_infinity", [False, True])
def test_ctc_through_log_softmax_padded_targets(reduction, zero_infinity):
    t_len, n, c = 12, 4, 6
    logits = RNG.standard_normal((t_len, n, c))
    targets = RNG.integers(1, c, (n, 5))
    targets[1, :2] = 3                      # a repeated label needs a blank between
    in_len, tgt_len = [12, 10, 12, 7], [5, 3, 0, 4]
    p, t = _both(logits)
    _check(F.ctc_loss(p.log_softmax(2), px.tensor(targets), in_len, tgt_len,
                      reduction=reduction, zero_infinity=zero_infinity),
           TF.ctc_loss(t.log_softmax(2), torch.tensor(targets), in_len, tgt_len,
                       reduction=reduction, zero_infinity=zero_infinity), [(p, t)])


def test_ctc_leaf_log_probs_concatenated_targets_other_blank():
    t_len, n, c = 9, 3, 5
    lp = torch.randn(t_len, n, c, dtype=torch.float64).log_softmax(2).numpy()
    tgt_len = np.array([3, 1, 4])
    flat = RNG.integers(0, 4, int(tgt_len.sum()))
    p, t = _both(lp)
    loss = nn.CTCLoss(blank=4)
    _check(loss(p, px.tensor(flat), px.tensor([9, 8, 9]), px.tensor(tgt_len)),
           torch.nn.CTCLoss(blank=4)(t, torch.tensor(flat), torch.tensor([9, 8, 9]),
                                     torch.tensor(tgt_len)), [(p, t)], cot=np.array(1.0))


def test_ctc_impossible_alignment_and_unbatched():
    lp = torch.randn(3, 2, 4, dtype=torch.float64).log_softmax(2).numpy()
    targets = np.array([[1, 2, 3, 1], [1, 1, 2, 2]])
    p, t = _both(lp)
    a = F.ctc_loss(p, px.tensor(targets), [3, 3], [4, 1], reduction="none", zero_infinity=True)
    b = TF.ctc_loss(t, torch.tensor(targets), [3, 3], [4, 1], reduction="none",
                    zero_infinity=True)
    assert a[0].item() == 0.0
    _check(a, b, [(p, t)])
    inf = F.ctc_loss(px.tensor(lp), px.tensor(targets), [3, 3], [4, 1], reduction="none")
    assert np.isinf(inf[0].item())
    p, t = _both(lp[:, 0])
    _check(F.ctc_loss(p, px.tensor([1, 2]), [3], [2]),
           TF.ctc_loss(t, torch.tensor([1, 2]), [3], [2]), [(p, t)], cot=np.array(1.0))


def test_ctc_errors_name_the_problem():
    lp = px.randn(4, 2, 3).log_softmax(2)
    with pytest.raises(RuntimeError, match="blank"):
        F.ctc_loss(lp, px.tensor([[1, 0], [1, 2]]), [4, 4], [2, 2])
    with pytest.raises(RuntimeError, match="input_lengths"):
        F.ctc_loss(lp, px.tensor([[1, 2], [1, 2]]), [5, 4], [2, 2])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_multilabel_margin_loss(reduction):
    x = RNG.standard_normal((3, 5))
    y = np.array([[3, 0, -1, 1, 1], [1, 1, 2, 4, -1], [-1, 0, 0, 0, 0]])
    p, t = _both(x)
    _check(F.multilabel_margin_loss(p, px.tensor(y), reduction=reduction),
           TF.multilabel_margin_loss(t, torch.tensor(y), reduction=reduction), [(p, t)])
    p, t = _both(x[0])
    _check(nn.MultiLabelMarginLoss()(p, px.tensor(y[0])),
           torch.nn.MultiLabelMarginLoss()(t, torch.tensor(y[0])), [(p, t)],
           cot=np.array(1.0))


@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize("custom", [False, True])
def test_triplet_margin_with_distance_loss(swap, custom):
    arrays = [RNG.standard_normal((6, 4)) for _ in range(3)]
    pairs = [_both(a) for a in arrays]
    P, T = [p for p, _ in pairs], [t for _, t in pairs]
    p_dist = (lambda a, b: 1 - F.cosine_similarity(a, b)) if custom else None
    t_dist = (lambda a, b: 1 - TF.cosine_similarity(a, b)) if custom else None
    _check(nn.TripletMarginWithDistanceLoss(distance_function=p_dist, margin=0.7,
                                            swap=swap)(*P),
           torch.nn.TripletMarginWithDistanceLoss(distance_function=t_dist, margin=0.7,
                                                  swap=swap)(*T), pairs, cot=np.array(1.0))
    with pytest.raises(ValueError, match="margin"):
        F.triplet_margin_with_distance_loss(*P, margin=0.0)


def test_nll_loss2d_is_nll_loss():
    x = RNG.standard_normal((2, 3, 4, 4))
    y = RNG.integers(0, 3, (2, 4, 4))
    p, t = _both(x)
    w = np.array([0.2, 1.0, 2.0])
    with pytest.warns(FutureWarning, match="NLLLoss2d"):
        t_loss = torch.nn.NLLLoss2d(weight=torch.tensor(w))
    with pytest.warns(FutureWarning, match="NLLLoss2d"):
        p_loss = nn.NLLLoss2d(weight=px.tensor(w))
    _check(p_loss(p.log_softmax(1), px.tensor(y)),
           t_loss(t.log_softmax(1), torch.tensor(y)), [(p, t)], cot=np.array(1.0))
