"""FSDP over tensor parallelism on a 2-D mesh (dp, tp), as pytorch/examples'
fsdp_tp_example.py does it: the TP tutorial's plan on mesh["tp"], then fully_shard on
mesh["dp"]. Each data-parallel rank trains on its own batch, the ranks of one TP group on
the same one; the weights follow one process on the concatenated batch (float64), with
clipping, and the checkpoints (full state dicts and DCP) round-trip. Every 2-D layout of the
world is tried (4 ranks: 2 x 2, 1 x 4, 4 x 1)."""
import copy

import numpy as np
import pytest

import phalanx as px
import phalanx.distributed as dist
import phalanx.distributed.checkpoint as dcp
import phalanx.nn as nn
import phalanx.nn.functional as F
from phalanx.distributed.checkpoint.state_dict import (StateDictOptions, get_state_dict,
                                                       set_model_state_dict, set_state_dict)
from phalanx.distributed.device_mesh import init_device_mesh
from phalanx.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from phalanx.distributed.tensor import DTensor, Replicate, Shard
from phalanx.distributed.tensor.parallel import (ColwiseParallel, PrepareModuleInput,
                                                 RowwiseParallel, SequenceParallel,
                                                 parallelize_module)

pytestmark = [pytest.mark.mpi(min_size=2), pytest.mark.timeout(120)]

VOCAB, DIM, HEADS, SEQ, PER_RANK = 13, 24, 12, 12, 2


@pytest.fixture(scope="module", autouse=True)
def world():
    if not dist.is_initialized():
        dist.init_process_group()
    return dist.get_rank(), dist.get_world_size()


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.n_heads, self.head_dim = HEADS, DIM // HEADS
        self.wq, self.wk, self.wv, self.wo = (nn.Linear(DIM, DIM, bias=False)
                                              for _ in range(4))

    def forward(self, x):
        bsz, seqlen, _ = x.shape
        q, k, v = (w(x).view(bsz, seqlen, self.n_heads, self.head_dim).transpose(1, 2)
                   for w in (self.wq, self.wk, self.wv))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.wo(out.transpose(1, 2).contiguous().view(bsz, seqlen, -1))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention_norm, self.ffn_norm = nn.LayerNorm(DIM), nn.LayerNorm(DIM)
        self.attention = Attention()
        self.w1, self.w2 = nn.Linear(DIM, 10), nn.Linear(10, DIM)

    def forward(self, x):
        h = x + self.attention(self.attention_norm(x))
        return h + self.w2(F.gelu(self.w1(self.ffn_norm(h))))


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok_embeddings = nn.Embedding(VOCAB, DIM)
        self.layers = nn.ModuleList(Block() for _ in range(2))
        self.norm = nn.LayerNorm(DIM)
        self.output = nn.Linear(DIM, VOCAB, bias=False)

    def forward(self, tokens):
        h = self.tok_embeddings(tokens)
        for layer in self.layers:
            h = layer(h)
        return self.output(self.norm(h))


def _two_d(model, mesh, **fsdp_options):
    """fsdp_tp_example.py's parallelization: TP (with sequence parallelism) on mesh["tp"],
    then FSDP on mesh["dp"] (with `fsdp_options`)."""
    tp = mesh["tp"]
    parallelize_module(model, tp, {
        "tok_embeddings": RowwiseParallel(input_layouts=Replicate(), output_layouts=Shard(1)),
        "norm": SequenceParallel(),
        "output": ColwiseParallel(input_layouts=Shard(1), output_layouts=Replicate())})
    for block in model.layers:
        parallelize_module(block, tp, {
            "attention_norm": SequenceParallel(),
            "attention": PrepareModuleInput(input_layouts=(Shard(1),),
                                            desired_input_layouts=(Replicate(),)),
            "attention.wq": ColwiseParallel(), "attention.wk": ColwiseParallel(),
            "attention.wv": ColwiseParallel(),
            "attention.wo": RowwiseParallel(output_layouts=Shard(1)),
            "ffn_norm": SequenceParallel(),
            "w1": ColwiseParallel(input_layouts=Shard(1)),
            "w2": RowwiseParallel(output_layouts=Shard(1))})
        block.attention.n_heads //= tp.size()
        fully_shard(block, mesh=mesh["dp"], **fsdp_options)
    return fully_shard(model, mesh=mesh["dp"], **fsdp_options)


