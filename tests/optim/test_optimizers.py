"""Optimizers against torch.optim: trajectories over every option, param groups, state dicts
(ours and PyTorch's), hooks, closures and errors."""
import copy

import numpy as np
import pytest
import torch

import phalanx as px
from phalanx import optim

SHAPES = [(3, 4), (5,), ()]

# (optimizer name, options): every option of every optimizer, alone and combined
CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.1, weight_decay=0.1)),
    ("SGD", dict(lr=0.1, maximize=True)),
    ("SGD", dict(lr=0.05, momentum=0.8, dampening=0.1, weight_decay=0.2, maximize=True)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.2, maximize=True)),
    ("Adam", dict()),
    ("Adam", dict(lr=0.05, amsgrad=True)),
    ("Adam", dict(lr=0.05, weight_decay=0.1)),
    ("Adam", dict(lr=0.05, maximize=True)),
    ("Adam", dict(lr=0.02, betas=(0.8, 0.95), eps=1e-6)),
    ("Adam", dict(lr=0.02, betas=(0.3, 0.6), eps=1e-3, weight_decay=0.3, amsgrad=True,
                  maximize=True)),
    ("Adam", dict(lr=0.02, weight_decay=0.1, decoupled_weight_decay=True)),
    ("AdamW", dict()),
    ("AdamW", dict(lr=0.05, weight_decay=0.1, amsgrad=True)),
    ("AdamW", dict(lr=0.05, weight_decay=0.0, maximize=True)),
    ("AdamW", dict(lr=0.02, betas=(0.7, 0.9), eps=1e-4, weight_decay=0.5, amsgrad=True,
                   maximize=True)),
    ("RMSprop", dict()),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.01, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-6, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, maximize=True)),
    ("RMSprop", dict(lr=0.01, alpha=0.4, centered=True, momentum=0.5, weight_decay=0.2,
                     maximize=True)),
    ("Adagrad", dict()),
    ("Adagrad", dict(lr=0.1, lr_decay=0.1)),
    ("Adagrad", dict(lr=0.1, initial_accumulator_value=0.5)),
    ("Adagrad", dict(lr=0.1, weight_decay=0.1, eps=1e-6)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=0.1, initial_accumulator_value=0.2,
                     maximize=True)),
    ("Adadelta", dict()),
    ("Adadelta", dict(lr=0.5, rho=0.5, eps=1e-3)),
    ("Adadelta", dict(weight_decay=0.1, maximize=True)),
    ("Adamax", dict()),
    ("Adamax", dict(lr=0.05, betas=(0.5, 0.8), eps=1e-4)),
    ("Adamax", dict(lr=0.05, weight_decay=0.2, maximize=True)),
    ("NAdam", dict()),
    ("NAdam", dict(lr=0.05, momentum_decay=0.1, betas=(0.7, 0.9), eps=1e-5)),
    ("NAdam", dict(lr=0.05, weight_decay=0.1)),
    ("NAdam", dict(lr=0.05, weight_decay=0.1, decoupled_weight_decay=True, maximize=True)),
    ("RAdam", dict()),
    ("RAdam", dict(lr=0.05, betas=(0.5, 0.8))),  # rho_t passes 5 within the trajectory
    ("RAdam", dict(lr=0.05, betas=(0.3, 0.5), weight_decay=0.1, maximize=True)),
    ("RAdam", dict(lr=0.05, betas=(0.3, 0.5), weight_decay=0.1, decoupled_weight_decay=True)),
    ("ASGD", dict()),
    ("ASGD", dict(lr=0.1, lambd=0.1, alpha=0.5, t0=3)),  # averaging starts within 10 steps
    ("ASGD", dict(lr=0.1, t0=0, weight_decay=0.1, maximize=True)),
    ("Rprop", dict()),
    ("Rprop", dict(lr=0.1, etas=(0.3, 1.5), step_sizes=(0.01, 0.2))),
    ("Rprop", dict(lr=0.05, maximize=True)),
    ("Adafactor", dict()),
    ("Adafactor", dict(lr=0.05, beta2_decay=-0.5, eps=(1e-6, 1e-2), d=1.5)),
    ("Adafactor", dict(lr=0.05, weight_decay=0.1, maximize=True)),
    # the implementation options PyTorch honours by picking a kernel: the same update
    ("SGD", dict(lr=0.1, momentum=0.9, foreach=True)),
    ("Adam", dict(lr=0.05, fused=True)),
    ("AdamW", dict(lr=0.05, foreach=False)),
    ("Adagrad", dict(lr=0.1, fused=True)),
    ("RMSprop", dict(lr=0.01, foreach=True)),
    ("NAdam", dict(lr=0.05, foreach=True)),
]


