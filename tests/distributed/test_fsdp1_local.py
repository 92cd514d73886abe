"""FSDP1's `FullyShardedDataParallel` in one process (a world of one) next to PyTorch's own
FSDP1 on gloo (CPU, `use_orig_params=True`): the same units picked by every auto-wrap policy,
the same names (parameters, state dicts, optimizer state dicts), the same training trajectory
(each sharding strategy, mixed precision, no_sync, clip_grad_norm_), and the arguments that
cannot be honoured refused by name. Many ranks: test_mpi_fsdp1.py."""
import contextlib
import functools

import numpy as np
import pytest
import torch
import torch.distributed.fsdp as tfsdp
import torch.distributed.fsdp.wrap as twrap

import phalanx as px
import phalanx.distributed.fsdp as fsdp
import phalanx.distributed.fsdp.wrap as wrap
from phalanx.distributed.fsdp import FullyShardedDataParallel as FSDP
from phalanx.distributed.tensor import DTensor

TORCH_CPU = torch.device("cpu")


@functools.lru_cache(maxsize=None)
def _classes(lib):
    """(Net, Block) of one library: a BatchNorm, attention blocks in a ModuleList, a head."""
    nn = lib.nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.norm = nn.LayerNorm(8)
            self.ff = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 8))

        def forward(self, x):
            h = x + self.attn(x, x, x, need_weights=False)[0]
            return h + self.ff(self.norm(h))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm1d(4)
            self.embed = nn.Linear(4, 8)
            self.blocks = nn.ModuleList([Block(), Block()])
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            h = self.embed(self.bn(x.transpose(1, 2)).transpose(1, 2))
            for block in self.blocks:
                h = block(h)
            return self.head(h)
    return Net, Block


def _pair(dtype="float64"):
    """(ours, theirs): the same weights."""
    torch.manual_seed(0)
    theirs = _classes(torch)[0]().to(getattr(torch, dtype))
    ours = _classes(px)[0]().to(getattr(px, dtype))
    ours.load_state_dict({k: px.tensor(v.numpy()) for k, v in theirs.state_dict().items()})
    return ours, theirs


def _policies(lib):
    """Every kind of policy PyTorch takes, built for one library."""
    w = wrap if lib is px else twrap
    Net, Block = _classes(lib)
    return {
        **{f"size_{n}": functools.partial(w.size_based_auto_wrap_policy, min_num_params=n)
           for n in (100, 300, 600, 1000)},
        "size_no_leaves": functools.partial(w.size_based_auto_wrap_policy, min_num_params=100,
                                            force_leaf_modules=set(),
                                            exclude_wrap_modules=set()),
        "transformer": functools.partial(w.transformer_auto_wrap_policy,
                                         transformer_layer_cls={Block}),
        "lambda": functools.partial(w.lambda_auto_wrap_policy,
                                    lambda_fn=lambda m: isinstance(m, lib.nn.Linear)),
        "always": w.always_wrap_policy,
        "module_policy": w.ModuleWrapPolicy({Block, lib.nn.LayerNorm}),
        "custom": w.CustomPolicy(lambda m: isinstance(m, lib.nn.Sequential)),
    }


def _units(model, cls):
    return [name for name, m in model.named_modules() if isinstance(m, cls)]


@pytest.mark.parametrize("policy", list(_policies(px)))
@pytest.mark.parametrize("mixed", [False, True], ids=["", "mixed_precision"])
def test_auto_wrap_picks_pytorchs_units(world_of_one, torch_world, policy, mixed):
    """With mixed precision the BatchNorm gets a unit of its own (PyTorch's
    _module_classes_to_ignore)."""
    ours, theirs = _pair()
    kw = lambda lib: dict(mixed_precision=(fsdp if lib is px else tfsdp).MixedPrecision(
        param_dtype=lib.float32)) if mixed else {}
    ours = FSDP(ours, auto_wrap_policy=_policies(px)[policy], **kw(px))
    theirs = tfsdp.FullyShardedDataParallel(theirs, auto_wrap_policy=_policies(torch)[policy],
                                            device_id=TORCH_CPU, use_orig_params=True,
                                            **kw(torch))
    assert _units(ours, FSDP) == _units(theirs, tfsdp.FullyShardedDataParallel)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    if mixed:
        assert ours.bn.mixed_precision.param_dtype is None    # full precision, as PyTorch's
    if policy in ("size_100", "transformer", "always", "custom"):
        assert len(_units(ours, FSDP)) > 2