def _batches(steps, dp_size):
    rng = np.random.default_rng(7)
    return [px.tensor(rng.integers(0, VOCAB, (dp_size * PER_RANK, SEQ + 1)))
            for _ in range(steps)]


def _whole(t):
    t = t.detach()
    return (t.full_tensor() if isinstance(t, DTensor) else t).numpy()


def _assert_trained_alike(model, reference):
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        np.testing.assert_allclose(_whole(p), q.detach().numpy(), rtol=1e-9, atol=1e-12,
                                   err_msg=name)


@pytest.mark.parametrize("tp", [1, 2, 3, 4], ids=lambda n: f"tp{n}")
def test_fsdp_over_tensor_parallel_matches_one_process(world, tp, tmp_path):
    rank, size = world
    if size % tp:
        pytest.skip(f"{size} ranks make no (dp, {tp}) mesh")
    layout = (size // tp, tp)
    mesh = init_device_mesh("cpu", layout, mesh_dim_names=("dp", "tp"))
    dp = mesh.get_local_rank("dp")
    px.manual_seed(0)
    model = Model().double()
    reference = copy.deepcopy(model)
    _two_d(model, mesh)
    weight = model.layers[0].attention.wq.weight
    assert isinstance(weight, DTensor) and weight.device_mesh.shape == layout
    assert weight.placements == (Shard(0), Shard(0)) and weight.shape == (DIM, DIM)
    assert model.layers[0].w2.weight.placements == (Shard(0), Shard(1))

    opt = px.optim.AdamW(model.parameters(), lr=0.02)
    ref_opt = px.optim.AdamW(reference.parameters(), lr=0.02)
    for tokens in _batches(3, layout[0]):
        mine = tokens[dp * PER_RANK:(dp + 1) * PER_RANK]       # this dp rank's rows
        loss = F.cross_entropy(model(mine[:, :-1]).flatten(0, 1), mine[:, 1:].flatten())
        loss.backward()
        assert model.layers[0]._fsdp_state.params[0].unsharded.is_meta   # freed again
        norm = nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        ref_loss = F.cross_entropy(reference(tokens[:, :-1]).flatten(0, 1),
                                   tokens[:, 1:].flatten())
        ref_loss.backward()
        ref_norm = nn.utils.clip_grad_norm_(reference.parameters(), 0.5)
        np.testing.assert_allclose(norm.item(), ref_norm.item(), rtol=1e-10)
        for o in (opt, ref_opt):
            o.step()
            o.zero_grad()
    _assert_trained_alike(model, reference)

    # checkpoints: a full state dict into a plain model, DCP into a fresh 2-D model
    full, _ = get_state_dict(model, opt, options=StateDictOptions(full_state_dict=True))
    plain = Model().double()
    plain.load_state_dict(full)
    where = [str(tmp_path) if rank == 0 else None]
    dist.broadcast_object_list(where, src=0)
    folder = f"{where[0]}/ckpt"
    model_sd, optim_sd = get_state_dict(model, opt)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=folder)
    px.manual_seed(1)
    fresh = _two_d(Model().double(), mesh)
    fresh_opt = px.optim.AdamW(fresh.parameters(), lr=0.02)
    fresh_sd, fresh_optim_sd = get_state_dict(fresh, fresh_opt)
    dcp.load({"model": fresh_sd, "optim": fresh_optim_sd}, checkpoint_id=folder)
    set_state_dict(fresh, fresh_opt, model_state_dict=fresh_sd,
                   optim_state_dict=fresh_optim_sd)
    tokens = _batches(4, layout[0])[-1][dp * PER_RANK:(dp + 1) * PER_RANK]
    for m, o in ((model, opt), (fresh, fresh_opt)):      # the same next step
        F.cross_entropy(m(tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten()).backward()
        o.step()
    for (name, p), q, r in zip(model.named_parameters(), fresh.parameters(),
                               plain.parameters()):
        np.testing.assert_array_equal(_whole(p), _whole(q), err_msg=name)
        assert r.shape == p.shape
    dist.barrier()


def _mesh_with_tp(size):
    tp = 2 if size % 2 == 0 else size
    return init_device_mesh("cpu", (size // tp, tp), mesh_dim_names=("dp", "tp"))


def _step(model, tokens):
    F.cross_entropy(model(tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten()).backward()


def test_a_2d_model_built_on_the_meta_device_takes_rank_zeros_weights(world):
    """The FSDP2 example's resume path on a 2-D model: built on the meta device, parallelized,
    materialised with to_empty, then rank 0's whole weights broadcast and cut into each
    rank's TP-then-FSDP shard; it trains as one process does."""
    rank, size = world
    mesh = _mesh_with_tp(size)
    dp, dp_size = mesh.get_local_rank("dp"), mesh["dp"].size()
    px.manual_seed(3)
    reference = Model().double()
    with px.device("meta"):
        model = Model().double()
    _two_d(model, mesh)
    assert all(p.is_meta for p in model.parameters())
    model.to_empty(device="cpu")
    full = {k: v.detach() for k, v in reference.state_dict().items()} if rank == 0 else {}
    set_model_state_dict(model, full, options=StateDictOptions(full_state_dict=True,
                                                               broadcast_from_rank0=True))
    opt = px.optim.AdamW(model.parameters(), lr=0.02)
    ref_opt = px.optim.AdamW(reference.parameters(), lr=0.02)
    for tokens in _batches(2, dp_size):
        _step(model, tokens[dp * PER_RANK:(dp + 1) * PER_RANK])
        _step(reference, tokens)
        for o in (opt, ref_opt):
            o.step()
            o.zero_grad()
    _assert_trained_alike(model, reference)


def test_mixed_precision_over_tensor_parallel(world):
    """MixedPrecisionPolicy on a 2-D model: TP's local products run in param_dtype (float32
    here, from float64 shards), gradients come back reduced in float64 into float64 shards,
    and match one process's float64 gradients to float32's precision."""
    rank, size = world
    mesh = _mesh_with_tp(size)
    dp, dp_size = mesh.get_local_rank("dp"), mesh["dp"].size()
    px.manual_seed(4)
    model = Model().double()
    reference = copy.deepcopy(model)
    _two_d(model, mesh, mp_policy=MixedPrecisionPolicy(param_dtype=px.float32,
                                                       reduce_dtype=px.float64))
    seen = []
    model.layers[0].w1.register_forward_hook(
        lambda m, args, out: seen.append((m.weight.dtype, out.dtype)))
    tokens = _batches(1, dp_size)[0]
    _step(model, tokens[dp * PER_RANK:(dp + 1) * PER_RANK])
    _step(reference, tokens)
    assert seen == [(px.float32, px.float32)]
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert p.dtype == px.float64 and p.grad.dtype == px.float64, name
        np.testing.assert_allclose(_whole(p.grad), q.grad.numpy(), rtol=1e-3, atol=1e-5,
                                   err_msg=name)


def test_meshes_that_do_not_make_one_2d_mesh_are_refused(world):
    rank, size = world
    tp_mesh = init_device_mesh("cpu", (size,))
    layer = parallelize_module(nn.Linear(4, 2 * size), tp_mesh, ColwiseParallel())
    with pytest.raises(NotImplementedError, match="two dims of one 2-D mesh"):
        fully_shard(layer, mesh=init_device_mesh("cpu", (size,)))
