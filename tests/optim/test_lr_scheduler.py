"""LR schedulers against torch.optim.lr_scheduler: the rate (and momentum) sequences over 30
steps, state dict round trips, SequentialLR milestones, ReduceLROnPlateau on scripted metrics."""
import copy
import math

import numpy as np
import pytest
import torch

import phalanx as px
from phalanx import optim
from phalanx.optim import lr_scheduler as sched

LRS = (0.1, 0.02)  # two param groups with different rates


def make_opt(lib, name="SGD", **opts):
    if lib == "px":
        params = [px.tensor([1.0], requires_grad=True) for _ in LRS]
        return getattr(optim, name)([{"params": [p], "lr": lr} for p, lr in zip(params, LRS)],
                                    **opts)
    params = [torch.tensor([1.0], requires_grad=True) for _ in LRS]
    return getattr(torch.optim, name)([{"params": [p], "lr": lr} for p, lr in zip(params, LRS)],
                                      **opts)


def lib_of(lib):
    return sched if lib == "px" else torch.optim.lr_scheduler


def sequential(lib, opt, parts, milestones):
    s = lib_of(lib)
    return s.SequentialLR(opt, [getattr(s, name)(opt, **kw) for name, kw in parts], milestones)


class Scale:  # a callable object: its attributes belong in LambdaLR's state dict
    def __init__(self, rate):
        self.rate = rate

    def __call__(self, epoch):
        return self.rate ** epoch


