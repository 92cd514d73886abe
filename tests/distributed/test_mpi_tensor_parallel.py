"""Tensor parallelism (`parallelize_module` with ColwiseParallel / RowwiseParallel) over the
mpi backend (2 and 3 ranks): every rank trains on the same batch, and the model's weights
follow one process's exactly (float64); uneven splits included."""
import contextlib
import copy

import numpy as np
import pytest

import phalanx as px
import phalanx.distributed as dist
import phalanx.nn as nn
import phalanx.nn.functional as F
from phalanx.distributed.device_mesh import init_device_mesh
from phalanx.distributed.tensor import DTensor, Partial, Replicate, Shard, distribute_tensor
from phalanx.distributed.tensor.parallel import (ColwiseParallel, PrepareModuleInput,
                                                 PrepareModuleInputOutput, PrepareModuleOutput,
                                                 RowwiseParallel, SequenceParallel,
                                                 loss_parallel, parallelize_module)

pytestmark = [pytest.mark.mpi(min_size=2), pytest.mark.timeout(120)]

VOCAB, DIM, HIDDEN = 11, 7, 10


@pytest.fixture(scope="module", autouse=True)
def world():
    if not dist.is_initialized():
        dist.init_process_group()
    return dist.get_rank(), dist.get_world_size()


class Net(nn.Module):
    def __init__(self, colwise_embedding):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, DIM)
        self.up = nn.Linear(DIM, HIDDEN)
        self.down = nn.Linear(HIDDEN, DIM)
        self.norm = nn.LayerNorm(DIM)                 # replicated: every rank computes it
        self.head = nn.Linear(DIM, VOCAB)
        self.colwise_embedding = colwise_embedding

    def forward(self, tokens):
        h = self.embed(tokens)
        h = h + self.down(F.gelu(self.up(h)))
        return self.head(self.norm(h))


PLANS = {
    "mlp": lambda: {"up": ColwiseParallel(), "down": RowwiseParallel(),
                    "head": ColwiseParallel(output_layouts=Replicate()),
                    "embed": RowwiseParallel(input_layouts=Replicate())},
    "colwise embedding": lambda: {"embed": ColwiseParallel(output_layouts=Replicate()),
                                  "up": ColwiseParallel(), "down": RowwiseParallel(),
                                  "head": ColwiseParallel(output_layouts=Replicate())},
    "rowwise from replicated": lambda: {"up": ColwiseParallel(output_layouts=Replicate()),
                                        "down": RowwiseParallel(input_layouts=Replicate())},
}


@pytest.mark.parametrize("plan", list(PLANS))
def test_training_matches_one_process(world, plan):
    rank, size = world
    px.manual_seed(0)
    model = Net(plan == "colwise embedding").double()
    reference = copy.deepcopy(model)
    parallelize_module(model, init_device_mesh("cpu", (size,)), PLANS[plan]())
    assert isinstance(model.up.weight, DTensor) and model.up.weight.placements == (Shard(0),)
    assert model.down.weight.placements == (Shard(1),)
    assert model.down.bias.placements == (Replicate(),)
    opt = px.optim.AdamW(model.parameters(), lr=0.05)
    ref_opt = px.optim.AdamW(reference.parameters(), lr=0.05)
    rng = np.random.default_rng(0)
    for step in range(3):
        tokens = px.tensor(rng.integers(0, VOCAB, (4, 5)))   # the same on every rank
        target = tokens.roll(1, 1).reshape(-1)
        loss = F.cross_entropy(model(tokens).reshape(-1, VOCAB), target)
        loss.backward()
        norm = nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        ref_loss = F.cross_entropy(reference(tokens).reshape(-1, VOCAB), target)
        ref_loss.backward()
        ref_norm = nn.utils.clip_grad_norm_(reference.parameters(), 0.5)
        np.testing.assert_allclose(loss.item(), ref_loss.item(), rtol=1e-12)
        np.testing.assert_allclose(norm.item(), ref_norm.item(), rtol=1e-12)
        assert isinstance(model.up.weight.grad, DTensor)
        opt.step()
        ref_opt.step()
        opt.zero_grad()
        ref_opt.zero_grad()
    _assert_same_weights(model, reference)


