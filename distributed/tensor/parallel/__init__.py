"""`torch.distributed.tensor.parallel`: tensor and sequence parallelism over a 1-D mesh
(Megatron-LM's column and row parallel layers, and sequence-parallel norms; see style.py).

    tp = init_device_mesh("cpu", (world_size,))
    parallelize_module(block, tp, {"w1": ColwiseParallel(), "w2": RowwiseParallel()})

Every rank gives the layers the same input (or, with sequence parallelism, its part of the
sequence); the gradients of the sharded parameters are DTensors, of which each rank holds its
chunk (optimizers, clipping and state dicts take them as FSDP's); `loss_parallel()` computes
cross entropy on logits sharded over the classes (loss.py). With FSDP on the other dim of a
2-D mesh (fully_shard(model, mesh=mesh["dp"]) after parallelize_module(model, mesh["tp"],
plan)) the parameters are sharded again across data-parallel ranks (fsdp/).
"""
import fnmatch
import warnings

from .loss import loss_parallel
from .style import (ColwiseParallel, ParallelStyle, PrepareModuleInput, PrepareModuleInputOutput,
                    PrepareModuleOutput, RowwiseParallel, SequenceParallel)

__all__ = ["ColwiseParallel", "ParallelStyle", "PrepareModuleInput", "PrepareModuleInputOutput",
           "PrepareModuleOutput", "RowwiseParallel", "SequenceParallel", "loss_parallel",
           "parallelize_module"]


def parallelize_module(module, device_mesh=None, parallelize_plan=None, *, src_data_rank=0):
    """Apply `parallelize_plan` (a ParallelStyle for `module` itself, or {submodule name
    pattern: style}, names matched segment by segment with `*` wildcards) over the 1-D
    `device_mesh` (default: every rank). Weights are taken from rank `src_data_rank` (None:
    each rank's own). Returns `module`."""
    if device_mesh is None:
        from ...device_mesh import _world_mesh
        device_mesh = _world_mesh()
    if device_mesh.ndim != 1:
        raise NotImplementedError(f"parallelize_module on a {device_mesh.ndim}-D mesh: pass "
                                  f"the tensor-parallel dimension's 1-D mesh (mesh['tp'])")
    if parallelize_plan is None:
        warnings.warn("No parallelize_plan is provided and auto-parallel is not supported at "
                      "the moment, so this parallelize_module call will do nothing.")
        return module
    if isinstance(parallelize_plan, ParallelStyle):
        return parallelize_plan._apply(module, device_mesh, src_data_rank)
    for pattern, style in parallelize_plan.items():
        wanted = pattern.split(".")
        matched = [m for name, m in module.named_modules() if name and
                   len(name.split(".")) == len(wanted) and
                   all(fnmatch.fnmatchcase(a, b) for a, b in zip(name.split("."), wanted))]
        if not matched:
            raise ValueError(f"parallelize_module: no submodule of {type(module).__name__} "
                             f"matches {pattern!r}")
        for m in matched:
            style._apply(m, device_mesh, src_data_rank)
    return module

