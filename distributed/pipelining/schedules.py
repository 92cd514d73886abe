"""Pipeline schedules over one stage per rank, as `torch.distributed.pipelining.schedules`.

`step(*args, target=..., losses=..., **kwargs)` splits the batch into `n_microbatches`,
runs this rank's stage through the schedule's order of forwards (F) and backwards (B), and
returns the merged output on the last stage (None elsewhere). Each schedule is only an
order of actions per stage:

    GPipe   F0 F1 ... F(n-1)  B0 B1 ... B(n-1)
    1F1B    F0 ... F(w-1)  B0 Fw B1 F(w+1) ...  then the remaining Bs,
            w = min(n, num_stages - stage_index) forwards of warm-up (1 on the last stage)

Sends never block (see `_messages`), so a stage waits only for what it receives, and any
order in which every receive follows its sender's action completes. The last stage computes
`loss_fn(output, target)` per microbatch right after the forward; backward starts from that
loss, gradients accumulate in the parameters and, with `scale_grads=True`, are divided by
`n_microbatches` at the end of the step: for `reduction="mean"` losses the mean of the
microbatch losses, which equals the whole-batch mean only when the microbatches are of
equal size.
"""
from ...autograd import is_grad_enabled
from .microbatch import TensorChunkSpec, _split_leaf, merge_chunks, split_args_kwargs_into_chunks

__all__ = ["PipelineScheduleSingle", "ScheduleGPipe", "Schedule1F1B", "ScheduleInterleaved1F1B",
           "ScheduleLoopedBFS", "ScheduleInterleavedZeroBubble", "ScheduleZBVZeroBubble",
           "ScheduleDualPipeV", "PipelineScheduleMulti", "get_schedule_class"]

FORWARD, BACKWARD = "F", "B"


class PipelineScheduleSingle:
    """The schedules that run one stage per rank; subclasses give `_order()`."""

    def __init__(self, stage, n_microbatches, loss_fn=None, args_chunk_spec=None,
                 kwargs_chunk_spec=None, output_merge_spec=None, scale_grads=True):
        if n_microbatches < 1:
            raise ValueError(f"n_microbatches must be at least 1, got {n_microbatches}")
        self._stage = stage
        self._num_stages = stage.num_stages
        self._n_microbatches = n_microbatches
        self._loss_fn = loss_fn
        self._args_chunk_spec = args_chunk_spec
        self._kwargs_chunk_spec = kwargs_chunk_spec
        self._output_merge_spec = output_merge_spec
        self.scale_grads = scale_grads
        self._has_backward = loss_fn is not None
        self._internal_losses = []

    def _order(self):
        """[(FORWARD or BACKWARD, microbatch), ...] for this rank's stage."""
        raise NotImplementedError

    def step(self, *args, target=None, losses=None, return_outputs=True, loss_kwargs=None,
             **kwargs):
        """One iteration over the whole batch: forwards (and, with a loss_fn, backwards) of
        every microbatch. Returns the merged output on the last stage, else None."""
        stage, n = self._stage, self._n_microbatches
        if self._has_backward and not is_grad_enabled():
            raise RuntimeError(f"rank {stage.group_rank}: step() runs backward but gradients "
                               f"are disabled (no_grad); call schedule.eval(...) for a "
                               f"forward-only pass")
        if losses is not None and not isinstance(losses, list):
            raise TypeError(f"losses must be a list, got a {type(losses).__name__}")
        stage.has_backward = self._has_backward
        stage.clear_runtime_states()
        self._internal_losses.clear()
        arg_mbs, kwarg_mbs = self._split_inputs(args, kwargs)
        target_mbs = self._split_target(target)
        for action, chunk in self._order():
            if action == FORWARD:
                output = stage.forward_one_chunk(chunk, arg_mbs[chunk], kwarg_mbs[chunk],
                                                 save_forward_output=return_outputs)
                self._maybe_compute_loss(output, target_mbs, chunk, loss_kwargs)
            elif self._has_backward:
                loss = self._internal_losses[chunk] if stage.is_last else None
                stage.backward_one_chunk(chunk, loss=loss, last_backward=chunk == n - 1)
        # only now (and not after an error, whose peers may never receive) wait for the sends
        stage.wait_sends()
        self._update_losses(losses)
        if self._has_backward and self.scale_grads:
            stage.scale_grads(n)
        if stage.is_last and return_outputs:
            return merge_chunks(stage.output_chunks, self._output_merge_spec)
        return None

    def eval(self, *args, target=None, losses=None, **kwargs):
        """`step` with forwards only (losses are still computed when a target is given)."""
        has_backward = self._has_backward
        self._has_backward = False
        try:
            return self.step(*args, target=target, losses=losses, **kwargs)
        finally:
            self._has_backward = has_backward

    # --- inputs, targets, losses ---------------------------------------------------------------
    def _split_inputs(self, args, kwargs):
        stage, n = self._stage, self._n_microbatches
        if not stage.is_first:
            # as in PyTorch, positional inputs matter on the first stage only: the others
            # receive theirs; keyword arguments go to every stage's submodule
            args = ()
        elif not args:
            raise ValueError(f"rank {stage.group_rank} runs the first stage: pass the batch "
                             f"to step(x, ...)")
        if not args and not kwargs:
            return [()] * n, [{}] * n
        try:
            return split_args_kwargs_into_chunks(
                args, kwargs, n, self._args_chunk_spec if args else (),
                self._kwargs_chunk_spec)
        except ValueError as e:
            raise ValueError(f"rank {stage.group_rank} (stage {stage.stage_index}): {e}") from None

    def _split_target(self, target):
        stage, n = self._stage, self._n_microbatches
        if not (stage.is_last and self._loss_fn is not None):
            return None
        if target is None:
            if self._has_backward:
                raise ValueError(f"rank {stage.group_rank} runs the last stage of a schedule "
                                 f"with a loss_fn: pass step(..., target=y) there")
            return None
        try:
            return _split_leaf(target, TensorChunkSpec(0), n, "target")
        except ValueError as e:
            raise ValueError(f"rank {stage.group_rank} (last stage): {e}") from None

    def _maybe_compute_loss(self, output, target_mbs, chunk, loss_kwargs):
        if target_mbs is not None:
            self._internal_losses.append(
                self._loss_fn(output, target_mbs[chunk], **(loss_kwargs or {})))

    def _update_losses(self, losses):
        if losses is None or not self._stage.is_last:
            self._internal_losses.clear()
            return
        if len(self._internal_losses) != self._n_microbatches:
            raise RuntimeError(f"rank {self._stage.group_rank}: a losses list was given but "
                               f"{len(self._internal_losses)} of {self._n_microbatches} "
                               f"microbatch losses were computed; give the schedule a loss_fn "
                               f"and step(..., target=y)")
        losses.clear()
        losses.extend(self._internal_losses)
        self._internal_losses.clear()


