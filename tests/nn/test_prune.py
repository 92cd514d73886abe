"""`nn.utils.prune` against PyTorch's: the same masks, pruned weights, state-dict entries,
gradients and removal, for the deterministic methods on the same weights; counts and
structure for the random ones."""
import numpy as np
import pytest
import torch
import torch.nn.utils.prune as tprune

import phalanx as px
import phalanx.nn as nn
import phalanx.nn.utils.prune as prune


def pair(kind="linear", seed=0):
    rng = np.random.default_rng(seed)
    if kind == "linear":
        t, p = torch.nn.Linear(6, 5), nn.Linear(6, 5)
    else:
        t, p = torch.nn.Conv2d(3, 4, 3), nn.Conv2d(3, 4, 3)
    for q in t.parameters():
        q.data = torch.tensor(rng.standard_normal(tuple(q.shape)).astype(np.float32))
    p.load_state_dict({k: v.numpy() for k, v in t.state_dict().items()})
    return p, t


def same_state(p, t):
    ours, theirs = p.state_dict(), t.state_dict()
    assert list(ours) == list(theirs)
    for k in theirs:
        np.testing.assert_array_equal(ours[k].numpy(), theirs[k].numpy(), err_msg=k)
    np.testing.assert_array_equal(p.weight.detach().numpy(), t.weight.detach().numpy())


# each step: (method name, kwargs); several steps chain in a PruningContainer
CASES = {
    "l1 fraction": [("l1_unstructured", dict(amount=0.3))],
    "l1 count": [("l1_unstructured", dict(amount=7))],
    "l2 rows": [("ln_structured", dict(amount=0.4, n=2, dim=0))],
    "l1 columns": [("ln_structured", dict(amount=2, n=1, dim=1))],
    "inf last dim": [("ln_structured", dict(amount=0.5, n=float("inf"), dim=-1))],
    "fro": [("ln_structured", dict(amount=1, n="fro", dim=0))],
    "iterative": [("l1_unstructured", dict(amount=0.2)),
                  ("ln_structured", dict(amount=0.5, n=2, dim=0)),
                  ("l1_unstructured", dict(amount=0.5))],
    "identity then l1": [("identity", {}), ("l1_unstructured", dict(amount=4))],
    "nothing": [("l1_unstructured", dict(amount=0))],
}


@pytest.mark.parametrize("kind", ["linear", "conv"])
@pytest.mark.parametrize("case", list(CASES))
def test_deterministic_pruning_matches_pytorch(kind, case):
    p, t = pair(kind)
    for name, kwargs in CASES[case]:
        getattr(prune, name)(p, "weight", **kwargs)
        if kind == "conv" and kwargs.get("n") == "fro":   # PyTorch's 'fro' takes matrices only;
            kwargs = dict(kwargs, n=2)                     # over 3 dims it is the 2-norm
        getattr(tprune, name)(t, "weight", **kwargs)
        same_state(p, t)
    x = np.random.default_rng(1).standard_normal((2, 6) if kind == "linear"
                                                  else (2, 3, 5, 5)).astype(np.float32)
    p(px.tensor(x)).square().sum().backward()
    t(torch.tensor(x)).square().sum().backward()
    np.testing.assert_allclose(p.weight_orig.grad.numpy(), t.weight_orig.grad.numpy(),
                               rtol=1e-5, atol=1e-4)     # float32 sums of terms up to ~50
    assert prune.is_pruned(p) and tprune.is_pruned(t)
    prune.remove(p, "weight")
    tprune.remove(t, "weight")
    same_state(p, t)
    assert not prune.is_pruned(p) and isinstance(p.weight, nn.Parameter)