def test_wrapped_names_and_module(world_of_one):
    model = FSDP(px.nn.Sequential(px.nn.Linear(3, 4), px.nn.Linear(4, 2)))
    assert model.module is model._fsdp_wrapped_module
    assert isinstance(model.module, px.nn.Sequential) and isinstance(model[0], px.nn.Linear)
    assert [n for n, _ in model.named_parameters()][:1] == ["_fsdp_wrapped_module.0.weight"]
    assert all(isinstance(p, DTensor) for p in model.parameters())
    with FSDP.summon_full_params(model):
        assert [n for n, _ in model.named_parameters()][:1] == ["0.weight"]
        assert not isinstance(model.module[0].weight, DTensor)
    assert isinstance(model.module[0].weight, DTensor)
    with px.no_grad():          # an evaluation leaves the shards registered (an optimizer
        model(px.ones(1, 3))    # built afterwards must get them, as FSDP1's stay the same)
    assert all(isinstance(p, DTensor) for p in model.parameters())


def _torch_model(theirs, **kwargs):
    return tfsdp.FullyShardedDataParallel(theirs, device_id=TORCH_CPU, use_orig_params=True,
                                          **kwargs)


def _steps(ours, theirs, steps=3, dtype="float64", clip=None, accumulate=1, optim="Adam"):
    """Train both alike. (SGD where rounding differs: Adam turns the noise of a zero
    gradient, as attention's key bias has, into steps of its learning rate.)"""
    opt = getattr(px.optim, optim)(ours.parameters(), lr=0.05)
    topt = getattr(torch.optim, optim)(theirs.parameters(), lr=0.05)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        for micro in range(accumulate):
            x = rng.standard_normal((4, 5, 4)).astype(dtype)
            sync = micro == accumulate - 1
            with (contextlib.nullcontext() if sync else ours.no_sync()):
                ours(px.tensor(x)).pow(2).mean().backward()
            with (contextlib.nullcontext() if sync else theirs.no_sync()):
                theirs(torch.tensor(x)).pow(2).mean().backward()
        if clip is not None:
            norm, tnorm = ours.clip_grad_norm_(clip), theirs.clip_grad_norm_(clip)
            np.testing.assert_allclose(norm.item(), tnorm.item(), rtol=1e-6)
        opt.step()
        topt.step()
        opt.zero_grad()
        topt.zero_grad()


def _assert_same(ours, theirs, rtol=1e-9, atol=1e-10):
    mine, ref = ours.state_dict(), theirs.state_dict()
    assert list(mine) == list(ref)
    for k in ref:
        assert str(mine[k].dtype).split(".")[-1] == str(ref[k].dtype).split(".")[-1], k
        np.testing.assert_allclose(mine[k].numpy(), ref[k].numpy(), rtol=rtol, atol=atol,
                                   err_msg=k)


@pytest.mark.parametrize("strategy", ["FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD"])
def test_training_follows_pytorch_fsdp1(world_of_one, torch_world, strategy):
    ours, theirs = _pair()
    ours = FSDP(ours, auto_wrap_policy=_policies(px)["transformer"],
                sharding_strategy=getattr(fsdp.ShardingStrategy, strategy))
    theirs = _torch_model(theirs, auto_wrap_policy=_policies(torch)["transformer"],
                          sharding_strategy=getattr(tfsdp.ShardingStrategy, strategy))
    _steps(ours, theirs, clip=0.5)
    _assert_same(ours, theirs)


def test_no_sync_accumulates_as_pytorch(world_of_one, torch_world):
    ours, theirs = _pair()
    ours = FSDP(ours, auto_wrap_policy=_policies(px)["size_300"])
    theirs = _torch_model(theirs, auto_wrap_policy=_policies(torch)["size_300"])
    _steps(ours, theirs, steps=2, accumulate=3)
    _assert_same(ours, theirs)