def case_id(case):
    name, opts = case
    return name + "-" + ",".join(f"{k}={v}" for k, v in opts.items())


class Pair:
    """The same parameters in phalanx and torch, and a loss landscape that feeds both the same
    gradients for the same parameter values: g = curvature * p + noise[step]."""

    def __init__(self, dtype=np.float64, seed=0, shapes=SHAPES):
        rng = np.random.default_rng(seed)
        init = [rng.standard_normal(s).astype(dtype) for s in shapes]
        self.curvature = [rng.uniform(0.5, 2.0, s).astype(dtype) for s in shapes]
        self.noise = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(20)]
        self.px = [px.tensor(a.copy(), requires_grad=True) for a in init]
        self.torch = [torch.tensor(a.copy(), requires_grad=True) for a in init]

    def grads(self, values, t):
        return [c * np.asarray(v) + n for c, v, n in zip(self.curvature, values, self.noise[t])]

    def set_grads(self, t):
        for p, g in zip(self.px, self.grads([p._data for p in self.px], t)):
            p.grad = px.tensor(g)
        for p, g in zip(self.torch, self.grads([p.detach().numpy() for p in self.torch], t)):
            p.grad = torch.tensor(g)

    def assert_close(self, rtol=1e-10, atol=1e-12):
        for p, q in zip(self.px, self.torch):
            np.testing.assert_allclose(p._data, q.detach().numpy(), rtol=rtol, atol=atol)


def make(name, params, opts, lib):
    return getattr(optim if lib == "px" else torch.optim, name)(params, **opts)


def run_steps(pair, opt, topt, steps, start=0):
    for t in range(start, start + steps):
        pair.set_grads(t)
        opt.step()
        topt.step()


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_trajectory_matches_torch(case):
    name, opts = case
    pair = Pair()
    opt, topt = make(name, pair.px, opts, "px"), make(name, pair.torch, opts, "torch")
    for t in range(10):
        run_steps(pair, opt, topt, 1, start=t)
        pair.assert_close()
    for p, q in zip(pair.px, pair.torch):  # the state too, entry by entry
        ours, theirs = opt.state[p], topt.state[q]
        assert set(ours) == set(theirs)
        for key in theirs:
            np.testing.assert_allclose(np.asarray(ours[key]._data), theirs[key].numpy(),
                                       rtol=1e-10, atol=1e-12, err_msg=key)


@pytest.mark.parametrize("name,opts", [("SGD", dict(lr=0.1, momentum=0.9)),
                                       ("Adam", dict(lr=0.01)), ("RMSprop", dict(lr=0.01)),
                                       ("AdamW", dict(lr=0.01)), ("Adagrad", dict(lr=0.1)),
                                       ("Adadelta", dict()), ("Adamax", dict(lr=0.01)),
                                       ("NAdam", dict(lr=0.01)), ("RAdam", dict(lr=0.05)),
                                       ("ASGD", dict(lr=0.05, t0=3)), ("Rprop", dict()),
                                       ("Adafactor", dict())])
def test_float32_stays_float32(name, opts):
    pair = Pair(dtype=np.float32)
    opt, topt = make(name, pair.px, opts, "px"), make(name, pair.torch, opts, "torch")
    run_steps(pair, opt, topt, 10)
    pair.assert_close(rtol=2e-5, atol=2e-6)
    assert all(p.dtype == px.float32 for p in pair.px)
    assert all(s.dtype in (px.float32,) for st in opt.state.values() for s in st.values())


