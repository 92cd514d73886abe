"""px.amp.GradScaler against torch.amp.GradScaler("cpu"): the same scale trajectory, the same
skipped steps and the same parameters over a run where some gradients are made inf/NaN."""
import pickle
import warnings

import numpy as np
import pytest
import torch

import phalanx as px
import phalanx.nn as nn

BAD_STEPS = {2: float("inf"), 3: float("nan"), 9: -float("inf")}


def _models():
    px.manual_seed(0)
    ours = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 2))
    theirs = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    theirs.load_state_dict({k: torch.tensor(v.detach().numpy())
                            for k, v in ours.state_dict().items()})
    return ours, theirs


def _poison(params, value):
    for p in params:
        p.grad[0] = value
        break


@pytest.mark.parametrize("unscale_first", [False, True])
def test_same_trajectory_skips_and_parameters_as_torch(unscale_first):
    ours, theirs = _models()
    kw = dict(init_scale=2.0 ** 10, growth_factor=2.0, backoff_factor=0.25, growth_interval=3)
    scaler = px.amp.GradScaler("cpu", **kw)
    t_scaler = torch.amp.GradScaler("cpu", **kw)
    opt = px.optim.SGD(ours.parameters(), lr=0.1, momentum=0.9)
    t_opt = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9)
    rng = np.random.default_rng(0)
    scales, skipped = [], []
    for step in range(14):
        x = rng.standard_normal((8, 5)).astype(np.float32)
        y = rng.standard_normal((8, 2)).astype(np.float32)
        before = [p.detach().numpy().copy() for p in ours.parameters()]
        for model, sc, o, lib in ((ours, scaler, opt, px), (theirs, t_scaler, t_opt, torch)):
            o.zero_grad()
            loss = ((model(lib.tensor(x)) - lib.tensor(y)) ** 2).mean()
            sc.scale(loss).backward()
            if step in BAD_STEPS:
                with lib.no_grad():
                    _poison(model.parameters(), BAD_STEPS[step])
            if unscale_first:
                sc.unscale_(o)
                (px.nn.utils if lib is px else torch.nn.utils).clip_grad_norm_(
                    model.parameters(), 1.0)
            sc.step(o)
            sc.update()
        scales.append((scaler.get_scale(), t_scaler.get_scale()))
        skipped.append(all(np.array_equal(b, p.detach().numpy())
                           for b, p in zip(before, ours.parameters())))
        for p, tp in zip(ours.parameters(), theirs.parameters()):
            np.testing.assert_allclose(p.detach().numpy(), tp.detach().numpy(), rtol=1e-5,
                                       atol=1e-6, err_msg=f"step {step}")
    assert [a for a, _ in scales] == [b for _, b in scales]
    assert [i for i, s in enumerate(skipped) if s] == sorted(BAD_STEPS)
    assert scaler.state_dict() == t_scaler.state_dict()
    # the trajectory did both things: backed off after each bad step and grew after 3 good ones
    values = [a for a, _ in scales]
    assert any(b < a for a, b in zip(values, values[1:]))
    assert any(b > a for a, b in zip(values, values[1:]))


