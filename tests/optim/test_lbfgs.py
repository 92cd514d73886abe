"""L-BFGS against torch.optim.LBFGS: the iterates after each `step(closure)` on Rosenbrock,
an MLP and an LSTM regression, with and without the strong-Wolfe line search, the stopping
rules, the history limit and state dicts."""
import copy

import numpy as np
import pytest
import torch

import phalanx as px
from phalanx import optim


def rosenbrock(x, lib):
    """The n-dimensional Rosenbrock function (minimum 0 at all ones)."""
    return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()


def closure_for(opt, params, loss_fn):
    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss
    return closure


def run_pair(make_px, make_torch, opts, steps, rtol=1e-9, check_state=True):
    """Step both optimizers `steps` times, comparing the returned losses, the parameters and
    the evaluation counters after every step."""
    params, loss_fn = make_px()
    tparams, tloss_fn = make_torch()
    opt, topt = optim.LBFGS(params, **opts), torch.optim.LBFGS(tparams, **opts)
    closure, tclosure = closure_for(opt, params, loss_fn), closure_for(topt, tparams, tloss_fn)
    for step in range(steps):
        loss, tloss = opt.step(closure), topt.step(tclosure)
        assert float(loss) == pytest.approx(tloss.item(), rel=rtol, abs=1e-12), f"step {step}"
        for p, q in zip(params, tparams):
            np.testing.assert_allclose(p._data, q.detach().numpy(), rtol=rtol, atol=rtol * 1e-2,
                                       err_msg=f"step {step}")
        if check_state:
            ours, theirs = opt.state[params[0]], topt.state[tparams[0]]
            assert (ours["func_evals"], ours["n_iter"]) == \
                (theirs["func_evals"], theirs["n_iter"]), f"step {step}"
    return opt, topt, params, tparams


def rosenbrock_pair(start):
    def make_px():
        x = px.tensor(np.array(start, dtype=np.float64), requires_grad=True)
        return [x], lambda: rosenbrock(x, px)

    def make_torch():
        x = torch.tensor(np.array(start, dtype=np.float64), requires_grad=True)
        return [x], lambda: rosenbrock(x, torch)
    return make_px, make_torch


ROSENBROCK_OPTIONS = [
    dict(max_iter=8),
    dict(line_search_fn="strong_wolfe"),
    dict(lr=0.5, history_size=3, max_iter=7),
    dict(line_search_fn="strong_wolfe", history_size=2, max_iter=30, max_eval=35),
    dict(lr=0.1, max_iter=4, tolerance_change=1e-4),
]


@pytest.mark.parametrize("opts", ROSENBROCK_OPTIONS, ids=str)
@pytest.mark.parametrize("start", [[-1.2, 1.0], [-1.0, 0.5, 1.5, -0.3, 0.8, 2.0]],
                         ids=["2d", "6d"])
def test_rosenbrock_iterates_match_torch(opts, start):
    # one ulp moved at the start moves PyTorch's own 6-d iterates by ~1e-9: the tolerance
    opt, _, params, _ = run_pair(*rosenbrock_pair(start), opts, steps=3, rtol=1e-7)
    if opts.get("line_search_fn"):  # the line search makes real progress
        assert rosenbrock(params[0], px).item() < rosenbrock(px.tensor(start), px).item()


def test_strong_wolfe_converges_to_the_minimum():
    _, _, params, _ = run_pair(*rosenbrock_pair([-1.2, 1.0]),
                               dict(line_search_fn="strong_wolfe", max_iter=100,
                                    tolerance_grad=1e-10, tolerance_change=1e-14), steps=2)
    np.testing.assert_allclose(params[0]._data, [1.0, 1.0], atol=1e-6)