def _train_alike(model, reference, batches, loss_context=contextlib.nullcontext, lr=0.05):
    """A few AdamW steps of `model` (parallelized) and `reference` (one process) on the same
    batches: equal losses, gradient norms and weights (float64)."""
    opt = px.optim.AdamW(model.parameters(), lr=lr)
    ref_opt = px.optim.AdamW(reference.parameters(), lr=lr)
    for tokens in batches:
        target = tokens.roll(1, 1)
        with loss_context():                    # as PyTorch's TP tutorial writes it
            pred = model(tokens)
            loss = F.cross_entropy(pred.flatten(0, 1), target.flatten(0, 1))
            loss.backward()
        norm = nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        ref_loss = F.cross_entropy(reference(tokens).flatten(0, 1), target.flatten(0, 1))
        ref_loss.backward()
        ref_norm = nn.utils.clip_grad_norm_(reference.parameters(), 0.5)
        np.testing.assert_allclose(loss.item(), ref_loss.item(), rtol=1e-12)
        np.testing.assert_allclose(norm.item(), ref_norm.item(), rtol=1e-12)
        for o in (opt, ref_opt):
            o.step()
            o.zero_grad()
    _assert_same_weights(model, reference)


def _assert_same_weights(model, reference):
    for name, value in model.state_dict().items():
        whole = value.full_tensor() if isinstance(value, DTensor) else value
        np.testing.assert_allclose(whole.numpy(), reference.state_dict()[name].numpy(),
                                   rtol=1e-10, atol=1e-12, err_msg=name)


class RMSNorm(nn.Module):                 # a user's own module, as in Llama's code
    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(px.ones(dim) + 0.1 * px.randn(dim))

    def forward(self, x):
        return x * px.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.n_heads, self.head_dim = heads, dim // heads
        self.wq, self.wk, self.wv = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        self.wo = nn.Linear(dim, dim, bias=True)

    def forward(self, x, scale):
        bsz, seqlen, _ = x.shape
        q, k, v = (w(x).view(bsz, seqlen, self.n_heads, self.head_dim).transpose(1, 2)
                   for w in (self.wq, self.wk, self.wv))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
        return self.wo(out.transpose(1, 2).contiguous().view(bsz, seqlen, -1))


class FeedForward(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.w1, self.w3 = nn.Linear(dim, hidden, bias=False), nn.Linear(dim, hidden)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, dim, heads, hidden):
        super().__init__()
        self.attention_norm, self.ffn_norm = RMSNorm(dim), nn.LayerNorm(dim)
        self.attention, self.feed_forward = Attention(dim, heads), FeedForward(dim, hidden)

    def forward(self, x):
        h = x + self.attention(self.attention_norm(x), scale=0.5)
        return h + self.feed_forward(nn.functional.dropout(self.ffn_norm(h), 0.0))


class Llama(nn.Module):
    def __init__(self, dim=24, heads=12, hidden=10, layers=2):
        super().__init__()
        self.tok_embeddings = nn.Embedding(VOCAB, dim)
        self.layers = nn.ModuleList(Block(dim, heads, hidden) for _ in range(layers))
        self.norm = RMSNorm(dim)
        self.output = nn.Linear(dim, VOCAB, bias=False)

    def forward(self, tokens):
        h = self.tok_embeddings(tokens)
        for layer in self.layers:
            h = layer(h)
        return self.output(self.norm(h))