def test_importance_scores_custom_masks_and_global_pruning():
    (p1, t1), (p2, t2) = pair("linear", 2), pair("conv", 3)
    scores = np.random.default_rng(4).standard_normal((5, 6)).astype(np.float32)
    prune.l1_unstructured(p1, "bias", amount=2, importance_scores=px.tensor([5., 1, 4, 2, 3]))
    tprune.l1_unstructured(t1, "bias", amount=2,
                           importance_scores=torch.tensor([5., 1, 4, 2, 3]))
    prune.ln_structured(p1, "weight", 0.4, 2, 0, importance_scores=px.tensor(scores))
    tprune.ln_structured(t1, "weight", 0.4, 2, 0, importance_scores=torch.tensor(scores))
    mask = (np.arange(4)[:, None, None, None] % 2 == 0) * np.ones((4, 3, 3, 3), np.float32)
    prune.custom_from_mask(p2, "weight", px.tensor(mask))
    tprune.custom_from_mask(t2, "weight", torch.tensor(mask))
    for p, t in ((p1, t1), (p2, t2)):
        same_state(p, t)
    prune.global_unstructured([(p1, "weight"), (p2, "weight"), (p2, "bias")],
                              pruning_method=prune.L1Unstructured, amount=0.25)
    tprune.global_unstructured([(t1, "weight"), (t2, "weight"), (t2, "bias")],
                               pruning_method=tprune.L1Unstructured, amount=0.25)
    for p, t in ((p1, t1), (p2, t2)):
        same_state(p, t)


def test_random_pruning_counts_and_structure():
    px.manual_seed(0)
    p, _ = pair("conv")
    prune.random_unstructured(p, "weight", amount=0.25)
    assert int((p.weight_mask.numpy() == 0).sum()) == round(0.25 * 108)
    prune.random_structured(p, "weight", amount=2, dim=0)
    pruned = p.weight_mask.numpy().reshape(4, -1)
    assert int((~pruned.any(axis=1)).sum()) == 2            # two whole output channels
    p2, q = pair("conv")[0], pair("conv")[0]
    px.manual_seed(0)
    prune.random_unstructured(p2, "weight", amount=0.25)
    px.manual_seed(0)                                    # the global generator decides
    prune.random_unstructured(q, "weight", amount=0.25)
    np.testing.assert_array_equal(p2.weight_mask.numpy(), q.weight_mask.numpy())


def test_a_pruned_state_dict_loads_into_a_pruned_model_and_round_trips(tmp_path):
    p, _ = pair("linear")
    prune.l1_unstructured(p, "weight", amount=0.5)
    px.save(p.state_dict(), tmp_path / "pruned.safetensors")
    q = nn.Linear(6, 5)
    prune.identity(q, "weight")
    q.load_state_dict(px.load(tmp_path / "pruned.safetensors"))
    x = px.ones(1, 6)
    np.testing.assert_array_equal(q(x).detach().numpy(), p(x).detach().numpy())
    with pytest.raises(RuntimeError, match="weight_orig"):
        nn.Linear(6, 5).load_state_dict(p.state_dict())


@pytest.mark.parametrize("call, error, match", [
    (lambda m: prune.l1_unstructured(m, "weight", amount=1.5), ValueError, "range"),
    (lambda m: prune.l1_unstructured(m, "weight", amount=-1), ValueError, "non-negative"),
    (lambda m: prune.l1_unstructured(m, "weight", amount="a"), TypeError, "Invalid type"),
    (lambda m: prune.l1_unstructured(m, "weight", amount=31), ValueError, "smaller than"),
    (lambda m: prune.ln_structured(m, "bias", 1, 2, 0), ValueError, "multidimensional"),
    (lambda m: prune.ln_structured(m, "weight", 1, 2, 2), IndexError, "Invalid index"),
    (lambda m: prune.remove(m, "weight"), ValueError, "has to be pruned"),
    (lambda m: prune.l1_unstructured(m, "weight", 1, importance_scores=px.ones(2)),
     AssertionError, "same shape"),
    (lambda m: prune.global_unstructured([(m, "weight")], prune.LnStructured, amount=1, n=2),
     TypeError, "unstructured"),
])
def test_bad_input_is_refused_and_leaves_the_module_intact(call, error, match):
    m, _ = pair("linear")
    with pytest.raises(error, match=match):
        call(m)
    assert isinstance(m.weight, nn.Parameter) and not prune.is_pruned(m)