# (id, optimizer name and options, scheduler factory(lib, optimizer))
SCHEDULES = [
    ("StepLR", ("SGD", {}), lambda lib, o: lib_of(lib).StepLR(o, step_size=4, gamma=0.5)),
    ("MultiStepLR", ("SGD", {}),
     lambda lib, o: lib_of(lib).MultiStepLR(o, milestones=[3, 7, 7, 20], gamma=0.3)),
    ("ExponentialLR", ("SGD", {}), lambda lib, o: lib_of(lib).ExponentialLR(o, gamma=0.9)),
    ("CosineAnnealingLR", ("SGD", {}),
     lambda lib, o: lib_of(lib).CosineAnnealingLR(o, T_max=10, eta_min=0.001)),
    ("LinearLR", ("SGD", {}),
     lambda lib, o: lib_of(lib).LinearLR(o, start_factor=0.2, end_factor=0.9, total_iters=12)),
    ("LambdaLR", ("SGD", {}),
     lambda lib, o: lib_of(lib).LambdaLR(o, [lambda e: 1 / (e + 1), Scale(0.95)])),
    ("OneCycleLR-cos-sgd", ("SGD", {"momentum": 0.9}),
     lambda lib, o: lib_of(lib).OneCycleLR(o, max_lr=[1.0, 0.5], total_steps=31)),
    ("OneCycleLR-linear-3phase-adam", ("Adam", {}),
     lambda lib, o: lib_of(lib).OneCycleLR(o, max_lr=0.3, epochs=4, steps_per_epoch=8,
                                           pct_start=0.25, anneal_strategy="linear",
                                           three_phase=True, base_momentum=0.8,
                                           max_momentum=0.9, div_factor=10.0,
                                           final_div_factor=100.0)),
    ("OneCycleLR-no-momentum", ("Adagrad", {}),
     lambda lib, o: lib_of(lib).OneCycleLR(o, max_lr=0.3, total_steps=40,
                                           cycle_momentum=False)),
    ("SequentialLR-warmup-cosine", ("SGD", {}),
     lambda lib, o: sequential(lib, o, [("LinearLR", dict(start_factor=0.1, total_iters=5)),
                                        ("CosineAnnealingLR", dict(T_max=20))], [5])),
    ("SequentialLR-three", ("SGD", {}),
     lambda lib, o: sequential(lib, o, [("ExponentialLR", dict(gamma=0.8)),
                                        ("StepLR", dict(step_size=3, gamma=0.5)),
                                        ("MultiStepLR", dict(milestones=[2, 4]))], [4, 12])),
    ("MultiplicativeLR", ("SGD", {}),
     lambda lib, o: lib_of(lib).MultiplicativeLR(o, [lambda e: 0.95, Scale(0.99)])),
    ("ConstantLR", ("SGD", {}),
     lambda lib, o: lib_of(lib).ConstantLR(o, factor=0.25, total_iters=7)),
    ("PolynomialLR", ("SGD", {}),
     lambda lib, o: lib_of(lib).PolynomialLR(o, total_iters=20, power=1.0)),
    ("PolynomialLR-power2", ("SGD", {}),
     lambda lib, o: lib_of(lib).PolynomialLR(o, total_iters=12, power=2.0)),
    ("CosineAnnealingWarmRestarts", ("SGD", {}),
     lambda lib, o: lib_of(lib).CosineAnnealingWarmRestarts(o, T_0=7, eta_min=0.001)),
    ("CosineAnnealingWarmRestarts-Tmult2", ("SGD", {}),
     lambda lib, o: lib_of(lib).CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2)),
    ("ChainedScheduler", ("SGD", {}),
     lambda lib, o: lib_of(lib).ChainedScheduler([lib_of(lib).ConstantLR(o, factor=0.1,
                                                                         total_iters=4),
                                                  lib_of(lib).ExponentialLR(o, gamma=0.9)])),
    ("ChainedScheduler-with-optimizer", ("SGD", {}),
     lambda lib, o: lib_of(lib).ChainedScheduler([lib_of(lib).LinearLR(o, total_iters=6),
                                                  lib_of(lib).StepLR(o, 5, gamma=0.5)], o)),
    ("CyclicLR-triangular-sgd", ("SGD", {"momentum": 0.9}),
     lambda lib, o: lib_of(lib).CyclicLR(o, base_lr=0.01, max_lr=[0.1, 0.05], step_size_up=4)),
    ("CyclicLR-triangular2-adam", ("Adam", {}),
     lambda lib, o: lib_of(lib).CyclicLR(o, base_lr=[0.001, 0.002], max_lr=0.01,
                                         step_size_up=3, step_size_down=5, mode="triangular2",
                                         base_momentum=0.85, max_momentum=0.95)),
    ("CyclicLR-exp_range", ("SGD", {"momentum": 0.5}),
     lambda lib, o: lib_of(lib).CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=5,
                                         mode="exp_range", gamma=0.97)),
    ("CyclicLR-scale_fn-no-momentum", ("Adagrad", {}),
     lambda lib, o: lib_of(lib).CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=2,
                                         scale_fn=lambda x: 1 / (1 + x), scale_mode="iterations",
                                         cycle_momentum=False)),
    ("CyclicLR-scale_fn-object", ("SGD", {"momentum": 0.9}),
     lambda lib, o: lib_of(lib).CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=3,
                                         scale_fn=Scale(0.9))),
]


def momentum_of(group):
    return group["betas"][0] if "betas" in group else group.get("momentum", math.nan)


def run_schedule(opt, scheduler, steps):
    """The rates (and momenta) after construction and after each of `steps` steps."""
    seen = [(list(scheduler.get_last_lr()), [momentum_of(g) for g in opt.param_groups])]
    for _ in range(steps):
        opt.step()
        scheduler.step()
        assert scheduler.get_last_lr() == [g["lr"] for g in opt.param_groups]
        seen.append((list(scheduler.get_last_lr()), [momentum_of(g) for g in opt.param_groups]))
    return seen