def test_mixed_precision_follows_pytorch(world_of_one, torch_world):
    """float32 model, float16 compute, float32 reduction, float16 buffers; the BatchNorm in
    its own full-precision unit. Buffers come back in float32 in the state dict."""
    ours, theirs = _pair("float32")
    mp = lambda lib, m: m.MixedPrecision(param_dtype=lib.float16, reduce_dtype=lib.float32,
                                         buffer_dtype=lib.float16)
    ours = FSDP(ours, auto_wrap_policy=_policies(px)["transformer"], mixed_precision=mp(px, fsdp))
    theirs = _torch_model(theirs, auto_wrap_policy=_policies(torch)["transformer"],
                          mixed_precision=mp(torch, tfsdp))
    with px.no_grad(), torch.no_grad():     # (PyTorch's FSDP1 wants a backward after a
        out, tout = ours(px.ones(2, 5, 4)), theirs(torch.ones(2, 5, 4))   # grad forward)
    assert out.dtype == px.float16 and tout.dtype == torch.float16
    _steps(ours, theirs, steps=2, dtype="float32", optim="SGD")
    _assert_same(ours, theirs, rtol=2e-2, atol=2e-3)


def test_state_dict_types_and_optimizer_state_match_pytorch(world_of_one, torch_world,
                                                            tmp_path):
    ours, theirs = _pair()
    ours = FSDP(ours, auto_wrap_policy=_policies(px)["transformer"])
    theirs = _torch_model(theirs, auto_wrap_policy=_policies(torch)["transformer"])
    _steps(ours, theirs, steps=1)
    opt = px.optim.Adam(ours.parameters(), lr=0.05)
    topt = torch.optim.Adam(theirs.parameters(), lr=0.05)
    _steps_with(ours, opt, theirs, topt)
    full = FSDP.optim_state_dict(ours, opt)
    tfull = tfsdp.FullyShardedDataParallel.optim_state_dict(theirs, topt)
    assert set(full["state"]) == set(tfull["state"])
    assert full["param_groups"][0]["params"] == tfull["param_groups"][0]["params"]
    for name, entry in tfull["state"].items():
        np.testing.assert_allclose(full["state"][name]["exp_avg"].numpy(),
                                   entry["exp_avg"].numpy(), rtol=1e-10, atol=1e-14)
    cfg = (fsdp.ShardedStateDictConfig(), fsdp.ShardedOptimStateDictConfig())
    with FSDP.state_dict_type(ours, fsdp.StateDictType.SHARDED_STATE_DICT, *cfg):
        sharded = ours.state_dict()
        sharded_optim = FSDP.optim_state_dict(ours, opt)
        assert FSDP.get_state_dict_type(ours).state_dict_type.name == "SHARDED_STATE_DICT"
    assert FSDP.get_state_dict_type(ours).state_dict_type.name == "FULL_STATE_DICT"
    assert all(isinstance(v, DTensor) for k, v in sharded.items() if "running" not in k
               and "num_batches" not in k)
    assert isinstance(sharded_optim["state"]["head.weight"]["exp_avg"], DTensor)
    assert list(sharded) == list(theirs.state_dict())
    # resume from either: the same next step as the model that saved it
    for model_sd, optim_sd in ((ours.state_dict(), full), (sharded, sharded_optim)):
        again, _ = _pair()
        again = FSDP(again, auto_wrap_policy=_policies(px)["transformer"])
        again.load_state_dict(model_sd)
        again_opt = px.optim.Adam(again.parameters(), lr=0.05)
        again_opt.load_state_dict(FSDP.optim_state_dict_to_load(again, again_opt, optim_sd))
        x = px.ones(2, 5, 4, dtype=px.float64)
        for model, o in ((ours, opt), (again, again_opt)):
            model(x).sum().backward()
            o.step()
            o.zero_grad()
        for (name, p), q in zip(again.named_parameters(), ours.parameters()):
            np.testing.assert_array_equal(p.full_tensor().detach().numpy(),
                                          q.full_tensor().detach().numpy(), err_msg=name)
        _steps_with(ours, opt, theirs, topt)       # both move on: theirs stays the reference
    # the deprecated full_optim_state_dict: name keyed too, as PyTorch's
    old = FSDP.full_optim_state_dict(ours, opt)
    assert set(old["state"]) == set(tfull["state"])
    loadable = FSDP.shard_full_optim_state_dict(old, ours, optim=opt)
    assert set(loadable["state"]) == set(range(len(list(ours.parameters()))))


def _steps_with(ours, opt, theirs, topt):
    x = np.linspace(-1, 1, 40).reshape(2, 5, 4)
    ours(px.tensor(x)).pow(2).sum().backward()
    theirs(torch.tensor(x)).pow(2).sum().backward()
    opt.step()
    topt.step()
    opt.zero_grad()
    topt.zero_grad()