@pytest.mark.parametrize("parallel_loss", [False, True], ids=["gathered", "loss_parallel"])
def test_sequence_parallel_llama_plan_matches_one_process(world, parallel_loss):
    """The plan of PyTorch's TP tutorial (and examples' fsdp_tp_example.py): the residual
    stream is split along the sequence; norms run on each rank's positions; attention and
    feed-forward gather the sequence, split heads and hidden units, and reduce-scatter back.
    The logits are gathered, or stay sharded over the vocabulary for loss_parallel."""
    rank, size = world
    px.manual_seed(1)
    model = Llama().double()
    reference = copy.deepcopy(model)
    mesh = init_device_mesh("cpu", (size,))
    parallelize_module(model, mesh, {
        "tok_embeddings": RowwiseParallel(input_layouts=Replicate(), output_layouts=Shard(1)),
        "norm": SequenceParallel(),
        "output": ColwiseParallel(input_layouts=Shard(1), use_local_output=not parallel_loss,
                                  output_layouts=Shard(-1) if parallel_loss else Replicate())})
    for block in model.layers:
        parallelize_module(block, mesh, {
            "attention_norm": SequenceParallel(),
            "attention": PrepareModuleInput(input_layouts=(Shard(1),),
                                            desired_input_layouts=(Replicate(),)),
            "attention.wq": ColwiseParallel(), "attention.wk": ColwiseParallel(),
            "attention.wv": ColwiseParallel(),
            "attention.wo": RowwiseParallel(output_layouts=Shard(1)),
            "ffn_norm": SequenceParallel(),
            "feed_forward": PrepareModuleInput(input_layouts=(Shard(1),),
                                               desired_input_layouts=(Replicate(),)),
            "feed_forward.w1": ColwiseParallel(), "feed_forward.w3": ColwiseParallel(),
            "feed_forward.w2": RowwiseParallel(output_layouts=Shard(1))})
        block.attention.n_heads //= size                # this rank's heads
    assert model.norm.weight.placements == (Replicate(),)
    rng = np.random.default_rng(1)
    _train_alike(model, reference, [px.tensor(rng.integers(0, VOCAB, (2, 12)))
                                    for _ in range(3)],    # the same batch on every rank
                 loss_parallel if parallel_loss else contextlib.nullcontext)


@pytest.mark.parametrize("shape,kwargs", [
    ((6, 7), {}),
    ((6, 7), {"reduction": "sum", "ignore_index": 2}),
    ((6, 7), {"weight": True, "ignore_index": 0}),
    ((6, 7), {"label_smoothing": 0.2, "ignore_index": 1}),
    ((3, 7, 2), {"reduction": "none"}),
    ((7,), {}),
], ids=["mean", "sum-ignore", "weight", "smoothing", "3d-none", "one-sample"])
def test_loss_parallel_matches_cross_entropy_of_the_whole_logits(world, shape, kwargs):
    rank, size = world
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape)
    n_classes = shape[1] if len(shape) > 1 else shape[0]
    target = px.tensor(rng.integers(0, n_classes, (shape[0],) + shape[2:] if len(shape) > 1
                                    else ()))
    if kwargs.get("weight"):
        kwargs = dict(kwargs, weight=px.tensor(rng.uniform(0.5, 2.0, n_classes)))
    class_dim = 1 if len(shape) > 1 else 0
    logits = distribute_tensor(px.tensor(x), placements=[Shard(class_dim)]).requires_grad_()
    with loss_parallel():
        loss = F.cross_entropy(logits, target, **kwargs)
    assert not isinstance(loss, DTensor)
    whole = px.tensor(x).requires_grad_()
    ref = F.cross_entropy(whole, target, **kwargs)
    np.testing.assert_allclose(loss.detach().numpy(), ref.detach().numpy(), rtol=1e-13)
    grad = px.tensor(rng.standard_normal(tuple(ref.shape)))
    loss.backward(grad)
    ref.backward(grad)
    assert logits.grad.placements == (Shard(class_dim),)
    np.testing.assert_allclose(logits.grad.full_tensor().numpy(), whole.grad.numpy(),
                               rtol=1e-12, atol=1e-15)


def test_loss_parallel_refusals(world):
    logits = distribute_tensor(px.randn(4, 6, dtype=px.float64), placements=[Shard(0)])
    target = px.tensor([0, 1, 2, 3])
    with loss_parallel(), pytest.raises(ValueError, match="sharded on the class dim 1"):
        F.cross_entropy(logits, target)
    with pytest.raises(NotImplementedError, match="CrossEntropy on a DTensor"):
        F.cross_entropy(logits, target)          # outside the context


