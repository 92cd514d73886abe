"""Pipeline parallelism (`phalanx.distributed.pipelining`) over the mpi backend, one stage
per rank at any world size >= 2: training with ScheduleGPipe and Schedule1F1B gives every
stage, after every step, the parameters of one process training the whole model on the
whole batch with the pipeline's loss (the mean of the microbatch mean losses) in float64;
the last stage's `losses` and merged output are the reference's; inference returns the
whole output; several activations and keyword arguments travel; refusals are named."""
import numpy as np
import pytest

import phalanx as px
import phalanx.distributed as dist
import phalanx.nn as nn
import phalanx.nn.functional as F
from phalanx.distributed.pipelining import (PipelineStage, Schedule1F1B, ScheduleGPipe,
                                            ScheduleInterleaved1F1B, SplitPoint,
                                            get_schedule_class, pipeline)
from phalanx.distributed.pipelining.microbatch import (TensorChunkSpec,
                                                       split_args_kwargs_into_chunks)

pytestmark = [pytest.mark.mpi(min_size=2), pytest.mark.timeout(120)]

IN, HIDDEN, OUT = 5, 6, 3
SCHEDULES = {"GPipe": ScheduleGPipe, "1F1B": Schedule1F1B}


@pytest.fixture(scope="module", autouse=True)
def world():
    if not dist.is_initialized():
        dist.init_process_group()
    return dist.get_rank(), dist.get_world_size()


def _blocks(world_size, seed=0):
    """One Linear+Tanh block per stage (the last one ends in a Linear head), float64, the
    same weights on every rank."""
    px.manual_seed(seed)
    blocks = [nn.Sequential(nn.Linear(IN if i == 0 else HIDDEN, HIDDEN), nn.Tanh())
              for i in range(world_size - 1)]
    blocks.append(nn.Sequential(nn.Linear(HIDDEN, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, OUT)))
    return [b.double() for b in blocks]


def _batch(n, seed):
    rng = np.random.default_rng(seed)
    return (px.tensor(rng.standard_normal((n, IN))),
            px.tensor(rng.standard_normal((n, OUT))))


def _microbatch_loss_sum(out, y, n_microbatches):
    """The pipeline's objective: the microbatch mean losses, summed and divided by their
    count (what scale_grads=True does to the summed gradients)."""
    losses = [F.mse_loss(o, t) for o, t in zip(px.tensor_split(out, n_microbatches),
                                               px.tensor_split(y, n_microbatches))]
    return losses, sum(losses[1:], losses[0]) / n_microbatches


def _optimizer(name, params):
    return px.optim.Adam(params, lr=0.05) if name == "adam" else \
        px.optim.SGD(params, lr=0.1, momentum=0.9)


def _run_stage(schedule, rank, world_size, x, y, losses):
    if rank == 0:
        return schedule.step(x)
    if rank == world_size - 1:
        return schedule.step(target=y, losses=losses)
    return schedule.step()


@pytest.mark.parametrize("schedule_name", ["GPipe", "1F1B"])
@pytest.mark.parametrize("n_microbatches,batch,opt", [(2, 8, "sgd"), (4, 8, "adam"),
                                                      (4, 7, "sgd")])
def test_training_matches_one_process(world, schedule_name, n_microbatches, batch, opt):
    rank, world_size = world
    if schedule_name == "1F1B":
        n_microbatches = max(n_microbatches, world_size)
    blocks, reference = _blocks(world_size), nn.Sequential(*_blocks(world_size))
    stage = PipelineStage(blocks[rank], rank, world_size, px.device("cpu"))
    schedule = SCHEDULES[schedule_name](stage, n_microbatches, loss_fn=nn.MSELoss())
    in_flight = _record_in_flight(stage)
    optimizer = _optimizer(opt, blocks[rank].parameters())
    ref_optimizer = _optimizer(opt, reference.parameters())
    for step in range(3):
        x, y = _batch(batch, seed=step)
        losses = []
        optimizer.zero_grad()
        output = _run_stage(schedule, rank, world_size, x, y, losses)
        ref_optimizer.zero_grad()
        ref_out = reference(x)
        ref_losses, objective = _microbatch_loss_sum(ref_out, y, n_microbatches)
        objective.backward()
        if batch % n_microbatches == 0:  # equal microbatches: the whole-batch mean loss
            np.testing.assert_allclose(objective.item(), F.mse_loss(ref_out, y).item(),
                                       rtol=1e-13)
        optimizer.step()
        ref_optimizer.step()
        if rank == world_size - 1:
            assert not output.requires_grad  # the stage's graph is freed after backward
            np.testing.assert_allclose(output.numpy(), ref_out.detach().numpy(), rtol=0,
                                       atol=1e-12)
            assert len(losses) == n_microbatches
            np.testing.assert_allclose([l.item() for l in losses],
                                       [l.item() for l in ref_losses], rtol=0, atol=1e-12)
        else:
            assert output is None and losses == []
        for p, ref in zip(blocks[rank].parameters(), reference[rank].parameters()):
            np.testing.assert_allclose(p.detach().numpy(), ref.detach().numpy(), rtol=0,
                                       atol=1e-12)
    # GPipe keeps every microbatch's activations; 1F1B at most num_stages - stage_index
    limit = n_microbatches if schedule_name == "GPipe" else world_size - rank
    assert max(in_flight) == min(n_microbatches, limit)