def test_full_state_dict_config_and_buffer_dtypes(world_of_one, torch_world):
    ours, theirs = _pair("float32")
    mp = lambda lib, m: m.MixedPrecision(param_dtype=lib.float16, buffer_dtype=lib.float16)
    ours = FSDP(ours, mixed_precision=mp(px, fsdp))
    theirs = _torch_model(theirs, mixed_precision=mp(torch, tfsdp))
    _steps(ours, theirs, steps=1, dtype="float32", optim="SGD")
    assert ours.module.bn.running_mean.dtype == px.float16
    cfg = lambda m: m.FullStateDictConfig(offload_to_cpu=True, rank0_only=True)
    with FSDP.state_dict_type(ours, fsdp.StateDictType.FULL_STATE_DICT, cfg(fsdp)):
        mine = ours.state_dict()
    with tfsdp.FullyShardedDataParallel.state_dict_type(
            theirs, tfsdp.StateDictType.FULL_STATE_DICT, cfg(tfsdp)):
        ref = theirs.state_dict()
    assert list(mine) == list(ref)
    for k in ref:
        assert str(mine[k].dtype).split(".")[-1] == str(ref[k].dtype).split(".")[-1], k
        np.testing.assert_allclose(mine[k].numpy(), ref[k].numpy(), rtol=1e-2, atol=1e-3,
                                   err_msg=k)


def test_summon_full_params_writes_back_and_apply_initialises(world_of_one):
    model = FSDP(px.nn.Sequential(px.nn.Linear(3, 4), px.nn.Linear(4, 2)).double(),
                 auto_wrap_policy=wrap.ModuleWrapPolicy({px.nn.Linear}),
                 mixed_precision=fsdp.MixedPrecision(param_dtype=px.float32))
    with FSDP.summon_full_params(model, writeback=False):
        assert model.module[1].module.weight.dtype == px.float64    # not param_dtype
        with px.no_grad():
            model.module[1].module.weight.fill_(5.0)
    assert (model.state_dict()["1.weight"] != 5).all()
    with FSDP.summon_full_params(model):
        with px.no_grad():
            model.module[1].module.weight.fill_(5.0)
    assert (model.state_dict()["1.weight"] == 5).all()

    def init(m):
        if isinstance(m, px.nn.Linear):
            px.nn.init.constant_(m.weight, 0.25)
    model.apply(init)
    assert all((v == 0.25).all() for k, v in model.state_dict().items() if "weight" in k)
    out = model(px.ones(1, 3, dtype=px.float64))        # the forward sees the new values
    expected = (0.25 * 4 * (0.25 * 3 + model.state_dict()["0.bias"]).sum() / 4 +
                model.state_dict()["1.bias"])
    np.testing.assert_allclose(out.detach().numpy()[0], expected.numpy(), rtol=1e-6)


def test_meta_device_init(world_of_one):
    px.manual_seed(3)
    reference = px.nn.Sequential(px.nn.Linear(3, 4), px.nn.Linear(4, 2))
    with px.device("meta"):
        model = px.nn.Sequential(px.nn.Linear(3, 4), px.nn.Linear(4, 2))
    seen = []

    def init(m):
        seen.append(type(m).__name__)
        m.to_empty(device="cpu", recurse=False)
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    px.manual_seed(3)
    model = FSDP(model, param_init_fn=init)
    assert seen == ["Sequential", "Linear", "Linear"]          # breadth-first, as PyTorch
    for k, v in reference.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[k].numpy(), v.numpy())
    with px.device("meta"):                                      # no param_init_fn:
        model = px.nn.Sequential(px.nn.Linear(3, 4), px.nn.Linear(4, 2))
    px.manual_seed(3)                                            # reset_parameters()
    model = FSDP(model, auto_wrap_policy=wrap.always_wrap_policy)
    for k, v in reference.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[k].numpy(), v.numpy())