class ScheduleGPipe(PipelineScheduleSingle):
    """Fill and drain: every forward, then every backward."""

    def _order(self):
        n = self._n_microbatches
        return [(FORWARD, i) for i in range(n)] + [(BACKWARD, i) for i in range(n)]


class Schedule1F1B(PipelineScheduleSingle):
    """One forward, one backward: after a warm-up of forwards that fills the pipeline, each
    stage alternates a backward and a forward, so at most `num_stages - stage_index`
    microbatches' activations are alive on a stage."""

    def __init__(self, stage, n_microbatches, loss_fn=None, args_chunk_spec=None,
                 kwargs_chunk_spec=None, output_merge_spec=None, scale_grads=True):
        super().__init__(stage, n_microbatches, loss_fn, args_chunk_spec, kwargs_chunk_spec,
                         output_merge_spec, scale_grads)
        if n_microbatches < self._num_stages:
            raise ValueError(f"Number of microbatches ({n_microbatches}) must be greater than "
                             f"or equal to the number of stages ({self._num_stages}); raise "
                             f"n_microbatches or use ScheduleGPipe")

    def _order(self):
        n = self._n_microbatches
        warmup = min(n, self._num_stages - self._stage.stage_index)
        order = [(FORWARD, i) for i in range(warmup)]
        forwards, backwards = warmup, 0
        while backwards < n:
            order.append((BACKWARD, backwards))
            backwards += 1
            if forwards < n:
                order.append((FORWARD, forwards))
                forwards += 1
        return order


def _refuse(name):
    class Refused:
        def __init__(self, *args, **kwargs):
            raise NotImplementedError(
                f"{name} runs several stages per rank, which is not implemented; use "
                f"ScheduleGPipe or Schedule1F1B with one PipelineStage per rank")
    Refused.__name__ = Refused.__qualname__ = name
    return Refused


ScheduleInterleaved1F1B = _refuse("ScheduleInterleaved1F1B")
ScheduleLoopedBFS = _refuse("ScheduleLoopedBFS")
ScheduleInterleavedZeroBubble = _refuse("ScheduleInterleavedZeroBubble")
ScheduleZBVZeroBubble = _refuse("ScheduleZBVZeroBubble")
ScheduleDualPipeV = _refuse("ScheduleDualPipeV")
PipelineScheduleMulti = _refuse("PipelineScheduleMulti")

_SCHEDULES = {cls.__name__.removeprefix("Schedule"): cls for cls in (
    Schedule1F1B, ScheduleInterleaved1F1B, ScheduleGPipe, ScheduleLoopedBFS,
    ScheduleInterleavedZeroBubble, ScheduleZBVZeroBubble, ScheduleDualPipeV)}
_SCHEDULES.update(PipelineScheduleSingle=PipelineScheduleSingle,
                  PipelineScheduleMulti=PipelineScheduleMulti)


def get_schedule_class(schedule_name):
    """The schedule class of a name, ignoring case ('1F1B', 'gpipe', ...)."""
    by_lower = {name.lower(): cls for name, cls in _SCHEDULES.items()}
    try:
        return by_lower[schedule_name.lower()]
    except KeyError:
        raise ValueError(f"Unknown schedule name '{schedule_name}'. The valid options are "
                         f"{list(_SCHEDULES)}") from None