def test_param_groups_with_different_options():
    pair = Pair()
    groups = lambda ps: [  # noqa: E731
        {"params": [ps[0]]},
        {"params": [ps[1]], "lr": 0.01, "betas": (0.5, 0.9), "amsgrad": True},
        {"params": [ps[2]], "weight_decay": 0.3, "maximize": True}]
    opt = optim.Adam(groups(pair.px), lr=0.05)
    topt = torch.optim.Adam(groups(pair.torch), lr=0.05)
    run_steps(pair, opt, topt, 10)
    pair.assert_close()
    assert [g["lr"] for g in opt.param_groups] == [0.05, 0.01, 0.05]


def test_add_param_group_later_and_params_without_grad():
    pair = Pair()
    opt = optim.SGD(pair.px[:2], lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(pair.torch[:2], lr=0.1, momentum=0.9)
    run_steps(pair, opt, topt, 3)
    opt.add_param_group({"params": pair.px[2], "lr": 0.3})
    topt.add_param_group({"params": pair.torch[2], "lr": 0.3})
    run_steps(pair, opt, topt, 3, start=3)
    pair.set_grads(6)
    pair.px[1].grad = None  # a parameter without a gradient is left alone, state and all
    pair.torch[1].grad = None
    before = pair.px[1]._data.copy()
    opt.step()
    topt.step()
    np.testing.assert_array_equal(pair.px[1]._data, before)
    pair.assert_close()


def test_lr_changed_through_param_groups():
    pair = Pair()
    opt, topt = optim.SGD(pair.px, lr=0.1), torch.optim.SGD(pair.torch, lr=0.1)
    for t in range(6):
        opt.param_groups[0]["lr"] = topt.param_groups[0]["lr"] = 0.1 / (t + 1)
        run_steps(pair, opt, topt, 1, start=t)
    pair.assert_close()


def test_step_bumps_versions_and_writes_in_place():
    p = px.tensor([1.0, 2.0], requires_grad=True)
    arr = p._data
    opt = optim.Adam([p], lr=0.1)
    p.grad = px.tensor([0.5, -0.5])
    grad_before = p.grad._data.copy()
    opt.step()
    assert p._version[0] == 1 and p._data is arr
    np.testing.assert_array_equal(p.grad._data, grad_before)  # grads are never written
    # an op that saved p for backward sees that p changed under it
    q = px.tensor([1.0, 2.0], requires_grad=True)
    loss = (q * q).sum()
    q.grad = px.tensor([1.0, 1.0])
    optim.SGD([q], lr=0.1).step()
    with pytest.raises(RuntimeError):
        loss.backward()


def test_maximize_and_weight_decay_do_not_touch_grad():
    for opt_cls, opts in [(optim.SGD, dict(lr=0.1, weight_decay=0.5, maximize=True)),
                          (optim.Adagrad, dict(maximize=True, weight_decay=0.1)),
                          (optim.RMSprop, dict(maximize=True))]:
        p = px.tensor([1.0, -2.0, 3.0], requires_grad=True)
        p.grad = px.tensor([0.1, 0.2, 0.3])
        before = p.grad._data.copy()
        opt_cls([p], **opts).step()
        np.testing.assert_array_equal(p.grad._data, before)


def test_zero_grad():
    p = px.tensor([1.0, 2.0], requires_grad=True)
    opt = optim.SGD([p], lr=0.1)
    (p * p).sum().backward()
    grad = p.grad
    opt.zero_grad(set_to_none=False)
    assert p.grad is grad and np.all(grad._data == 0) and grad._version[0] > 0
    (p * p).sum().backward()  # accumulates into the zeroed buffer
    np.testing.assert_allclose(p.grad._data, [2.0, 4.0])
    opt.zero_grad()
    assert p.grad is None


def test_closure_is_evaluated_with_grad_and_its_loss_returned():
    p = px.tensor([1.0, 2.0], requires_grad=True)
    opt = optim.SGD([p], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    with px.no_grad():
        loss = opt.step(closure)
    assert loss.item() == 5.0
    np.testing.assert_allclose(p._data, [0.8, 1.6])


def test_step_hooks():
    p = px.tensor([1.0], requires_grad=True)
    opt = optim.Adam([p])
    calls = []
    pre = opt.register_step_pre_hook(lambda o, a, k: calls.append(("pre", o is opt)))
    opt.register_step_post_hook(lambda o, a, k: calls.append(("post", p._version[0])))
    p.grad = px.tensor([1.0])
    opt.step()
    assert calls == [("pre", True), ("post", 1)]
    pre.remove()
    opt.step()
    assert calls[-1] == ("post", 2) and len(calls) == 3


def test_subclass_written_the_pytorch_way():
    class SignSGD(optim.Optimizer):
        def __init__(self, params, lr=optim.optimizer.required):
            super().__init__(params, {"lr": lr})

        def step(self, closure=None):
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p._data -= group["lr"] * np.sign(p.grad._data)
                        self.state[p]["n"] = self.state[p].get("n", 0) + 1

    p = px.tensor([1.0, -1.0], requires_grad=True)
    opt = SignSGD([p], lr=0.5)
    seen = []
    opt.register_step_post_hook(lambda o, a, k: seen.append(1))
    p.grad = px.tensor([3.0, -0.1])
    opt.step()
    np.testing.assert_allclose(p._data, [0.5, -0.5])
    assert seen == [1] and opt.state_dict()["state"] == {0: {"n": 1}}
    with pytest.raises(ValueError, match="required optimization parameter lr"):
        SignSGD([p])


# ---- state dicts -------------------------------------------------------------------------

def to_torch_state(sd):
    return {"state": {k: {n: torch.from_numpy(np.array(v._data)) if isinstance(v, px.Tensor)
                          else v for n, v in s.items()} for k, s in sd["state"].items()},
            "param_groups": copy.deepcopy(sd["param_groups"])}


def to_px_state(sd):
    return {"state": {k: {n: px.tensor(v.numpy()) if isinstance(v, torch.Tensor) else v
                          for n, v in s.items()} for k, s in sd["state"].items()},
            "param_groups": copy.deepcopy(sd["param_groups"])}


STATE_CASES = [("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
               ("Adam", dict(lr=0.05, amsgrad=True, weight_decay=0.1)),
               ("AdamW", dict(lr=0.05)),
               ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5)),
               ("Adagrad", dict(lr=0.1, lr_decay=0.01)),
               ("Adadelta", dict(lr=0.5)),
               ("Adamax", dict(lr=0.05)),
               ("NAdam", dict(lr=0.05, weight_decay=0.1)),
               ("RAdam", dict(lr=0.05, betas=(0.5, 0.8))),
               ("ASGD", dict(lr=0.1, t0=2)),
               ("Rprop", dict(lr=0.05)),
               ("Adafactor", dict(lr=0.05))]


@pytest.mark.parametrize("case", STATE_CASES, ids=case_id)
def test_state_dict_round_trip_mid_trajectory(case):
    name, opts = case
    pair = Pair()
    opt, topt = make(name, pair.px, opts, "px"), make(name, pair.torch, opts, "torch")
    run_steps(pair, opt, topt, 5)
    sd = opt.state_dict()
    # a fresh optimizer over a copy of the parameters, resumed from the state dict
    resumed_params = [px.tensor(p._data.copy(), requires_grad=True) for p in pair.px]
    resumed = make(name, resumed_params, {**opts, "lr": 123.0}, "px")  # options come from sd
    resumed.load_state_dict(sd)
    assert resumed.param_groups[0]["lr"] == opts["lr"]
    for t in range(5, 10):
        pair.set_grads(t)
        for p, q in zip(resumed_params, pair.px):
            p.grad = q.grad
        opt.step()
        topt.step()
        resumed.step()
    pair.assert_close()
    for p, q in zip(resumed_params, pair.px):
        if name in ("NAdam", "ASGD"):
            # their float32 scalar state is cast to the parameter's dtype on load, as in
            # PyTorch, so the resumed run rounds differently from then on
            np.testing.assert_allclose(p._data, q._data, rtol=1e-6)
        else:
            np.testing.assert_array_equal(p._data, q._data)


@pytest.mark.parametrize("case", STATE_CASES, ids=case_id)
def test_state_dicts_cross_between_torch_and_phalanx(case):
    name, opts = case
    pair = Pair()
    topt = make(name, pair.torch, opts, "torch")
    opt = make(name, pair.px, opts, "px")
    run_steps(pair, opt, topt, 4)
    # torch -> phalanx: load into an optimizer that has not stepped
    fresh = [px.tensor(p.detach().numpy().copy(), requires_grad=True) for p in pair.torch]
    ours = make(name, fresh, opts, "px")
    ours.load_state_dict(to_px_state(topt.state_dict()))
    # phalanx -> torch
    tfresh = [torch.tensor(p._data.copy(), requires_grad=True) for p in pair.px]
    theirs = make(name, tfresh, opts, "torch")
    theirs.load_state_dict(to_torch_state(opt.state_dict()))
    for t in range(4, 8):
        pair.set_grads(t)
        for p, q in zip(fresh, pair.px):
            p.grad = q.grad
        for p, q in zip(tfresh, pair.torch):
            p.grad = q.grad.clone()
        opt.step(), topt.step(), ours.step(), theirs.step()
    pair.assert_close()
    # NAdam's and ASGD's float32 scalar state is cast to float64 on load (as in PyTorch): the
    # resumed runs agree with each other exactly but round differently from the uninterrupted
    rtol = 1e-6 if name in ("NAdam", "ASGD") else 1e-10
    for p, q, r in zip(fresh, pair.px, tfresh):
        np.testing.assert_allclose(p._data, q._data, rtol=rtol, atol=1e-12)
        np.testing.assert_allclose(r.detach().numpy(), q._data, rtol=rtol, atol=1e-12)
        np.testing.assert_allclose(p._data, r.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_state_dict_format():
    pair = Pair()
    opt = optim.Adam([{"params": pair.px[:2]}, {"params": pair.px[2:], "lr": 0.5}])
    for p in pair.px[1:]:
        p.grad = px.ones_like(p)
    opt.step()
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2]]
    assert sd["param_groups"][1]["lr"] == 0.5
    assert sorted(sd["state"]) == [1, 2]  # parameter 0 had no gradient: no state
    step = sd["state"][1]["step"]
    assert isinstance(step, px.Tensor) and step.dtype == px.float32 and step.shape == ()
    assert step.item() == 1.0
    assert all(isinstance(v, px.Tensor) for s in sd["state"].values() for v in s.values())