@pytest.mark.parametrize("sid,opt_spec,factory", SCHEDULES, ids=[s[0] for s in SCHEDULES])
def test_sequence_matches_torch(sid, opt_spec, factory):
    name, opts = opt_spec
    steps = 30
    o, to = make_opt("px", name, **opts), make_opt("torch", name, **opts)
    ours = run_schedule(o, factory("px", o), steps)
    theirs = run_schedule(to, factory("torch", to), steps)
    for t, ((lr, m), (tlr, tm)) in enumerate(zip(ours, theirs)):
        assert lr == pytest.approx(tlr, rel=1e-12, abs=1e-15), f"lr at step {t}"
        assert m == pytest.approx(tm, rel=1e-12, nan_ok=True), f"momentum at step {t}"
    # the schedule actually moves (ConstantLR has just its two values)
    assert len({tuple(lr) for lr, _ in ours}) > (1 if sid == "ConstantLR" else 2)


def test_base_lrs_last_epoch_and_initial_lr():
    o = make_opt("px")
    s = sched.StepLR(o, step_size=2)
    assert s.base_lrs == list(LRS) and s.last_epoch == 0
    assert [g["initial_lr"] for g in o.param_groups] == list(LRS)
    o.step()
    s.step()
    assert s.last_epoch == 1
    with pytest.raises(KeyError, match="initial_lr"):
        sched.StepLR(make_opt("px"), step_size=2, last_epoch=3)


def test_stepping_scheduler_first_warns():
    o = make_opt("px")
    s = sched.ExponentialLR(o, gamma=0.5)
    with pytest.warns(UserWarning, match="before optimizer.step"):
        s.step()


@pytest.mark.parametrize("sid,opt_spec,factory", SCHEDULES, ids=[s[0] for s in SCHEDULES])
def test_state_dict_round_trip(sid, opt_spec, factory):
    name, opts = opt_spec
    o = make_opt("px", name, **opts)
    s = factory("px", o)
    run_schedule(o, s, 12)
    saved_sched, saved_opt = copy.deepcopy(s.state_dict()), copy.deepcopy(o.state_dict())
    rest = run_schedule(o, s, 12)[1:]
    o2 = make_opt("px", name, **opts)
    s2 = factory("px", o2)
    o2.load_state_dict(saved_opt)
    s2.load_state_dict(saved_sched)
    assert run_schedule(o2, s2, 12)[1:] == rest


@pytest.mark.parametrize("sid,opt_spec,factory",
                         [s for s in SCHEDULES if s[0] != "LambdaLR"],
                         ids=[s[0] for s in SCHEDULES if s[0] != "LambdaLR"])
def test_loads_torch_scheduler_state(sid, opt_spec, factory):
    """A torch scheduler's state dict (plain Python values) resumes our scheduler."""
    name, opts = opt_spec
    to = make_opt("torch", name, **opts)
    ts = factory("torch", to)
    run_schedule(to, ts, 9)
    o = make_opt("px", name, **opts)
    s = factory("px", o)
    for g, tg in zip(o.param_groups, to.param_groups):
        g.update({k: v for k, v in tg.items() if k != "params"})
    s.load_state_dict(copy.deepcopy(ts.state_dict()))
    ours, theirs = run_schedule(o, s, 10), run_schedule(to, ts, 10)
    for (lr, m), (tlr, tm) in zip(ours, theirs):
        assert lr == pytest.approx(tlr, rel=1e-12, abs=1e-15)
        assert m == pytest.approx(tm, rel=1e-12, nan_ok=True)


def test_lambda_lr_state_dict_keeps_callable_objects_state():
    o = make_opt("px")
    s = sched.LambdaLR(o, [lambda e: 1.0, Scale(0.5)])
    sd = s.state_dict()
    assert sd["lr_lambdas"][0] is None and sd["lr_lambdas"][1] == {"rate": 0.5}
    s2 = sched.LambdaLR(make_opt("px"), [lambda e: 1.0, Scale(0.9)])
    s2.load_state_dict(sd)
    assert s2.lr_lambdas[1].rate == 0.5