def test_scale_handles_lists_and_growth_overflow_keeps_scale():
    kw = dict(init_scale=3e38, growth_interval=1)
    scaler, t_scaler = px.amp.GradScaler("cpu", **kw), torch.amp.GradScaler("cpu", **kw)
    p, tp = px.nn.Parameter(px.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt, t_opt = px.optim.SGD([p], lr=0.0), torch.optim.SGD([tp], lr=0.0)
    a, b = scaler.scale([p.sum(), (p * 2).sum()])
    ta, tb = t_scaler.scale([tp.sum(), (tp * 2).sum()])
    assert (a.item(), b.item()) == (ta.item(), tb.item())
    (a / 1e38).backward()
    (ta / 1e38).backward()
    scaler.step(opt)
    t_scaler.step(t_opt)
    scaler.update()
    t_scaler.update()
    assert scaler.get_scale() == t_scaler.get_scale() == np.float32(3e38)   # x2 is inf: kept
    assert scaler._get_growth_tracker() == t_scaler._get_growth_tracker() == 0


def test_state_dict_round_trip_new_scale_and_errors():
    scaler = px.amp.GradScaler("cpu", init_scale=128.0, growth_interval=5)
    p = px.nn.Parameter(px.ones(3))
    opt = px.optim.SGD([p], lr=0.1)
    scaler.scale(p.sum()).backward()
    scaler.unscale_(opt)
    np.testing.assert_array_equal(p.grad.numpy(), [1, 1, 1])
    with pytest.raises(RuntimeError, match="already been called on this optimizer"):
        scaler.unscale_(opt)
    scaler.step(opt)
    with pytest.raises(RuntimeError, match="step\\(\\) has already been called"):
        scaler.step(opt)
    with pytest.raises(RuntimeError, match="after step"):
        scaler.unscale_(opt)
    scaler.update()
    state = scaler.state_dict()
    assert state == {"scale": 128.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                     "growth_interval": 5, "_growth_tracker": 1}
    other = px.amp.GradScaler("cpu")
    other.load_state_dict(state)
    assert other.state_dict() == state
    scaler.update(new_scale=4.0)
    assert scaler.get_scale() == 4.0
    scaler.update(new_scale=px.tensor(8.0))
    assert scaler.get_scale() == 8.0
    assert pickle.loads(pickle.dumps(scaler)).get_scale() == 8.0
    with pytest.raises(RuntimeError, match="Closure"):
        scaler.step(opt, closure=lambda: 0)
    with pytest.raises(RuntimeError, match="source state dict is empty"):
        other.load_state_dict({})


def test_fp16_gradients_are_refused_as_in_torch():
    scaler = px.amp.GradScaler("cpu")
    p = px.nn.Parameter(px.ones(2, dtype=px.float16))
    scaler.scale(p.sum()).backward()
    with pytest.raises(ValueError, match="Attempting to unscale FP16 gradients"):
        scaler.unscale_(px.optim.SGD([p], lr=0.1))


def test_disabled_scaler_is_transparent_and_cuda_without_gpu_disables(monkeypatch):
    monkeypatch.setattr(px.cuda, "is_available", lambda: False)   # also on a GPU machine
    scaler = px.amp.GradScaler("cpu", enabled=False)
    p = px.nn.Parameter(px.ones(2))
    loss = p.sum()
    assert scaler.scale(loss) is loss and scaler.get_scale() == 1.0
    assert scaler.state_dict() == {} and not scaler.is_enabled()
    with pytest.warns(UserWarning, match="CUDA is not available"):
        assert not px.amp.GradScaler("cuda").is_enabled()
    with pytest.warns(FutureWarning, match=r"phalanx\.amp\.GradScaler\('cuda'"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            px.cuda.amp.GradScaler()


def test_step_reads_found_inf_once():
    """No host read beyond PyTorch's: scale/unscale_/update stay on arrays; step reads once."""
    scaler = px.amp.GradScaler("cpu")
    params = [px.nn.Parameter(px.ones(3)) for _ in range(4)]
    opt = px.optim.SGD(params, lr=0.1)
    scaler.scale(sum(p.sum() for p in params)).backward()
    reads = []
    found = scaler._per_optimizer_states   # found_inf arrays appear after unscale_
    scaler.unscale_(opt)
    state = found[id(opt)]["found_inf_per_device"]
    assert len(state) == 1        # one device, one flag: step converts it to float once
    for dev, f in list(state.items()):
        class Counting(type(f)):
            def __float__(self):
                reads.append(1)
                return super().__float__()
        state[dev] = f.view(Counting)
    scaler.step(opt)
    scaler.update()
    assert len(reads) == 1