def test_load_state_dict_casts_to_param_dtype_and_copies():
    p = px.tensor([1.0, 2.0], dtype=px.float32, requires_grad=True)
    opt = optim.Adam([p])
    saved = {"state": {0: {"step": px.tensor(3.0, dtype=px.float64),
                           "exp_avg": px.tensor([0.1, 0.2], dtype=px.float64),
                           "exp_avg_sq": px.tensor([0.3, 0.4], dtype=px.float64)}},
             "param_groups": [dict(opt.state_dict()["param_groups"][0])]}
    opt.load_state_dict(saved)
    state = opt.state[p]
    assert state["exp_avg"].dtype == px.float32 and state["step"].dtype == px.float32
    assert state["exp_avg"]._data is not saved["state"][0]["exp_avg"]._data
    p.grad = px.tensor([1.0, 1.0], dtype=px.float32)
    opt.step()
    assert state["step"].item() == 4.0
    np.testing.assert_allclose(saved["state"][0]["exp_avg"]._data, [0.1, 0.2])  # not aliased


def test_load_state_dict_errors():
    a, b = (px.tensor([1.0], requires_grad=True) for _ in range(2))
    opt = optim.SGD([a, b], lr=0.1)
    two_groups = optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.1)
    with pytest.raises(ValueError, match="2 parameter groups but the optimizer has 1"):
        opt.load_state_dict(two_groups.state_dict())
    one = optim.SGD([a], lr=0.1)
    with pytest.raises(ValueError, match="has 2 parameters but the optimizer's has 1"):
        one.load_state_dict(opt.state_dict())