def _record_in_flight(stage):
    """After each forward or backward of `stage`, how many microbatches await backward."""
    counts, forward, backward = [], stage.forward_one_chunk, stage.backward_one_chunk

    def forward_one_chunk(*args, **kwargs):
        out = forward(*args, **kwargs)
        counts.append(len(stage.fwd_cache))
        return out

    def backward_one_chunk(*args, **kwargs):
        backward(*args, **kwargs)
        counts.append(len(stage.fwd_cache))
    stage.forward_one_chunk, stage.backward_one_chunk = forward_one_chunk, backward_one_chunk
    return counts


def test_scale_grads_false_keeps_the_sum_and_dw_builder_runs(world):
    rank, world_size = world
    blocks, reference = _blocks(world_size), nn.Sequential(*_blocks(world_size))
    runs = []
    stage = PipelineStage(blocks[rank], rank, world_size, "cpu",
                          dw_builder=lambda: lambda: runs.append(1))
    n = world_size
    schedule = ScheduleGPipe(stage, n, loss_fn=nn.MSELoss(), scale_grads=False)
    x, y = _batch(2 * n, seed=7)
    _run_stage(schedule, rank, world_size, x, y, None)
    assert len(runs) == n  # dw_builder's runner follows each microbatch's backward
    _, objective = _microbatch_loss_sum(reference(x), y, n)
    (objective * n).backward()
    for p, ref in zip(blocks[rank].parameters(), reference[rank].parameters()):
        np.testing.assert_allclose(p.grad.numpy(), ref.grad.numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("schedule_name", ["GPipe", "1F1B"])
def test_inference_returns_the_whole_output(world, schedule_name):
    rank, world_size = world
    blocks, reference = _blocks(world_size), nn.Sequential(*_blocks(world_size))
    stage = PipelineStage(blocks[rank], rank, world_size, "cpu")
    schedule = SCHEDULES[schedule_name](stage, world_size)
    x, y = _batch(2 * world_size + 1, seed=3)
    with px.no_grad():
        output = schedule.step(x) if rank == 0 else schedule.step()
        expected = reference(x)
    if rank == world_size - 1:
        np.testing.assert_allclose(output.numpy(), expected.numpy(), rtol=0, atol=1e-12)
    else:
        assert output is None
    assert all(p.grad is None for p in blocks[rank].parameters())

    # eval() on a training schedule: forwards only, losses still reported
    trainer = SCHEDULES[schedule_name](stage, world_size, loss_fn=nn.MSELoss())
    losses = []
    output = _run_stage_eval(trainer, rank, world_size, x, y, losses)
    assert all(p.grad is None for p in blocks[rank].parameters())
    if rank == world_size - 1:
        np.testing.assert_allclose(output.detach().numpy(), expected.numpy(), rtol=0,
                                   atol=1e-12)
        ref_losses, _ = _microbatch_loss_sum(expected, y, world_size)
        np.testing.assert_allclose([l.item() for l in losses],
                                   [l.item() for l in ref_losses], rtol=0, atol=1e-12)


def _run_stage_eval(schedule, rank, world_size, x, y, losses):
    if rank == 0:
        return schedule.eval(x)
    if rank == world_size - 1:
        return schedule.eval(target=y, losses=losses)
    return schedule.eval()


class TwoWay(nn.Module):
    """Takes (h, c) and a keyword `gate`; passes two activations on (the last: one output)."""

    def __init__(self, width_in, last):
        super().__init__()
        self.lin = nn.Linear(width_in, HIDDEN)
        self.head = nn.Linear(HIDDEN, OUT) if last else None

    def forward(self, h, c, gate=None):
        h = px.tanh(self.lin(h) + c) * gate
        if self.head is not None:
            return self.head(h)
        return h, c * 0.5 + h


@pytest.mark.parametrize("schedule_name", ["GPipe", "1F1B"])
def test_several_activations_and_keyword_arguments(world, schedule_name):
    rank, world_size = world
    px.manual_seed(1)
    blocks = [TwoWay(IN if i == 0 else HIDDEN, i == world_size - 1).double()
              for i in range(world_size)]
    stage = PipelineStage(blocks[rank], rank, world_size, "cpu")
    n = world_size
    schedule = SCHEDULES[schedule_name](stage, n, loss_fn=nn.MSELoss())
    rng = np.random.default_rng(5)
    batch = 2 * n + 1
    x, y = (px.tensor(rng.standard_normal((batch, IN))),
            px.tensor(rng.standard_normal((batch, OUT))))
    c = px.tensor(rng.standard_normal((batch, HIDDEN)))
    gates = [px.tensor(rng.uniform(0.5, 1.5, (batch, HIDDEN))) for _ in range(world_size)]
    args = (x, c) if rank == 0 else ()
    kwargs = {"target": y, "losses": []} if rank == world_size - 1 else {}
    output = schedule.step(*args, gate=gates[rank], **kwargs)

    h, skip = x, c
    for i, block in enumerate(blocks):
        out = block(h, skip, gate=gates[i])
        if i < world_size - 1:
            h, skip = out
    _, objective = _microbatch_loss_sum(out, y, n)
    grads = px.autograd.grad(objective, list(blocks[rank].parameters()))
    if rank == world_size - 1:
        np.testing.assert_allclose(output.detach().numpy(), out.detach().numpy(), rtol=0,
                                   atol=1e-12)
    for p, g in zip(blocks[rank].parameters(), grads):
        np.testing.assert_allclose(p.grad.numpy(), g.numpy(), rtol=0, atol=1e-12)


def test_chunk_specs_split_as_tensor_split():
    x = px.arange(14.0).reshape(7, 2)
    args, kwargs = split_args_kwargs_into_chunks((x, 3), {"m": x}, 3)
    assert [tuple(a[0].shape) for a in args] == [(3, 2), (2, 2), (2, 2)]
    assert all(a[1] == 3 for a in args) and kwargs[2]["m"].shape == (2, 2)
    args, _ = split_args_kwargs_into_chunks((x,), None, 2, TensorChunkSpec.from_tuple((1,)))
    assert [tuple(a[0].shape) for a in args] == [(7, 1), (7, 1)]
    with pytest.raises(ValueError, match="fewer than the 8 microbatches"):
        split_args_kwargs_into_chunks((x,), None, 8)


def test_refusals_are_named(world):
    rank, world_size = world
    module = nn.Linear(2, 2)
    with pytest.raises(NotImplementedError, match="PipelineStage"):
        pipeline(module, (px.zeros(1, 2),))
    with pytest.raises(NotImplementedError, match="PipelineStage"):
        SplitPoint()
    with pytest.raises(NotImplementedError, match="ScheduleGPipe or Schedule1F1B"):
        ScheduleInterleaved1F1B([], 4)
    assert get_schedule_class("1f1b") is Schedule1F1B
    with pytest.raises(ValueError, match="Unknown schedule name"):
        get_schedule_class("Bogus")
    with pytest.raises(ValueError, match=f"pass stage_index=rank \\({rank}\\)"):
        PipelineStage(module, (rank + 1) % world_size, world_size, "cpu")
    with pytest.raises(ValueError, match="num_stages=group size"):
        PipelineStage(module, rank, world_size + 1, "cpu")
    with pytest.raises(NotImplementedError, match="DTensor"):
        PipelineStage(module, rank, world_size, "cpu", output_grads=px.zeros(1, 2))
    stage = PipelineStage(module, rank, world_size, "cpu")
    with pytest.raises(ValueError, match="must be greater than or equal to the number of stages"):
        Schedule1F1B(stage, world_size - 1)
    with pytest.raises(NotImplementedError, match="plain module"):
        PipelineStage(dist.fsdp.FSDPModule.__new__(dist.fsdp.FSDPModule), rank, world_size,
                      "cpu")


def test_local_errors_name_the_rank_and_the_fix(world):
    """Errors one rank finds before communicating, on a pipeline of one stage per rank."""
    rank, world_size = world
    groups = [dist.new_group([r]) for r in range(world_size)]
    module = nn.Linear(2, 2).double()
    stage = PipelineStage(module, 0, 1, "cpu", group=groups[rank])
    schedule = ScheduleGPipe(stage, 4, loss_fn=nn.MSELoss())
    x = px.zeros(6, 2, dtype=px.float64)
    with pytest.raises(ValueError, match="pass step\\(..., target=y\\)"):
        schedule.step(x)
    with pytest.raises(ValueError, match="fewer than the 4 microbatches"):
        schedule.step(x[:3], target=x[:3])
    with pytest.raises(RuntimeError, match="call schedule.eval"):
        with px.no_grad():
            schedule.step(x, target=x)
    checked = PipelineStage(module, 0, 1, "cpu", input_args=px.zeros(3, 2),
                            group=groups[rank])
    with pytest.raises(ValueError, match="input_args"):
        ScheduleGPipe(checked, 2).step(x)
    losses = []
    out = schedule.step(x, target=x, losses=losses)  # a single stage is first and last
    assert tuple(out.shape) == (6, 2) and len(losses) == 4