def test_sequential_lr_switches_at_milestones():
    o = make_opt("px")
    s = sched.SequentialLR(o, [sched.LambdaLR(o, lambda e: 0.5),
                               sched.ExponentialLR(o, gamma=0.1)], milestones=[3])
    lrs = [s.get_last_lr()[0]]
    for _ in range(5):
        o.step()
        s.step()
        lrs.append(s.get_last_lr()[0])
    # epochs 0-2 at half the base rate; at 3 the second schedule restarts from the base rate
    assert lrs[:3] == [0.05] * 3
    assert lrs[3:] == pytest.approx([0.1, 0.01, 0.001])


def test_scheduler_errors():
    o = make_opt("px")
    with pytest.raises(TypeError, match="not an Optimizer"):
        sched.StepLR(object(), step_size=1)
    with pytest.raises(ValueError, match="one milestone fewer"):
        sched.SequentialLR(o, [sched.ExponentialLR(o, 0.5)], milestones=[2])
    other = make_opt("px")
    with pytest.raises(ValueError, match="same optimizer"):
        sched.SequentialLR(o, [sched.ExponentialLR(o, 0.5), sched.ExponentialLR(other, 0.5)],
                           milestones=[2])
    with pytest.raises(ValueError, match="ReduceLROnPlateau"):
        sched.SequentialLR(o, [sched.ExponentialLR(o, 0.5), sched.ReduceLROnPlateau(o)],
                           milestones=[2])
    with pytest.raises(ValueError, match="lr_lambda must have one value per param group"):
        sched.LambdaLR(o, [lambda e: 1.0])
    with pytest.raises(ValueError, match="start_factor"):
        sched.LinearLR(o, start_factor=0)
    with pytest.raises(ValueError, match="total_steps OR"):
        sched.OneCycleLR(o, max_lr=1.0)
    with pytest.raises(ValueError, match="pct_start"):
        sched.OneCycleLR(o, max_lr=1.0, total_steps=10, pct_start=2.0)
    with pytest.raises(ValueError, match="anneal_strategy"):
        sched.OneCycleLR(o, max_lr=1.0, total_steps=10, anneal_strategy="step")
    with pytest.raises(ValueError, match="cycle_momentum=False"):
        sched.OneCycleLR(optim.Adagrad([px.tensor([1.0], requires_grad=True)]), max_lr=1.0,
                         total_steps=10)
    o = make_opt("px", momentum=0.9)
    s = sched.OneCycleLR(o, max_lr=1.0, total_steps=2)
    o.step()
    s.step()
    s.step()
    with pytest.raises(ValueError, match="Tried to step 3 times"):
        s.step()
    with pytest.raises(ValueError, match="Factor should be < 1.0"):
        sched.ReduceLROnPlateau(o, factor=1.0)
    with pytest.raises(ValueError, match="mode 'up' is unknown"):
        sched.ReduceLROnPlateau(o, mode="up")
    with pytest.raises(ValueError, match="threshold mode"):
        sched.ReduceLROnPlateau(o, threshold_mode="pct")
    with pytest.raises(ValueError, match="expected 2 min_lrs"):
        sched.ReduceLROnPlateau(o, min_lr=[0.0])


# ---- ReduceLROnPlateau -------------------------------------------------------------------

METRICS = [1.0, 0.9, 0.9, 0.95, 0.91, 0.9, 0.92, 0.8, 0.8, 0.8, 0.8, 0.79999, 0.81, 0.7, 0.75,
           0.75, 0.75, 0.76, 0.77, 0.6, 0.6, 0.6, 0.6, 0.6, 0.59, 0.61, 0.62, 0.63, 0.64, 0.65]

PLATEAU_OPTIONS = [
    dict(patience=2),
    dict(patience=1, cooldown=2, factor=0.5),
    dict(patience=0, threshold=0.05, threshold_mode="abs", min_lr=[0.01, 0.005]),
    dict(mode="max", patience=1, factor=0.3, min_lr=1e-3),
    dict(mode="max", patience=2, threshold=0.01, threshold_mode="abs", cooldown=1, eps=1e-2),
]