# ---- errors ------------------------------------------------------------------------------

def test_construction_errors():
    p = px.tensor([1.0], requires_grad=True)
    with pytest.raises(TypeError, match="iterable of Tensors or dicts"):
        optim.SGD(p, lr=0.1)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="ordered collections"):
        optim.SGD([{"params": {p}}], lr=0.1)
    with pytest.raises(TypeError, match="parameter 1 of the group is a float"):
        optim.SGD([p, 1.0], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.raises(ValueError, match="same parameter more than once"):
        optim.SGD([p, p], lr=0.1)
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([p * 2], lr=0.1)
    with pytest.raises(TypeError, match="must be a dict"):
        optim.SGD([p], lr=0.1).add_param_group([p])


@pytest.mark.parametrize("cls,opts,match", [
    (optim.SGD, dict(lr=-1), "learning rate"),
    (optim.SGD, dict(momentum=-0.1), "momentum"),
    (optim.SGD, dict(weight_decay=-1), "weight_decay"),
    (optim.SGD, dict(nesterov=True), "Nesterov"),
    (optim.SGD, dict(momentum=0.9, dampening=0.1, nesterov=True), "zero dampening"),
    (optim.Adam, dict(betas=(1.0, 0.9)), "beta parameter at index 0"),
    (optim.Adam, dict(betas=(0.9, -0.1)), "beta parameter at index 1"),
    (optim.Adam, dict(eps=-1), "epsilon"),
    (optim.AdamW, dict(weight_decay=-1), "weight_decay"),
    (optim.RMSprop, dict(alpha=-1), "alpha"),
    (optim.RMSprop, dict(momentum=-1), "momentum"),
    (optim.Adagrad, dict(lr_decay=-1), "lr_decay"),
    (optim.Adagrad, dict(initial_accumulator_value=-1), "initial_accumulator_value"),
    (optim.Adadelta, dict(rho=1.5), "rho"),
    (optim.Adadelta, dict(lr=-1), "learning rate"),
    (optim.Adamax, dict(betas=(0.9, 1.0)), "beta parameter at index 1"),
    (optim.NAdam, dict(momentum_decay=-1), "momentum_decay"),
    (optim.RAdam, dict(weight_decay=-1), "weight_decay"),
    (optim.ASGD, dict(lr=-1), "learning rate"),
    (optim.Rprop, dict(etas=(1.1, 1.2)), "eta values"),
    (optim.LBFGS, dict(lr=-1), "learning rate"),
])
def test_invalid_options(cls, opts, match):
    with pytest.raises(ValueError, match=match):
        cls([px.tensor([1.0], requires_grad=True)], **opts)


def test_defaults_match_torch():
    p, q = px.tensor([1.0], requires_grad=True), torch.tensor([1.0], requires_grad=True)
    for name in ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "NAdam",
                 "RAdam", "ASGD", "Rprop", "LBFGS", "Adafactor"]:
        ours = getattr(optim, name)([p]).defaults
        theirs = getattr(torch.optim, name)([q]).defaults
        assert ours == theirs, name  # the same option names and values: param_groups match


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta",
                                  "Adamax", "NAdam", "RAdam", "ASGD", "Rprop", "Adafactor"])
