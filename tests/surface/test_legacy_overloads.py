"""PyTorch's deprecated overloads (add(value, other), addcmul(value, t1, t2), var(input,
unbiased), std(input, dim, unbiased, keepdim), ...) give PyTorch's values and gradients."""
import warnings

import numpy as np
import pytest
import torch

import phalanx as px

RNG = np.random.default_rng(21)
A, B, C = (RNG.standard_normal((3, 4)) for _ in range(3))
C = np.abs(C) + 0.5


def _run(lib, expr):
    t = {name: lib.tensor(v, requires_grad=True) for name, v in (("a", A), ("b", B), ("c", C))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = eval(expr, {"torch": lib}, dict(t))
    outs = out if isinstance(out, tuple) else (out,)
    sum(o.sum() for o in outs).backward()
    return [o.detach().numpy() for o in outs], [t[k].grad for k in "abc"]


@pytest.mark.parametrize("expr", [
    "a.add(0.5, b)", "a.sub(2, b)", "torch.add(a, 2, b)", "torch.sub(a, 3, b)",
    "a.addcmul(0.1, b, c)", "a.addcdiv(0.1, b, c)", "torch.addcmul(a, 2, b, c)",
    "torch.addcdiv(a, 2, b, c)", "a.add(b, alpha=2)", "a.addcmul(b, c, value=3)",
    "a.var(True)", "a.var(1, False)", "a.std(0, True, True)", "torch.std(a, False)",
    "torch.var(a, 1, True, True)", "torch.std_mean(a, unbiased=False)",
    "torch.var_mean(a, 0, False)", "torch.std_mean(a, dim=1, correction=0)",
    "a.std(dim=0, unbiased=False, keepdim=True)"])
def test_matches_torch(expr):
    p_out, p_grads = _run(px, expr)
    t_out, t_grads = _run(torch, expr)
    for p, t in zip(p_out, t_out):
        np.testing.assert_allclose(p, t, rtol=1e-12)
    for p, t in zip(p_grads, t_grads):
        assert (p is None) == (t is None)
        if p is not None:
            np.testing.assert_allclose(p.numpy(), t.numpy(), rtol=1e-12)


@pytest.mark.parametrize("name, args", [
    ("add_", lambda lib: (-0.1, lib.tensor(B))), ("sub_", lambda lib: (0.5, lib.tensor(B))),
    ("addcmul_", lambda lib: (0.1, lib.tensor(B), lib.tensor(C))),
    ("addcdiv_", lambda lib: (0.1, lib.tensor(B), lib.tensor(C)))])
def test_in_place_old_forms_warn_like_torch(name, args):
    p, t = px.tensor(A), torch.tensor(A)
    with pytest.warns(UserWarning, match=f"overload of {name} is deprecated") as caught:
        assert getattr(p, name)(*args(px)) is p
    assert caught[0].filename == __file__       # the user's line, as PyTorch's warning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        getattr(t, name)(*args(torch))
    np.testing.assert_allclose(p.numpy(), t.numpy(), rtol=1e-12)