@pytest.mark.parametrize("opts", PLATEAU_OPTIONS, ids=str)
def test_reduce_on_plateau_matches_torch(opts):
    o, to = make_opt("px"), make_opt("torch")
    s = sched.ReduceLROnPlateau(o, **opts)
    ts = torch.optim.lr_scheduler.ReduceLROnPlateau(to, **opts)
    lrs, tlrs = [], []
    for metric in METRICS:
        s.step(px.tensor(metric, dtype=px.float64))  # a tensor metric works, as in PyTorch
        ts.step(metric)
        lrs.append(s.get_last_lr())
        tlrs.append(ts.get_last_lr())
        assert (s.num_bad_epochs, s.cooldown_counter, s.best) == \
            (ts.num_bad_epochs, ts.cooldown_counter, ts.best)
    assert lrs == tlrs
    assert lrs[-1] != lrs[0]


def test_reduce_on_plateau_state_dict_round_trip():
    o = make_opt("px")
    s = sched.ReduceLROnPlateau(o, patience=1, cooldown=1)
    for m in METRICS[:10]:
        s.step(m)
    saved_opt, saved = copy.deepcopy(o.state_dict()), copy.deepcopy(s.state_dict())
    assert saved["best"] == 0.8 and saved["mode"] == "min"
    rest = []
    for m in METRICS[10:]:
        s.step(m)
        rest.append(s.get_last_lr())
    o2 = make_opt("px")
    s2 = sched.ReduceLROnPlateau(o2)
    o2.load_state_dict(saved_opt)
    s2.load_state_dict(saved)
    rest2 = []
    for m in METRICS[10:]:
        s2.step(m)
        rest2.append(s2.get_last_lr())
    assert rest2 == rest and not math.isinf(s2.best)


def test_scheduler_drives_optimizer_updates():
    """The rate a scheduler sets is the one the next step uses."""
    p = px.tensor([1.0], dtype=px.float64, requires_grad=True)
    o = optim.SGD([p], lr=1.0)
    s = sched.StepLR(o, step_size=1, gamma=0.5)
    for _ in range(3):
        p.grad = px.tensor([1.0], dtype=px.float64)
        o.step()
        s.step()
    np.testing.assert_allclose(p._data, [1.0 - 1.0 - 0.5 - 0.25])


def train(opt, scheduler, steps):
    """`steps` updates on the loss sum(p**2)/2 (grad = p); the rates, momenta and final params."""
    params = [p for g in opt.param_groups for p in g["params"]]
    seen = []
    for _ in range(steps):
        for p in params:
            p.grad = p.detach().clone()
        seen.append(run_schedule(opt, scheduler, 1)[1])
    return seen, [p._data.copy() for p in params]


@pytest.mark.parametrize("sid,opt_spec,factory",
                         [s for s in SCHEDULES if s[0] in ("MultiStepLR", "SequentialLR-three",
                                                           "OneCycleLR-linear-3phase-adam",
                                                           "CyclicLR-triangular2-adam",
                                                           "ChainedScheduler",
                                                           "CosineAnnealingWarmRestarts")],
                         ids=str)
def test_checkpoint_round_trip_through_px_save(tmp_path, sid, opt_spec, factory):
    """Parameters, optimizer and scheduler state survive px.save / px.load (safetensors +
    JSON metadata): training resumed from the file goes on exactly as uninterrupted."""
    name, opts = opt_spec
    o = make_opt("px", name, **opts)
    s = factory("px", o)
    train(o, s, 7)
    params = [p for g in o.param_groups for p in g["params"]]
    px.save({"params": params, "optimizer": o.state_dict(), "scheduler": s.state_dict()},
            tmp_path / "ckpt")
    expected = train(o, s, 10)

    o2 = make_opt("px", name, **opts)
    s2 = factory("px", o2)
    ckpt = px.load(tmp_path / "ckpt")
    for p, saved in zip((p for g in o2.param_groups for p in g["params"]), ckpt["params"]):
        p._data[...] = saved._data
    o2.load_state_dict(ckpt["optimizer"])
    s2.load_state_dict(ckpt["scheduler"])
    lrs, values = train(o2, s2, 10)
    assert lrs == expected[0]
    for a, b in zip(values, expected[1]):
        np.testing.assert_array_equal(a, b)