def test_implementation_options(name):
    """foreach (and fused, where PyTorch has it) are accepted; capturable and differentiable,
    which change what the update does, raise NotImplementedError naming themselves."""
    import inspect
    p = px.tensor([1.0], requires_grad=True)
    cls = getattr(optim, name)
    accepted = inspect.signature(getattr(torch.optim, name)).parameters
    assert set(accepted) - {"params"} <= set(inspect.signature(cls).parameters)
    for option in ("capturable", "differentiable"):
        if option in accepted:
            with pytest.raises(NotImplementedError, match=f"{option}=True"):
                cls([p], **{option: True})
    assert cls([p], foreach=True).defaults["foreach"] is True
    if "fused" in accepted:
        assert cls([p], fused=True).defaults["fused"] is True
        with pytest.raises(RuntimeError, match="cannot be `True` together"):
            cls([p], fused=True, foreach=True)
    else:
        with pytest.raises(TypeError):
            cls([p], fused=True)


# ---- named parameters, state-dict hooks, global step hooks --------------------------------

def test_named_parameters_keep_their_names_as_in_torch():
    model, tmodel = px.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    opt = optim.Adam(model.named_parameters(), lr=0.1)
    topt = torch.optim.Adam(tmodel.named_parameters(), lr=0.1)
    assert opt.param_groups[0]["param_names"] == topt.param_groups[0]["param_names"] == \
        ["weight", "bias"]
    assert all(isinstance(p, px.Tensor) for p in opt.param_groups[0]["params"])
    sd, tsd = opt.state_dict(), topt.state_dict()
    assert sd["param_groups"][0]["param_names"] == tsd["param_groups"][0]["param_names"]
    assert set(sd["param_groups"][0]) == set(tsd["param_groups"][0])
    fresh = optim.Adam(px.nn.Linear(3, 2).parameters())
    fresh.load_state_dict(sd)  # saved names come along
    assert fresh.param_groups[0]["param_names"] == ["weight", "bias"]
    with pytest.raises(ValueError, match="with/without names"):
        optim.SGD([("w", model.weight), model.bias])
    with pytest.raises(ValueError, match="cannot add param group without names"):
        opt.add_param_group({"params": [px.tensor([1.0], requires_grad=True)]})


