"""`torch.distributed.algorithms._checkpoint.checkpoint_wrapper` (checkpoint_wrapper,
offload_wrapper, apply_activation_checkpointing) against PyTorch's: the same modules wrapped,
the wrapper's name hidden from parameter names and state dicts, the same gradients, and the
wrapped blocks really recomputed in backward; plus `_composable`'s checkpoint(module) and
FSDP2's older import path."""
import functools

import numpy as np
import pytest
import torch
import torch.distributed.algorithms._checkpoint.checkpoint_wrapper as theirs

import phalanx as px
import phalanx.distributed.algorithms._checkpoint.checkpoint_wrapper as ours
from phalanx.distributed.fsdp.wrap import size_based_auto_wrap_policy


def _model(lib, calls):
    class Block(lib.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.norm = lib.nn.Linear(6, 6), lib.nn.LayerNorm(6)

        def forward(self, x, scale=1.0):
            calls.append(type(self).__name__)
            return x + self.norm(self.fc(x)).tanh() * scale

    class Net(lib.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = lib.nn.ModuleList(Block() for _ in range(3))
            self.head = lib.nn.Linear(6, 2)

        def forward(self, x):
            for i, block in enumerate(self.blocks):
                x = block(x, scale=0.5 * (i + 1))
            return self.head(x)
    return Net().double(), Block


def _pair(apply):
    calls = {px: [], torch: []}
    models = {}
    for lib, api in ((px, ours), (torch, theirs)):
        lib.manual_seed(0)
        model, block = _model(lib, calls[lib])
        apply(lib, api, model, block)
        models[lib] = model
    models[px].load_state_dict({k: px.tensor(v.numpy())
                                for k, v in models[torch].state_dict().items()})
    return models, calls


def _step(models, calls):
    x = np.random.default_rng(0).standard_normal((4, 6))
    grads = {}
    for lib, model in models.items():
        calls[lib].clear()
        inputs = lib.tensor(x, requires_grad=True)
        model(inputs).square().sum().backward()
        grads[lib] = [inputs.grad.numpy()] + [p.grad.numpy() for p in model.parameters()]
    for a, b in zip(grads[px], grads[torch]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    assert calls[px] == calls[torch]


@pytest.mark.parametrize("impl", ["NO_REENTRANT", "REENTRANT"])
def test_apply_activation_checkpointing_wraps_recomputes_and_hides_its_name(impl):
    def apply(lib, api, model, block):
        wrapper = functools.partial(api.checkpoint_wrapper,
                                    checkpoint_impl=getattr(api.CheckpointImpl, impl))
        api.apply_activation_checkpointing(model, checkpoint_wrapper_fn=wrapper,
                                           check_fn=lambda m: isinstance(m, block))
    models, calls = _pair(apply)
    for lib, api in ((px, ours), (torch, theirs)):
        assert all(isinstance(b, api.CheckpointWrapper) for b in models[lib].blocks)
        assert models[lib].blocks[0].fc is models[lib].blocks[0]._checkpoint_wrapped_module.fc
    assert [n for n, _ in models[px].named_parameters()] == \
        [n for n, _ in models[torch].named_parameters()]
    assert list(models[px].state_dict()) == list(models[torch].state_dict()) == \
        ["blocks.0.fc.weight", "blocks.0.fc.bias", "blocks.0.norm.weight",
         "blocks.0.norm.bias", "blocks.1.fc.weight", "blocks.1.fc.bias",
         "blocks.1.norm.weight", "blocks.1.norm.bias", "blocks.2.fc.weight",
         "blocks.2.fc.bias", "blocks.2.norm.weight", "blocks.2.norm.bias", "head.weight",
         "head.bias"]
    _step(models, calls)
    assert calls[px] == ["Block"] * 6      # each block's forward ran again in backward


def test_policies_offload_and_checkpoint_function_arguments():
    def apply(lib, api, model, block):
        wrap = lib.distributed.fsdp.wrap
        api.apply_activation_checkpointing(model, auto_wrap_policy=wrap.ModuleWrapPolicy(
            {block}))
        model.head = api.offload_wrapper(model.head)
    models, calls = _pair(apply)
    assert isinstance(models[px].head, ours.OffloadWrapper)
    assert list(models[px].state_dict()) == list(models[torch].state_dict())
    _step(models, calls)
    assert calls[px] == ["Block"] * 6

    seen = []

    def my_checkpoint(fn, *args, use_reentrant, marker, **kwargs):
        seen.append(marker)
        return px.utils.checkpoint.checkpoint(fn, *args, use_reentrant=use_reentrant, **kwargs)
    block = ours.checkpoint_wrapper(px.nn.Linear(2, 2), checkpoint_fn=my_checkpoint,
                                    use_reentrant=False, marker="mine")
    block(px.ones(1, 2, requires_grad=True)).sum().backward()
    assert seen == ["mine"] and block.weight.grad is not None     # attributes reach through


def test_size_based_policy_picks_as_pytorchs_and_a_checkpoint_loads_either_way():
    policy = {px: functools.partial(size_based_auto_wrap_policy, min_num_params=40),
              torch: functools.partial(
                  torch.distributed.fsdp.wrap.size_based_auto_wrap_policy, min_num_params=40)}

    def apply(lib, api, model, block):
        api.apply_activation_checkpointing(model, auto_wrap_policy=policy[lib])
    models, calls = _pair(apply)
    wrapped = {lib: sorted(n for n, m in model.named_modules()
                           if type(m).__name__ == "CheckpointWrapper")
               for lib, model in models.items()}
    assert wrapped[px] == wrapped[torch] and wrapped[px]
    _step(models, calls)
    plain, _ = _model(px, [])
    plain.load_state_dict(models[px].state_dict())        # wrapped -> plain, and back
    models[px].load_state_dict(plain.state_dict())


@pytest.mark.parametrize("fsdp", ["FSDP1", "fully_shard"])
def test_checkpointed_blocks_inside_sharded_models_train_as_plain_ones(world_of_one, fsdp):
    """pytorch/examples' T5 FSDP recipe: shard the blocks, then apply_activation_checkpointing
    with a check_fn on the block class (it wraps the module inside each FSDP unit); the
    gradients are the plain model's and the blocks ran again in backward."""
    from phalanx.distributed.fsdp import FullyShardedDataParallel, fully_shard
    from phalanx.distributed.fsdp.wrap import ModuleWrapPolicy
    calls = []
    px.manual_seed(0)
    model, block = _model(px, calls)
    plain, _ = _model(px, [])
    plain.load_state_dict(model.state_dict())
    if fsdp == "FSDP1":
        model = FullyShardedDataParallel(model, auto_wrap_policy=ModuleWrapPolicy({block}))
    else:
        for b in model.blocks:
            fully_shard(b)
        fully_shard(model)
    ours.apply_activation_checkpointing(model, check_fn=lambda m: isinstance(m, block))
    x = px.tensor(np.random.default_rng(0).standard_normal((4, 6)))
    model(x).square().sum().backward()
    plain(x).square().sum().backward()
    assert len(calls) == 6          # (fully_shard renames the class FSDPBlock)
    for (name, p), q in zip(model.named_parameters(), plain.parameters()):
        np.testing.assert_allclose(p.grad.full_tensor().numpy(), q.grad.numpy(), rtol=1e-10,
                                   atol=1e-12, err_msg=name)


def test_composable_checkpoint_keeps_the_module_and_recomputes_it():
    """torch.distributed._composable.checkpoint(module): no wrapper, names unchanged, the
    module's forward (keyword inputs too) recomputed in backward, PyTorch's gradients."""
    from torch.distributed._composable import checkpoint as their_checkpoint

    from phalanx.distributed._composable import checkpoint as our_checkpoint

    def apply(lib, api, model, block):
        for b in model.blocks:
            (our_checkpoint if lib is px else their_checkpoint)(b)
    models, calls = _pair(apply)
    assert type(models[px].blocks[0]).__name__ == "Block"
    assert list(models[px].state_dict()) == list(models[torch].state_dict())
    _step(models, calls)
    assert calls[px] == ["Block"] * 6
    with pytest.raises(NotImplementedError, match="use_reentrant=True"):
        our_checkpoint(px.nn.Linear(2, 2), use_reentrant=True)
    with pytest.raises(ValueError, match="Unexpected keyword arguments: nope"):
        our_checkpoint(px.nn.Linear(2, 2), nope=1)


def test_fsdp2s_older_import_path():
    from phalanx.distributed._composable.fsdp import MixedPrecisionPolicy, fully_shard
    from phalanx.distributed.fsdp import fully_shard as current
    assert fully_shard is current and MixedPrecisionPolicy(param_dtype=px.float16)