def test_sequence_sharded_mlp_matches_one_process_on_the_whole_batch(world):
    """pytorch/examples' sequence_parallel_example.py plan: each rank feeds its own rows
    (dim 0); the layers gather them, compute on their columns, and reduce-scatter back."""
    rank, size = world
    px.manual_seed(2)
    model = nn.Sequential(nn.Linear(DIM, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 5)).double()
    reference = copy.deepcopy(model)
    parallelize_module(model, init_device_mesh("cpu", (size,)), {
        "0": ColwiseParallel(input_layouts=Shard(0)),
        "2": RowwiseParallel(output_layouts=Shard(0), use_local_output=False)})
    opt = px.optim.AdamW(model.parameters(), lr=0.05)
    ref_opt = px.optim.AdamW(reference.parameters(), lr=0.05)
    rng = np.random.default_rng(2)
    for _ in range(3):
        x = px.tensor(rng.standard_normal((2 * size, DIM)))     # the same on every rank
        out = model(x[2 * rank:2 * rank + 2])                    # this rank's rows in
        assert isinstance(out, DTensor) and out.placements == (Shard(0),)
        ref_out = reference(x)
        np.testing.assert_allclose(out.full_tensor().detach().numpy(),
                                   ref_out.detach().numpy(), rtol=1e-12)
        (out.to_local() ** 2).sum().backward()      # each rank's rows' part of the loss
        (ref_out ** 2).sum().backward()
        for o in (opt, ref_opt):
            o.step()
            o.zero_grad()
    _assert_same_weights(model, reference)


def test_layers_hand_dtensors_to_each_other_and_outputs_are_relaid(world):
    """use_local_output=False passes DTensors from layer to layer; PrepareModuleInputOutput
    runs a module on each rank's rows; PrepareModuleOutput hands each rank its rows of the
    model's output, whose losses sum to one process's."""
    rank, size = world
    px.manual_seed(3)
    model = nn.Sequential(nn.Sequential(nn.Linear(DIM, HIDDEN), nn.Linear(HIDDEN, DIM),
                                        nn.Tanh(), nn.Linear(DIM, VOCAB))).double()
    reference = copy.deepcopy(model)
    rows = Shard(0)
    parallelize_module(model, init_device_mesh("cpu", (size,)), {
        "0.0": ColwiseParallel(use_local_output=False),
        "0.1": RowwiseParallel(output_layouts=rows, use_local_output=False),
        "0.2": PrepareModuleInputOutput(input_layouts=rows, desired_input_layouts=rows,
                                        use_local_input=True, output_layouts=rows,
                                        desired_output_layouts=rows, use_local_output=False),
        "0.3": ColwiseParallel(input_layouts=rows, output_layouts=Replicate()),
        "0": PrepareModuleOutput(output_layouts=Replicate(), desired_output_layouts=rows)})
    opt = px.optim.SGD(model.parameters(), lr=0.1)
    ref_opt = px.optim.SGD(reference.parameters(), lr=0.1)
    rng = np.random.default_rng(3)
    for _ in range(3):
        x = px.tensor(rng.standard_normal((2 * size, DIM)))     # the same on every rank
        out, ref_out = model(x), reference(x)
        assert tuple(out.shape) == (2, VOCAB)                   # this rank's rows
        np.testing.assert_allclose(out.detach().numpy(),
                                   ref_out[2 * rank:2 * rank + 2].detach().numpy(),
                                   rtol=1e-12)
        (out ** 2).sum().backward()
        (ref_out ** 2).sum().backward()
        for o in (opt, ref_opt):
            o.step()
            o.zero_grad()
    _assert_same_weights(model, reference)