def test_state_dict_and_load_state_dict_hooks():
    p = px.tensor([1.0], requires_grad=True)
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    calls = []
    opt.register_state_dict_pre_hook(lambda o: calls.append("pre"))
    opt.register_state_dict_pre_hook(lambda o: calls.append("first"), prepend=True)
    handle = opt.register_state_dict_post_hook(lambda o, sd: {**sd, "extra": 1})
    sd = opt.state_dict()
    assert calls == ["first", "pre"] and sd["extra"] == 1
    handle.remove()
    assert "extra" not in opt.state_dict()

    def set_lr(o, sd):
        sd["param_groups"] = [dict(g, lr=0.5) for g in sd["param_groups"]]
        return sd
    opt.register_load_state_dict_pre_hook(set_lr)
    opt.register_load_state_dict_post_hook(lambda o: calls.append("loaded"))
    original = opt.state_dict()
    opt.load_state_dict(original)
    assert opt.param_groups[0]["lr"] == 0.5 and calls[-1] == "loaded"
    assert original["param_groups"][0]["lr"] == 0.1  # the caller's dict is not modified


def test_global_step_hooks_run_around_every_optimizer():
    from phalanx.optim.optimizer import (register_optimizer_step_post_hook,
                                         register_optimizer_step_pre_hook)
    p = px.tensor([1.0], requires_grad=True)
    p.grad = px.tensor([1.0])
    opt = optim.SGD([p], lr=0.1)
    order = []
    opt.register_step_pre_hook(lambda o, a, k: order.append("own pre"))
    opt.register_step_post_hook(lambda o, a, k: order.append("own post"))
    pre = register_optimizer_step_pre_hook(lambda o, a, k: order.append("global pre"))
    post = register_optimizer_step_post_hook(lambda o, a, k: order.append("global post"))
    try:
        opt.step()
    finally:
        pre.remove()
        post.remove()
    assert order == ["global pre", "own pre", "own post", "global post"]
    opt.step()
    assert len(order) == 6
    bad = opt.register_step_pre_hook(lambda o, a, k: "args")
    with pytest.raises(RuntimeError, match="must return None or a tuple"):
        opt.step()
    bad.remove()


def test_every_torch_optimizer_in_common_use_exists():
    theirs = {name for name in dir(torch.optim)
              if isinstance(getattr(torch.optim, name), type)
              and issubclass(getattr(torch.optim, name), torch.optim.Optimizer)}
    # SparseAdam needs sparse gradients, which Phalanx does not have
    missing = theirs - set(dir(optim)) - {"SparseAdam"}
    assert not missing, missing


def test_adafactor_factors_the_last_two_dimensions():
    pair = Pair(shapes=[(2, 3, 4), (4, 1), (6,)])
    opt, topt = optim.Adafactor(pair.px, lr=0.05), torch.optim.Adafactor(pair.torch, lr=0.05)
    run_steps(pair, opt, topt, 8)
    pair.assert_close()
    state = opt.state[pair.px[0]]
    assert state["row_var"].shape == (2, 3, 1) and state["col_var"].shape == (2, 1, 4)
    assert "variance" in opt.state[pair.px[2]]