# ---- step(epoch), the deprecated spelling PyTorch still honours ----------------------------

EPOCH_SCHEDULES = [
    lambda lib, o: lib_of(lib).StepLR(o, step_size=3, gamma=0.5),
    lambda lib, o: lib_of(lib).MultiStepLR(o, milestones=[2, 5, 5], gamma=0.5),
    lambda lib, o: lib_of(lib).ConstantLR(o, factor=0.5, total_iters=4),
    lambda lib, o: lib_of(lib).LinearLR(o, start_factor=0.5, total_iters=6),
    lambda lib, o: lib_of(lib).ExponentialLR(o, gamma=0.8),
    lambda lib, o: lib_of(lib).PolynomialLR(o, total_iters=8, power=1.5),
    lambda lib, o: lib_of(lib).CosineAnnealingLR(o, T_max=6, eta_min=0.01),
    lambda lib, o: lib_of(lib).LambdaLR(o, lambda e: 0.9 ** e),  # no closed form: get_lr
]


@pytest.mark.parametrize("factory", EPOCH_SCHEDULES, ids=range(len(EPOCH_SCHEDULES)))
def test_step_with_epoch_uses_the_closed_form(factory):
    o, to = make_opt("px"), make_opt("torch")
    s, ts = factory("px", o), factory("torch", to)
    for epoch in [3, 1, 7, 7, 12, 2]:  # jumps both ways
        o.step(), to.step()
        with pytest.warns(UserWarning, match="deprecated"):
            s.step(epoch)
        with pytest.warns(UserWarning):
            ts.step(epoch)
        assert s.last_epoch == ts.last_epoch == epoch
        assert s.get_last_lr() == pytest.approx(ts.get_last_lr(), rel=1e-12)
        s.step(), ts.step()  # and the recursive form goes on from there
        assert s.get_last_lr() == pytest.approx(ts.get_last_lr(), rel=1e-12)


def test_warm_restarts_with_fractional_and_interleaved_epochs():
    for t_mult in (1, 2):
        o, to = make_opt("px"), make_opt("torch")
        s = sched.CosineAnnealingWarmRestarts(o, T_0=4, T_mult=t_mult, eta_min=0.001)
        ts = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(to, T_0=4, T_mult=t_mult,
                                                                  eta_min=0.001)
        epochs = [e + i / 3 for e in range(14) for i in range(3)] + [26, None, None, 5.5, None]
        for epoch in epochs:
            o.step(), to.step()
            s.step(epoch)
            ts.step(epoch)
            assert (s.T_cur, s.T_i, s.last_epoch) == pytest.approx((ts.T_cur, ts.T_i,
                                                                    ts.last_epoch))
            assert s.get_last_lr() == pytest.approx(ts.get_last_lr(), rel=1e-12)
        with pytest.raises(ValueError, match="non-negative epoch"):
            s.step(-1)


def test_reduce_on_plateau_epoch_argument():
    o = make_opt("px")
    s = sched.ReduceLROnPlateau(o, patience=0)
    with pytest.warns(UserWarning, match="deprecated"):
        s.step(1.0, epoch=10)
    assert s.last_epoch == 10
    s.step(2.0)
    assert s.last_epoch == 11 and s.get_last_lr() == pytest.approx([0.01, 0.002])


