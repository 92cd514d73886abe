"""The tracing front end of `torch.distributed.pipelining` (`pipeline`, `SplitPoint`,
`pipe_split`, `Pipe`) splits a model by exporting its graph with `torch.export`; phalanx has
no graph export, so these raise and point to the manual split with `PipelineStage`."""

__all__ = ["Pipe", "SplitPoint", "pipe_split", "pipeline"]

_MANUAL_SPLIT = """\
{what} needs the tracing front end (a graph export of the model), which phalanx does not \
have. Split the model by hand instead, one PipelineStage per rank:

    from phalanx.distributed.pipelining import PipelineStage, ScheduleGPipe
    rank, world = dist.get_rank(), dist.get_world_size()
    blocks = [nn.Sequential(nn.Linear(8, 8), nn.Tanh()) for _ in range(world)]
    stage = PipelineStage(blocks[rank], rank, world, device)
    schedule = ScheduleGPipe(stage, n_microbatches=4, loss_fn=nn.MSELoss())
    if rank == 0:
        schedule.step(x)
    elif rank == world - 1:
        output = schedule.step(target=y, losses=losses)
    else:
        schedule.step()"""


def _refuse(what):
    raise NotImplementedError(_MANUAL_SPLIT.format(what=what))


def pipeline(module, mb_args, mb_kwargs=None, split_spec=None, split_policy=None):
    _refuse("pipeline()")


def pipe_split():
    _refuse("pipe_split()")


class SplitPoint:
    """Where `pipeline(split_spec=...)` would cut a module (BEGINNING or END of it)."""

    def __init__(self, *args, **kwargs):
        _refuse("SplitPoint")


class Pipe:
    def __init__(self, *args, **kwargs):
        _refuse("Pipe")

    @staticmethod
    def from_tracing(*args, **kwargs):
        _refuse("Pipe.from_tracing()")