MUON_CASES = [dict(), dict(lr=0.02, momentum=0.9, nesterov=False, weight_decay=0.0),
              dict(lr=0.01, adjust_lr_fn="match_rms_adamw", ns_steps=3),
              dict(lr=0.01, ns_coefficients=(2.0, -1.5, 0.5), adjust_lr_fn="original")]


@pytest.mark.parametrize("opts", MUON_CASES, ids=str)
def test_muon_trajectory_matches_torch(opts):
    """Muon's Newton-Schulz runs in bfloat16 in PyTorch; ours rounds each operation the same
    way, so small matrices match to the last bit."""
    pair = Pair(shapes=[(3, 4), (6, 2), (5, 5)])
    opt, topt = optim.Muon(pair.px, **opts), torch.optim.Muon(pair.torch, **opts)
    for t in range(8):
        run_steps(pair, opt, topt, 1, start=t)
        pair.assert_close()


def test_muon_newton_schulz_within_a_bfloat16_ulp_on_large_matrices():
    from torch.optim._muon import _zeropower_via_newtonschulz
    from phalanx.optim.muon import NS_COEFFICIENTS, zeropower_via_newtonschulz
    g = np.random.default_rng(0).standard_normal((96, 40))
    ours = zeropower_via_newtonschulz(g, NS_COEFFICIENTS, 5, 1e-7)
    theirs = _zeropower_via_newtonschulz(torch.tensor(g), NS_COEFFICIENTS, 5, 1e-7)
    # float32 accumulation order differs in large products: results may differ by an ulp
    np.testing.assert_allclose(ours, theirs.float().numpy(), atol=2 ** -8)


def test_muon_errors():
    with pytest.raises(ValueError, match="only supports 2D parameters"):
        optim.Muon([px.tensor([1.0], requires_grad=True)])
    with pytest.raises(ValueError, match="not supported"):
        optim.Muon([px.zeros(2, 2, requires_grad=True)], adjust_lr_fn="sqrt")


def test_tensor_lr_is_refused_by_name():
    p = px.tensor([1.0], requires_grad=True)
    for name in ["SGD", "Adam", "NAdam", "LBFGS"]:
        with pytest.raises(NotImplementedError, match="lr as a Tensor"):
            getattr(optim, name)([p], lr=px.tensor(0.1))
    with pytest.raises(NotImplementedError, match="lr as a Tensor"):
        optim.SGD([{"params": [p], "lr": px.tensor(0.1)}])


@pytest.mark.parametrize("module", ["optim", "optim.lr_scheduler", "optim.swa_utils"])
def test_signatures_match_torch(module):
    """Every public callable we share with torch.optim takes the same arguments, in the same
    order, of the same kinds, with the same defaults."""
    import importlib
    import inspect
    theirs_mod = importlib.import_module("torch." + module)
    ours_mod = importlib.import_module("phalanx." + module)

    def signature(f):
        return [(p.name, p.kind, p.default) for p in inspect.signature(f).parameters.values()]
    compared = 0
    for name in dir(theirs_mod):
        theirs = getattr(theirs_mod, name)
        if name.startswith("_") or not callable(theirs) or not hasattr(ours_mod, name):
            continue
        if getattr(theirs, "__module__", "").split(".")[:2] != ["torch", "optim"]:
            continue  # typing helpers and the like
        assert signature(getattr(ours_mod, name)) == signature(theirs), name
        compared += 1
    assert compared >= 5


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "Adagrad", "Adadelta", "Adamax",
                                  "NAdam", "RAdam", "RMSprop", "Rprop", "ASGD", "LBFGS",
                                  "Adafactor"])
def test_param_group_keys_in_pytorchs_order(name):
    ours = getattr(px.optim, name)([px.nn.Parameter(px.zeros(2))], lr=0.01)
    theirs = getattr(torch.optim, name)([torch.nn.Parameter(torch.zeros(2))], lr=0.01)
    assert list(ours.state_dict()["param_groups"][0]) == \
        list(theirs.state_dict()["param_groups"][0])