def test_old_base_class_name_and_public_names():
    assert issubclass(sched._LRScheduler, sched.LRScheduler)
    theirs = {name for name in dir(torch.optim.lr_scheduler)
              if isinstance(getattr(torch.optim.lr_scheduler, name), type)
              and issubclass(getattr(torch.optim.lr_scheduler, name),
                             torch.optim.lr_scheduler.LRScheduler)}
    assert theirs <= set(dir(sched)), theirs - set(dir(sched))
    assert set(sched.__all__) <= set(dir(sched))


def test_new_scheduler_errors():
    o = make_opt("px")
    with pytest.raises(ValueError, match="between 0 and 1"):
        sched.ConstantLR(o, factor=1.5)
    with pytest.raises(TypeError, match="lr_lambda should be a function"):
        sched.MultiplicativeLR(o, 0.9)
    with pytest.raises(ValueError, match="positive integer T_0"):
        sched.CosineAnnealingWarmRestarts(o, T_0=0)
    with pytest.raises(ValueError, match="T_mult >= 1"):
        sched.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=1.5)
    with pytest.raises(ValueError, match="eta_min"):
        sched.CosineAnnealingWarmRestarts(o, T_0=2, eta_min="0")
    with pytest.raises(ValueError, match="scale_fn is None"):
        sched.CyclicLR(o, base_lr=0.1, max_lr=1.0, mode="sine")
    with pytest.raises(ValueError, match="cycle_momentum=False"):
        sched.CyclicLR(optim.Adagrad([px.tensor([1.0], requires_grad=True)]), 0.1, 1.0)
    with pytest.raises(ValueError, match="max_lr must have one value per param group"):
        sched.CyclicLR(o, base_lr=0.1, max_lr=[1.0], cycle_momentum=False)
    with pytest.raises(ValueError, match="at least one scheduler"):
        sched.ChainedScheduler([])
    other = make_opt("px")
    with pytest.raises(ValueError, match="same optimizer"):
        sched.ChainedScheduler([sched.ExponentialLR(o, 0.5), sched.ExponentialLR(other, 0.5)])
    with pytest.raises(ValueError, match="ReduceLROnPlateau"):
        sched.ChainedScheduler([sched.ExponentialLR(o, 0.5), sched.ReduceLROnPlateau(o)])
    with pytest.raises(TypeError, match="no `optimizer` attribute"):
        sched.ChainedScheduler([sched.ExponentialLR(o, 0.5), object()])


def test_cyclic_lr_state_dict_keeps_scale_object_state():
    o = make_opt("px", momentum=0.9)
    s = sched.CyclicLR(o, 0.01, 0.1, step_size_up=2, scale_fn=Scale(0.5))
    sd = s.state_dict()
    assert sd["_scale_fn_custom"] == {"rate": 0.5}
    s2 = sched.CyclicLR(make_opt("px", momentum=0.9), 0.01, 0.1, step_size_up=2,
                        scale_fn=Scale(0.9))
    s2.load_state_dict(sd)
    assert s2._scale_fn_custom.rate == 0.5
    plain = sched.CyclicLR(make_opt("px", momentum=0.9), 0.01, 0.1, scale_fn=lambda x: 1.0)
    assert plain.state_dict()["_scale_fn_custom"] is None


def test_get_lr_outside_step_warns_as_in_torch():
    o, to = make_opt("px"), make_opt("torch")
    s = sched.StepLR(o, step_size=2)
    ts = torch.optim.lr_scheduler.StepLR(to, step_size=2)
    with pytest.warns(UserWarning, match="get_last_lr"):
        ours = s.get_lr()
    with pytest.warns(UserWarning, match="get_last_lr"):
        theirs = ts.get_lr()
    assert ours == theirs

    class Halving(sched.LRScheduler):  # a user's subclass written the PyTorch way
        def get_lr(self):
            return [base_lr * 0.5 ** self.last_epoch for base_lr in self.base_lrs]
    h = Halving(o)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        o.step()
        h.step()  # no warning from inside step
    assert h.get_last_lr() == pytest.approx([0.05, 0.01])