def test_ranks_with_empty_shards_train_as_one_process(world):
    """More ranks than rows or columns (PyTorch accepts it: torch.chunk's split leaves the
    last ranks empty): an embedding table of size - 1 rows, a hidden layer of size - 1
    features and, past 2 ranks, fewer vocabulary columns than ranks under loss_parallel.
    The empty ranks take part in every collective (the loss was garbage on them: an integer
    array went into a float all-reduce)."""
    rank, size = world
    rows, classes = size - 1, max(2, size - 1)

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.up = nn.Embedding(rows, 4), nn.Linear(4, size - 1)
            self.down, self.head = nn.Linear(size - 1, 4), nn.Linear(4, classes)

        def forward(self, tokens):
            return self.head(self.down(self.up(self.embed(tokens)).relu()))

    mesh = init_device_mesh("cpu", (size,))
    px.manual_seed(5)
    model = Tiny().double()
    reference = copy.deepcopy(model)
    parallelize_module(model, mesh, {"embed": RowwiseParallel(input_layouts=Replicate()),
                                     "up": ColwiseParallel(), "down": RowwiseParallel(),
                                     "head": ColwiseParallel(use_local_output=False)})
    assert model.up.weight.to_local().shape[0] == (1 if rank < size - 1 else 0)
    opt = px.optim.AdamW(model.parameters(), lr=0.1)
    ref_opt = px.optim.AdamW(reference.parameters(), lr=0.1)
    rng = np.random.default_rng(2)
    for _ in range(2):
        tokens = px.tensor(rng.integers(0, rows, (3, 5)))
        target = px.tensor(rng.integers(0, classes, (3, 5)))
        with loss_parallel():
            loss = F.cross_entropy(model(tokens).flatten(0, 1), target.flatten())
            loss.backward()
        ref_loss = F.cross_entropy(reference(tokens).flatten(0, 1), target.flatten())
        ref_loss.backward()
        np.testing.assert_allclose(loss.item(), ref_loss.item(), rtol=1e-12)
        norm = nn.utils.clip_grad_norm_(model.parameters(), 0.3)
        ref_norm = nn.utils.clip_grad_norm_(reference.parameters(), 0.3)
        np.testing.assert_allclose(norm.item(), ref_norm.item(), rtol=1e-12)
        for o in (opt, ref_opt):
            o.step()
            o.zero_grad()
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        whole = p.full_tensor() if isinstance(p, DTensor) else p
        np.testing.assert_allclose(whole.detach().numpy(), q.detach().numpy(), rtol=1e-10,
                                   atol=1e-12, err_msg=name)


def test_unsupported_layouts_and_modules_are_refused(world):
    with pytest.raises(TypeError, match="expected a Placement"):
        RowwiseParallel(output_layouts="shard")
    with pytest.raises(ValueError, match="should have same length"):
        PrepareModuleInput(input_layouts=(Shard(1), None), desired_input_layouts=(Replicate(),))
    block = parallelize_module(nn.Linear(2, 2), None, PrepareModuleInput(
        input_layouts=(Shard(0),), desired_input_layouts=(Replicate(),)))
    with pytest.raises(ValueError, match="module inputs and input_layouts"):
        block(px.ones(2, 2), px.ones(2, 2))
    with pytest.raises(NotImplementedError, match="Linear and nn.Embedding"):
        parallelize_module(nn.Conv2d(1, 2, 3), None, ColwiseParallel())
    with pytest.raises(ValueError, match="matches 'nope'"):
        parallelize_module(Net(False), None, {"nope": ColwiseParallel()})
    with pytest.raises(NotImplementedError, match="scale_grad_by_freq"):
        parallelize_module(nn.Embedding(8, 4, scale_grad_by_freq=True), None,
                           RowwiseParallel())


def test_tensor_parallel_model_and_optimizer_checkpoint_round_trip(world, tmp_path):
    """DCP saves each rank's shards of a TP model and its AdamW state; a fresh TP model loads
    them back exactly, and the full state dict loads into a plain model."""
    import phalanx.distributed.checkpoint as dcp
    from phalanx.distributed.checkpoint.state_dict import (StateDictOptions, get_state_dict,
                                                           set_state_dict)
    rank, size = world
    where = [str(tmp_path) if rank == 0 else None]        # rank 0's folder, for all ranks
    dist.broadcast_object_list(where, src=0)
    folder = f"{where[0]}/ckpt"
    mesh = init_device_mesh("cpu", (size,))

    def parallel_model(seed):
        px.manual_seed(seed)
        model = Llama(layers=1).double()
        parallelize_module(model, mesh, {
            "tok_embeddings": RowwiseParallel(input_layouts=Replicate()),
            "output": ColwiseParallel(output_layouts=Replicate()),
            "layers.0.feed_forward.w1": ColwiseParallel(),
            "layers.0.feed_forward.w3": ColwiseParallel(),
            "layers.0.feed_forward.w2": RowwiseParallel()})
        return model, px.optim.AdamW(model.parameters(), lr=0.1)

    model, opt = parallel_model(1)
    model(px.tensor([[1, 2, 3]])).sum().backward()
    opt.step()
    opt.zero_grad()
    model_sd, optim_sd = get_state_dict(model, opt)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=folder)
    fresh, fresh_opt = parallel_model(2)
    model_sd, optim_sd = get_state_dict(fresh, fresh_opt)
    dcp.load({"model": model_sd, "optim": optim_sd}, checkpoint_id=folder)
    set_state_dict(fresh, fresh_opt, model_state_dict=model_sd, optim_state_dict=optim_sd)
    plain = Llama(layers=1).double()
    plain.load_state_dict(get_state_dict(model, opt, options=StateDictOptions(
        full_state_dict=True))[0])
    for m in (model, fresh):                    # the same next step: moments came back too
        m(px.tensor([[3, 2, 1]])).sum().backward()
    opt.step()
    fresh_opt.step()
    for (name, p), q, r in zip(model.named_parameters(), fresh.parameters(),
                               plain.parameters()):
        whole = p.detach().full_tensor() if isinstance(p, DTensor) else p.detach()
        again = q.detach().full_tensor() if isinstance(q, DTensor) else q.detach()
        np.testing.assert_array_equal(whole.numpy(), again.numpy(), err_msg=name)
        assert r.shape == whole.shape
    dist.barrier()


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.up, self.down = nn.Linear(DIM, HIDDEN), nn.Linear(HIDDEN, DIM)

    def forward(self, x):
        return x + self.down(self.up(x))