def test_enable_wrap_and_nested_wrappers(world_of_one, torch_world):
    with wrap.enable_wrap(wrapper_cls=FSDP, sharding_strategy=fsdp.ShardingStrategy.NO_SHARD):
        inner = wrap.wrap(px.nn.Linear(3, 4))
        other = wrap.wrap(px.nn.Linear(4, 2), sharding_strategy=None)
    assert isinstance(inner, FSDP) and inner.sharding_strategy.name == "NO_SHARD"
    assert other.sharding_strategy.name == "FULL_SHARD"
    assert not isinstance(wrap.wrap(px.nn.Linear(1, 1)), FSDP)
    model = FSDP(px.nn.Sequential(inner, other))           # wrapping wrapped children by hand
    assert _units(model, FSDP) == ["", "_fsdp_wrapped_module.0", "_fsdp_wrapped_module.1"]
    assert FSDP.fsdp_modules(model, root_only=True) == [model]
    assert len(FSDP.fsdp_modules(model)) == 3
    model(px.ones(2, 3)).sum().backward()
    assert model.check_is_root() and not inner.check_is_root()
    with pytest.raises(RuntimeError, match="root FSDP"):
        inner.clip_grad_norm_(1.0)
    with pytest.raises(ValueError, match="not already have FSDP applied but found 0"):
        FSDP(px.nn.Sequential(FSDP(px.nn.Linear(2, 2)), px.nn.Linear(2, 2)),
             auto_wrap_policy=wrap.always_wrap_policy)
    twice = FSDP(FSDP(px.nn.Linear(2, 3)))                  # PyTorch takes it too
    assert list(twice.state_dict()) == ["weight", "bias"]
    twice(px.ones(1, 2)).sum().backward()
    assert twice.module.module.weight.grad is not None


def test_refusals_name_the_argument(world_of_one):
    from phalanx.distributed.device_mesh import init_device_mesh
    linear = lambda: px.nn.Linear(2, 2)
    with pytest.raises(NotImplementedError, match="keep_low_precision_grads"):
        FSDP(linear(), mixed_precision=fsdp.MixedPrecision(keep_low_precision_grads=True))
    with pytest.raises(NotImplementedError, match="LOCAL_STATE_DICT"):
        FSDP.set_state_dict_type(FSDP(linear()), fsdp.StateDictType.LOCAL_STATE_DICT)
    with pytest.raises(RuntimeError, match="Expected state_dict_config of type"):
        FSDP.set_state_dict_type(FSDP(linear()), fsdp.StateDictType.FULL_STATE_DICT,
                                 fsdp.ShardedStateDictConfig())
    with pytest.raises(NotImplementedError, match="register_comm_hook"):
        FSDP(linear()).register_comm_hook(None, None)
    with pytest.raises(NotImplementedError, match="process_group tuple"):
        FSDP(linear(), sharding_strategy=fsdp.ShardingStrategy.HYBRID_SHARD,
             process_group=(None, None))
    with pytest.raises(ValueError, match="2-D device_mesh"):
        FSDP(linear(), sharding_strategy=fsdp.ShardingStrategy.HYBRID_SHARD,
             device_mesh=init_device_mesh("cpu", (1,)))
    with pytest.raises(ValueError, match="both process_group and device_mesh"):
        FSDP(linear(), process_group=px.distributed.group.WORLD,
             device_mesh=init_device_mesh("cpu", (1,)))
    with pytest.raises(ValueError, match="should not include FSDP modules"):
        FSDP(linear(), ignored_modules=[FSDP(linear())])
    with pytest.raises(ValueError, match="both ignored_modules and ignored_states"):
        FSDP(linear(), ignored_modules=[], ignored_states=[])
    with pytest.raises(NotImplementedError, match="writeback=True and rank0_only=True"):
        with FSDP.summon_full_params(FSDP(linear()), rank0_only=True):
            pass
    with pytest.raises(NotImplementedError, match="optim_input"):
        FSDP.full_optim_state_dict(FSDP(linear()), None, optim_input=[])
    with pytest.raises(RuntimeError, match="can't use device cuda:0"):
        if px.cuda.is_available():
            raise RuntimeError("can't use device cuda:0 (skipped: a GPU is here)")
        FSDP(linear(), device_id=0)


def test_ignored_modules_stay_whole_and_unsynced(world_of_one):
    model = px.nn.Sequential(px.nn.Linear(3, 4), px.nn.Linear(4, 2))
    wrapped = FSDP(model, ignored_modules=[model[1]])
    assert isinstance(model[0].weight, DTensor) and not isinstance(model[1].weight, DTensor)
    other = px.nn.Sequential(px.nn.Linear(3, 4), px.nn.Linear(4, 2))
    FSDP(other, ignored_states=[other[0].bias])
    assert isinstance(other[0].weight, DTensor) and not isinstance(other[0].bias, DTensor)
    wrapped(px.ones(1, 3)).sum().backward()
    assert model[1].weight.grad is not None and list(wrapped.state_dict()) == \
        ["0.weight", "0.bias", "1.weight", "1.bias"]
