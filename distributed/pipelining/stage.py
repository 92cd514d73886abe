"""`PipelineStage`: one rank's part of a model split by hand into `num_stages` pieces, as
`torch.distributed.pipelining.PipelineStage`.

A stage runs its submodule on one microbatch at a time. The first stage takes its inputs
from `step(...)`; every other stage receives them from the stage before (see `_messages`
for the wire format) as fresh leaf tensors, so after the backward of a microbatch their
`.grad` is exactly what goes back to the previous stage. The last stage's backward starts
from the microbatch loss; the others from the output gradients the next stage sent back.
Parameter gradients accumulate over the microbatches; the schedule divides them at the end.
"""
from ...autograd import backward as _autograd_backward
from ...autograd import no_grad
from ...nn.modules.module import Module
from ...tensor import Tensor, zeros_like
from ...tensor.backend import Device
from .. import world as _world
from ..ddp import DistributedDataParallel
from ..fsdp import FSDPModule
from ._messages import Link, encode_header, meta_of

__all__ = ["PipelineStage"]


def _as_tuple(value):
    if value is None:
        return None
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


class PipelineStage:
    """Stage `stage_index` of `num_stages`, run by the rank of that index in `group` (the
    world by default). `input_args` / `output_args`: example tensors of what this stage
    receives and returns; when given they are checked against the first microbatch of the
    first step (shapes are otherwise learned from the messages themselves). `dw_builder`:
    a function returning a callable that runs after each microbatch's backward."""

    def __init__(self, submodule, stage_index, num_stages, device, input_args=None,
                 output_args=None, output_grads=None, input_grads=None, group=None,
                 dw_builder=None, get_mesh=None):
        for name, value in (("output_grads", output_grads), ("input_grads", input_grads),
                            ("get_mesh", get_mesh)):
            if value is not None:
                raise NotImplementedError(
                    f"PipelineStage({name}=...) describes DTensor activations, which phalanx "
                    f"pipelines do not carry; pass plain tensors and leave {name}=None")
        if isinstance(submodule, (DistributedDataParallel, FSDPModule)):
            raise NotImplementedError(
                f"stage {stage_index}: a {type(submodule).__name__}-wrapped submodule would "
                f"synchronise gradients on every microbatch; pass the plain module and "
                f"all-reduce its gradients over the data-parallel group after step()")
        if not isinstance(submodule, Module):
            raise TypeError(f"PipelineStage needs a phalanx.nn.Module, got "
                            f"{type(submodule).__name__}")
        if not 0 <= stage_index < num_stages:
            raise ValueError(f"stage_index={stage_index} is outside the pipeline's "
                             f"{num_stages} stages; give 0 <= stage_index < num_stages")
        if not _world.is_initialized():
            raise RuntimeError("PipelineStage needs the process group: call "
                               "phalanx.distributed.init_process_group() first")
        self.group_rank = _world.get_rank(group)
        self.group_size = _world.get_world_size(group)
        if self.group_rank < 0:
            raise ValueError(f"global rank {_world.get_rank()} is not a member of the "
                             f"pipeline group; build the stage on the group's ranks only")
        if num_stages != self.group_size or stage_index != self.group_rank:
            raise ValueError(
                f"rank {self.group_rank} of a pipeline group of {self.group_size} builds stage "
                f"{stage_index} of {num_stages}: the GPipe and 1F1B schedules run one stage "
                f"per rank, so pass stage_index=rank ({self.group_rank}) and "
                f"num_stages=group size ({self.group_size}) (several stages per rank, the "
                f"looped schedules, are not implemented)")
        self.submod = submodule
        self.stage_index, self.num_stages = stage_index, num_stages
        self.device = device if isinstance(device, Device) else Device(device)
        self.group = group
        self.dw_builder = dw_builder
        self._expected = {"inputs": _as_tuple(input_args), "outputs": _as_tuple(output_args)}
        self._checked = False
        self._prev = None if self.is_first else _world.get_global_rank(group, stage_index - 1)
        self._next = None if self.is_last else _world.get_global_rank(group, stage_index + 1)
        self._link = Link(group, self.device)
        self.has_backward = False
        self.fwd_cache = {}      # microbatch -> (outputs, inputs received from the stage before)
        self.output_chunks = []  # the last stage's outputs, merged by the schedule
        self._sent = {}          # microbatch -> metadata of the activations sent on

    @property
    def is_first(self):
        return self.stage_index == 0

    @property
    def is_last(self):
        return self.stage_index == self.num_stages - 1

    def __repr__(self):
        return (f"PipelineStage(stage_index={self.stage_index}, num_stages={self.num_stages}, "
                f"device={self.device})")

    def clear_runtime_states(self):
        self.fwd_cache.clear()
        self.output_chunks.clear()
        self._sent.clear()

    # --- forward -----------------------------------------------------------------------------
    def _receive_inputs(self):
        metas = self._link.recv_header(self._prev)
        inputs = self._link.recv_tensors(metas, self._prev)
        for t, m in zip(inputs, metas):
            if m.requires_grad and self.has_backward:
                t.requires_grad_(True)
        return tuple(inputs)

    def forward_one_chunk(self, chunk, args=(), kwargs=None, save_forward_output=True):
        """Run microbatch `chunk` (the first stage uses `args`, the others receive theirs),
        send the outputs on, and return them."""
        inputs = tuple(args) if self.is_first else self._receive_inputs()
        self._check_once("inputs", inputs, chunk)
        try:
            output = self.submod(*inputs, **(kwargs or {}))
        except Exception as e:
            raise RuntimeError(f"stage {self.stage_index} failed to run forward on microbatch "
                               f"{chunk} with inputs of shapes "
                               f"{[tuple(t.shape) for t in inputs if isinstance(t, Tensor)]}"
                               ) from e
        outputs = _as_tuple(output)
        self._check_once("outputs", outputs, chunk)
        if not self.is_last:
            self._send_activations(chunk, outputs)
        elif save_forward_output:
            self.output_chunks.append(output)
        if self.has_backward:
            self.fwd_cache[chunk] = (outputs, inputs)
        if chunk == 0:
            self._checked = True
        return output

    def _send_activations(self, chunk, outputs):
        for i, t in enumerate(outputs):
            if not isinstance(t, Tensor):
                raise TypeError(f"stage {self.stage_index} returned a {type(t).__name__} as "
                                f"output {i}; a stage that is not the last sends its outputs "
                                f"to the next stage and may return only tensors")
        metas = [meta_of(t) for t in outputs]
        if not self.has_backward:
            metas = [m._replace(requires_grad=False) for m in metas]
        self._sent[chunk] = metas
        self._link.send_tensors(outputs, self._next, encode_header(metas, self.stage_index))

    def _check_once(self, what, tensors, chunk):
        expected = self._expected[what]
        if self._checked or chunk != 0 or expected is None:
            return
        got = [(tuple(t.shape), t.dtype) if isinstance(t, Tensor) else type(t).__name__
               for t in tensors]
        want = [(tuple(t.shape), t.dtype) for t in expected]
        if got != want:
            side = "input_args" if what == "inputs" else "output_args"
            raise ValueError(f"stage {self.stage_index} (rank {self.group_rank}): the first "
                             f"microbatch's {what} are {got} (shape, dtype) but {side} "
                             f"promised {want}; fix {side} or the microbatch size")

    # --- backward ----------------------------------------------------------------------------
    def backward_one_chunk(self, chunk, loss=None, last_backward=False):
        """Backward of microbatch `chunk`: from `loss` on the last stage, from the gradients the
        next stage sends otherwise; the gradients of this stage's inputs go to the stage
        before. `last_backward` is accepted for PyTorch's signature (it tells data-parallel
        wrappers to synchronise, which stages refuse)."""
        if not self.has_backward:
            return
        outputs, inputs = self.fwd_cache.pop(chunk)
        if self.is_last:
            if loss is None:
                raise RuntimeError(f"stage {self.stage_index} (the last) has no loss for "
                                   f"microbatch {chunk}: give the schedule a loss_fn")
            _autograd_backward([loss])
            if not self.is_first:
                self._release_outputs(outputs)
        else:
            self._backward_from_next(chunk, outputs)
        if self.dw_builder is not None:
            self.dw_builder()()
        if not self.is_first:
            grads = [t.grad if t.grad is not None else zeros_like(t)
                     for t in inputs if t.requires_grad]
            self._link.send_tensors(grads, self._prev)

    @staticmethod
    def _release_outputs(outputs):
        """The last stage keeps its outputs only to return them merged: detaching them frees
        the graph of the stage now (as PyTorch; a view cannot be detached in place and keeps
        it until the step ends)."""
        for t in outputs:
            if isinstance(t, Tensor):
                try:
                    t.detach_()
                except RuntimeError:
                    pass

    def _backward_from_next(self, chunk, outputs):
        metas = self._sent.pop(chunk)
        wanted = [m for m in metas if m.requires_grad]
        grads = self._link.recv_tensors(wanted, self._next)
        roots = [t for t, m in zip(outputs, metas) if m.requires_grad]
        if roots:
            _autograd_backward(roots, grads)

    def scale_grads(self, grad_scale_factor):
        """Divide the gradients of the submodule's parameters by `grad_scale_factor` (as
        PyTorch, the whole `.grad`, gradients of earlier steps included)."""
        if grad_scale_factor == 1:
            return
        with no_grad():
            for p in self.submod.parameters():
                if p.grad is not None:
                    p.grad.div_(grad_scale_factor)

    def wait_sends(self):
        self._link.wait_sends()