def test_review_findings_stay_fixed(world):
    """A Partial output adds the bias once; a replicated DTensor feeding a column-parallel
    layer and a residual sums both gradients; float16 loss_parallel sums in float32;
    SequenceParallel knows the whole length of an uneven, reshaped output, draws its own
    dropout masks per rank (leaving the shared stream alone) and is applied once."""
    rank, size = world
    mesh = init_device_mesh("cpu", (size,))
    px.manual_seed(4)
    block = Residual().double()
    reference = copy.deepcopy(block)
    parallelize_module(block, mesh, {
        "up": ColwiseParallel(use_local_output=False),
        "down": RowwiseParallel(output_layouts=Partial(), use_local_output=False)})
    parallelize_module(block, mesh, PrepareModuleInputOutput(
        input_layouts=Replicate(), desired_input_layouts=Replicate(),
        output_layouts=Partial(), desired_output_layouts=Replicate()))
    x = px.randn(3, DIM, dtype=px.float64)
    out = block(x)                       # x + Partial: the Partial is reduced, then added
    ref = reference(x)
    np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy(), rtol=1e-12)
    (out ** 2).sum().backward()
    (ref ** 2).sum().backward()
    for (name, p), q in zip(block.named_parameters(), reference.parameters()):
        np.testing.assert_allclose(p.grad.full_tensor().numpy(), q.grad.numpy(), rtol=1e-11,
                                   err_msg=name)

    rng = np.random.default_rng(5)     # 10000 tokens' losses of ~2 sum past float16's max
    logits = px.tensor(rng.standard_normal((10000, 8)), dtype=px.float16)
    target = px.tensor(rng.integers(0, 8, 10000))
    with loss_parallel():
        loss = F.cross_entropy(distribute_tensor(logits, placements=[Shard(1)]), target)
    assert np.isfinite(loss.item())
    np.testing.assert_allclose(loss.item(), F.cross_entropy(logits.double(), target).item(),
                               rtol=2e-3)

    proj = parallelize_module(nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5)).double(), mesh,
                              SequenceParallel(use_local_output=False))
    seq = 2 * size + 1                                         # uneven over the ranks
    mine = px.ones(2, len(range(*_bounds(seq, size, rank))), 4, dtype=px.float64)
    before = px.get_rng_state()
    y = proj(DTensor.from_local(mine, mesh, [Shard(1)], shape=(2, seq, 4)))
    assert y.shape == (2, seq, 3)
    assert px.get_rng_state().equal(before)                    # the shared stream untouched
    masks = [None] * size
    dist.all_gather_object(masks, (proj(px.ones(2, 64, 4, dtype=px.float64)).to_local()
                                   == 0).tolist())
    assert masks[0] != masks[1]
    with pytest.raises(ValueError, match="parallelized already"):
        parallelize_module(proj, mesh, SequenceParallel())


def _bounds(n, size, rank):
    step = -(-n // size)
    return min(rank * step, n), min(rank * step + step, n)