def model_pair(kind, seed=0):
    """A small regression model (MLP or LSTM) with the same weights in both libraries."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if kind == "mlp":
        x = rng.standard_normal((16, 3))
        y = np.sin(x.sum(1, keepdims=True))
        tmodel = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(),
                                     torch.nn.Linear(8, 1)).double()
        model = px.nn.Sequential(px.nn.Linear(3, 8), px.nn.Tanh(), px.nn.Linear(8, 1)).double()
    else:
        x = rng.standard_normal((4, 5, 2))  # (batch, time, features)
        y = np.cumsum(x[..., :1], axis=1)
        tmodel = torch.nn.LSTM(2, 3, batch_first=True).double()
        model = px.nn.LSTM(2, 3, batch_first=True).double()
    model.load_state_dict({k: px.tensor(v.detach().numpy()) for k, v in
                           tmodel.state_dict().items()})

    def forward(m, lib, inp):
        out = m(inp)
        return out[0][..., :1] if kind == "lstm" else out

    def make_px():
        inp, target = px.tensor(x), px.tensor(y)
        return (list(model.parameters()),
                lambda: px.nn.functional.mse_loss(forward(model, px, inp), target))

    def make_torch():
        inp, target = torch.tensor(x), torch.tensor(y)
        return (list(tmodel.parameters()),
                lambda: torch.nn.functional.mse_loss(forward(tmodel, torch, inp), target))
    return make_px, make_torch


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
@pytest.mark.parametrize("kind", ["mlp", "lstm"])
def test_model_regression_matches_torch(kind, line_search_fn):
    make_px, make_torch = model_pair(kind)
    opts = dict(lr=1 if line_search_fn else 0.5, max_iter=10, history_size=5,
                line_search_fn=line_search_fn)
    first = make_px()[1]().item()
    # forward passes agree to rounding, which 30 quasi-Newton iterations amplify (PyTorch's own
    # iterates move by ~1e-9 when its start moves by one ulp); the evaluation counts stay exact
    run_pair(make_px, make_torch, opts, steps=3, rtol=1e-5)
    assert make_px()[1]().item() < 0.5 * first


def test_loss_decreases_on_mlp():
    make_px, _ = model_pair("mlp", seed=1)
    params, loss_fn = make_px()
    opt = optim.LBFGS(params, line_search_fn="strong_wolfe")
    closure = closure_for(opt, params, loss_fn)
    first = opt.step(closure).item()
    for _ in range(3):
        opt.step(closure)
    assert loss_fn().item() < 0.2 * first


def test_stops_at_once_when_the_gradient_is_below_tolerance_grad():
    x = px.tensor([1.0, 1.0], dtype=px.float64, requires_grad=True)  # the minimum
    opt = optim.LBFGS([x])
    calls = []

    def closure():
        calls.append(1)
        opt.zero_grad()
        loss = rosenbrock(x, px)
        loss.backward()
        return loss
    assert opt.step(closure).item() == 0.0
    assert len(calls) == 1 and opt.state[x]["n_iter"] == 0
    np.testing.assert_array_equal(x._data, [1.0, 1.0])


def test_state_dict_round_trip_matches_uninterrupted_run():
    make_px, _ = rosenbrock_pair([-1.0, 0.5, 1.5, -0.3])
    params, loss_fn = make_px()
    opt = optim.LBFGS(params, history_size=3, max_iter=5, line_search_fn="strong_wolfe")
    closure = closure_for(opt, params, loss_fn)
    for _ in range(2):
        opt.step(closure)
    saved = copy.deepcopy(opt.state_dict())
    assert set(saved["state"][0]) >= {"d", "t", "old_dirs", "old_stps", "ro", "H_diag",
                                      "prev_flat_grad", "prev_loss", "func_evals", "n_iter"}
    assert isinstance(saved["state"][0]["d"], px.Tensor)
    resumed_x = px.tensor(params[0]._data.copy(), requires_grad=True)
    resumed = optim.LBFGS([resumed_x], history_size=3, max_iter=5,
                          line_search_fn="strong_wolfe")
    resumed.load_state_dict(saved)
    resumed_closure = closure_for(resumed, [resumed_x], lambda: rosenbrock(resumed_x, px))
    for _ in range(2):
        opt.step(closure)
        resumed.step(resumed_closure)
    np.testing.assert_array_equal(resumed_x._data, params[0]._data)


def test_loads_torch_state_dict():
    """Resuming from PyTorch's LBFGS state (tensors converted) continues PyTorch's run."""
    make_px, make_torch = rosenbrock_pair([-1.2, 1.0])
    tparams, tloss_fn = make_torch()
    topt = torch.optim.LBFGS(tparams, max_iter=4, line_search_fn="strong_wolfe")
    tclosure = closure_for(topt, tparams, tloss_fn)
    topt.step(tclosure)

    def convert(v):
        if isinstance(v, torch.Tensor):
            return px.tensor(v.detach().numpy().copy())
        if isinstance(v, list):
            return [convert(u) for u in v]
        return v
    tsd = topt.state_dict()
    sd = {"state": {k: {n: convert(v) for n, v in s.items()} for k, s in tsd["state"].items()},
          "param_groups": copy.deepcopy(tsd["param_groups"])}
    x = px.tensor(tparams[0].detach().numpy().copy(), requires_grad=True)
    opt = optim.LBFGS([x], max_iter=4, line_search_fn="strong_wolfe")
    opt.load_state_dict(sd)
    closure = closure_for(opt, [x], lambda: rosenbrock(x, px))
    for _ in range(2):
        opt.step(closure)
        topt.step(tclosure)
        np.testing.assert_allclose(x._data, tparams[0].detach().numpy(), rtol=1e-9)


def test_float32_follows_torch():
    def pair(lib):
        x = lib.tensor(np.array([-1.2, 1.0], dtype=np.float32), requires_grad=True)
        return [x], lambda: rosenbrock(x, lib)
    run_pair(lambda: pair(px), lambda: pair(torch),
             dict(line_search_fn="strong_wolfe", max_iter=5), steps=2, rtol=1e-4,
             check_state=False)


def test_errors():
    a, b = (px.tensor([1.0], requires_grad=True) for _ in range(2))
    with pytest.raises(ValueError, match="parameter groups"):
        optim.LBFGS([{"params": [a]}, {"params": [b]}])
    with pytest.raises(ValueError, match="parameter groups"):
        optim.LBFGS([a]).add_param_group({"params": [b]})
    with pytest.raises(RuntimeError, match="strong_wolfe"):
        optim.LBFGS([a], line_search_fn="backtracking")
    assert optim.LBFGS([a], max_iter=8).defaults["max_eval"] == 10
