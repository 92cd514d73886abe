"""torch.optim.swa_utils against PyTorch: AveragedModel (SWA, EMA, custom averages, buffers),
SWALR's rate sequence and update_bn's BatchNorm statistics."""
import numpy as np
import pytest
import torch

import phalanx as px
from phalanx.optim import swa_utils


def model_pair(seed=0):
    torch.manual_seed(seed)
    tmodel = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4),
                                 torch.nn.Linear(4, 2)).double()
    model = px.nn.Sequential(px.nn.Linear(3, 4), px.nn.BatchNorm1d(4),
                             px.nn.Linear(4, 2)).double()
    model.load_state_dict({k: px.tensor(v.numpy()) for k, v in tmodel.state_dict().items()})
    return model, tmodel


def perturb(model, tmodel, rng):
    """Move both models' parameters and buffers the same way (as training would)."""
    for (name, p), (_, q) in zip(model.state_dict().items(), tmodel.state_dict().items()):
        if p.dtype == px.float64:
            delta = rng.standard_normal(p.shape)
            if name.endswith("running_var"):
                delta = np.abs(delta)  # a variance stays positive
            p._data += delta
            with torch.no_grad():
                q += torch.tensor(delta)
        else:
            p._data += 1
            with torch.no_grad():
                q += 1


def assert_same_state(ours, theirs, rtol=1e-12):
    sd, tsd = ours.state_dict(), theirs.state_dict()
    assert list(sd) == list(tsd)
    for key in tsd:
        np.testing.assert_allclose(np.asarray(sd[key]._data), tsd[key].numpy(), rtol=rtol,
                                   atol=1e-14, err_msg=key)


AVERAGES = [
    ("swa", lambda lib: {}),
    ("ema-multi", lambda lib: dict(multi_avg_fn=lib.get_ema_multi_avg_fn(0.9))),
    ("ema-avg_fn", lambda lib: dict(avg_fn=lib.get_ema_avg_fn(0.8))),
    ("swa-multi", lambda lib: dict(multi_avg_fn=lib.get_swa_multi_avg_fn())),
    ("ema-buffers", lambda lib: dict(multi_avg_fn=lib.get_ema_multi_avg_fn(0.7),
                                     use_buffers=True)),
    ("swa-avg_fn-buffers", lambda lib: dict(avg_fn=lib.get_swa_avg_fn(), use_buffers=True)),
]


@pytest.mark.parametrize("name,options", AVERAGES, ids=[a[0] for a in AVERAGES])
def test_averaged_model_matches_torch(name, options):
    model, tmodel = model_pair()
    averaged = swa_utils.AveragedModel(model, **options(swa_utils))
    taveraged = torch.optim.swa_utils.AveragedModel(tmodel, **options(torch.optim.swa_utils))
    rng = np.random.default_rng(0)
    for _ in range(5):
        perturb(model, tmodel, rng)
        averaged.update_parameters(model)
        taveraged.update_parameters(tmodel)
        assert_same_state(averaged, taveraged)
    assert averaged.n_averaged.item() == 5
    x = np.random.default_rng(1).standard_normal((6, 3))
    averaged.eval(), taveraged.eval()
    np.testing.assert_allclose(averaged(px.tensor(x))._data,
                               taveraged(torch.tensor(x)).detach().numpy(), rtol=1e-12)


def test_in_place_swa_refuses_integer_buffers_as_torch_does():
    model, tmodel = model_pair()
    averaged = swa_utils.AveragedModel(model, multi_avg_fn=swa_utils.get_swa_multi_avg_fn(),
                                       use_buffers=True)
    taveraged = torch.optim.swa_utils.AveragedModel(
        tmodel, multi_avg_fn=torch.optim.swa_utils.get_swa_multi_avg_fn(), use_buffers=True)
    for _ in range(2):
        if averaged.n_averaged.item() == 0:
            averaged.update_parameters(model)
            taveraged.update_parameters(tmodel)
        else:
            with pytest.raises(RuntimeError, match="integer"):
                averaged.update_parameters(model)
            with pytest.raises(RuntimeError, match="Integer"):
                taveraged.update_parameters(tmodel)


def test_averaged_model_is_a_copy():
    model, _ = model_pair()
    averaged = swa_utils.AveragedModel(model)
    assert averaged.module[0].weight is not model[0].weight
    with pytest.raises(AssertionError, match="Only one of"):
        swa_utils.AveragedModel(model, avg_fn=swa_utils.get_swa_avg_fn(),
                                multi_avg_fn=swa_utils.get_swa_multi_avg_fn())
    with pytest.raises(ValueError, match="decay"):
        swa_utils.get_ema_multi_avg_fn(1.5)


@pytest.mark.parametrize("options", [dict(swa_lr=0.05), dict(swa_lr=[0.01, 0.2],
                                                             anneal_epochs=4,
                                                             anneal_strategy="linear"),
                                     dict(swa_lr=0.3, anneal_epochs=0)], ids=str)
def test_swalr_matches_torch(options):
    lrs = (0.1, 0.02)
    opt = px.optim.SGD([{"params": [px.tensor([1.0], requires_grad=True)], "lr": lr}
                        for lr in lrs])
    topt = torch.optim.SGD([{"params": [torch.tensor([1.0], requires_grad=True)], "lr": lr}
                            for lr in lrs])
    s, ts = swa_utils.SWALR(opt, **options), torch.optim.swa_utils.SWALR(topt, **options)
    for step in range(15):
        assert s.get_last_lr() == pytest.approx(ts.get_last_lr(), rel=1e-12), step
        opt.step(), topt.step()
        s.step(), ts.step()
    state = s.state_dict()
    assert "anneal_func" not in state and "optimizer" not in state
    s2 = swa_utils.SWALR(opt, swa_lr=1.0, anneal_strategy="linear")
    s2.load_state_dict(state)
    assert s2.anneal_func(0.5) == s.anneal_func(0.5)


def test_update_bn_matches_torch():
    model, tmodel = model_pair()
    rng = np.random.default_rng(2)
    batches = [rng.standard_normal((5, 3)) * (i + 1) for i in range(4)]
    model.eval(), tmodel.eval()
    swa_utils.update_bn([(px.tensor(b), 0) for b in batches], model)
    torch.optim.swa_utils.update_bn([(torch.tensor(b), 0) for b in batches], tmodel)
    assert not model.training and model[1].momentum == 0.1
    assert_same_state(model, tmodel)


def test_swa_errors():
    opt = px.optim.SGD([px.tensor([1.0], requires_grad=True)])
    with pytest.raises(ValueError, match="anneal_strategy"):
        swa_utils.SWALR(opt, 0.1, anneal_strategy="step")
    with pytest.raises(ValueError, match="anneal_epochs"):
        swa_utils.SWALR(opt, 0.1, anneal_epochs=-1)
