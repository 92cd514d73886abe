"""How `parallelize_module` shards one layer (PyTorch's ParallelStyles), for `nn.Linear` and
`nn.Embedding`; the layer's parameters become DTensors and its forward computes on their
local parts between the regions of regions.py.

- `ColwiseParallel`: the output features are split: a Linear's weight and bias `Shard(0)`, an
  Embedding's weight `Shard(1)`. The input is replicated; the output is this rank's columns
  (`Shard(-1)`), or gathered whole with `output_layouts=Replicate()`.
- `RowwiseParallel`: the input features are split: a Linear's weight `Shard(1)` (its bias
  replicated), an Embedding's rows `Shard(0)`. The input is this rank's columns (`Shard(-1)`,
  what a ColwiseParallel layer gives) or sliced from a replicated one
  (`input_layouts=Replicate()`); the output is the sum over the ranks, replicated.
"""
import functools

from ..dtensor import chunk_bounds, distribute_tensor
from ..placement_types import Replicate, Shard
from .regions import CopyToRegion, GatherFromRegion, ReduceFromRegion, SplitToRegion


class ParallelStyle:
    """A way to shard one module (see the module docstring)."""

    def _apply(self, module, mesh, src_data_rank):
        raise NotImplementedError


class _Style(ParallelStyle):
    _inputs, _outputs = (), ()          # the layouts each style supports

    def __init__(self, *, input_layouts=None, output_layouts=None, use_local_output=True):
        self.input_layouts = input_layouts or self._inputs[0]
        self.output_layouts = output_layouts or self._outputs[0]
        self.use_local_output = use_local_output
        name = type(self).__name__
        if self.input_layouts not in self._inputs:
            raise NotImplementedError(f"{name}(input_layouts={self.input_layouts!r}): "
                                      f"Phalanx supports {list(self._inputs)}")
        if self.output_layouts not in self._outputs:
            raise NotImplementedError(f"{name}(output_layouts={self.output_layouts!r}): "
                                      f"Phalanx supports {list(self._outputs)}")
        if not use_local_output:
            raise NotImplementedError(f"{name}(use_local_output=False): layers pass plain "
                                      f"tensors (their local parts) to each other here")

    def __repr__(self):
        return (f"{type(self).__name__}(input_layouts={self.input_layouts!r}, "
                f"output_layouts={self.output_layouts!r}, "
                f"use_local_output={self.use_local_output})")

    def _apply(self, module, mesh, src_data_rank):
        from ....nn import Embedding, Linear
        kind = "linear" if isinstance(module, Linear) else \
            "embedding" if isinstance(module, Embedding) else None
        if kind is None:
            raise NotImplementedError(f"{type(self).__name__} on {type(module).__name__}: "
                                      f"Phalanx shards nn.Linear and nn.Embedding")
        for name, placement in self._placements(kind, module).items():
            param = getattr(module, name)
            if param is not None and placement.is_shard():
                n = param.shape[placement.dim]
                if any(a == b for a, b in (chunk_bounds(n, mesh.size(), r)
                                           for r in range(mesh.size()))):
                    raise ValueError(f"{type(self).__name__}: {type(module).__name__}.{name} "
                                     f"has {n} along dim {placement.dim}, too few for "
                                     f"{mesh.size()} ranks to each hold a part")
            _distribute(module, name, mesh, placement, src_data_rank)
        module.forward = functools.partial(getattr(self, f"_{kind}"), module, mesh)
        return module


class ColwiseParallel(_Style):
    _inputs, _outputs = (Replicate(),), (Shard(-1), Replicate())

    def _placements(self, kind, module):
        if kind == "embedding":
            if module.max_norm is not None:
                raise NotImplementedError("ColwiseParallel on an Embedding with max_norm: the "
                                          "norm would span one rank's columns only")
            return {"weight": Shard(1)}
        return {"weight": Shard(0), "bias": Shard(0)}

    def _output(self, y, size, mesh):
        return GatherFromRegion.apply(y, -1, size, mesh) if self.output_layouts == \
            Replicate() else y

    def _linear(self, module, mesh, input):
        from ....nn import functional as F
        x = CopyToRegion.apply(input, mesh)
        bias = None if module.bias is None else module.bias.to_local()
        return self._output(F.linear(x, module.weight.to_local(), bias),
                            module.out_features, mesh)

    def _embedding(self, module, mesh, input):
        from ....nn import functional as F
        y = F.embedding(input, module.weight.to_local(), module.padding_idx, None,
                        module.norm_type, module.scale_grad_by_freq, module.sparse)
        return self._output(y, module.embedding_dim, mesh)


class RowwiseParallel(_Style):
    _inputs, _outputs = (Shard(-1), Replicate()), (Replicate(),)

    def _placements(self, kind, module):
        if kind == "embedding":
            if module.padding_idx is not None or module.max_norm is not None or \
                    module.scale_grad_by_freq:
                raise NotImplementedError("RowwiseParallel on an Embedding with padding_idx, "
                                          "max_norm or scale_grad_by_freq is not supported")
            return {"weight": Shard(0)}
        return {"weight": Shard(1), "bias": Replicate()}

    def _linear(self, module, mesh, input):
        from ....nn import functional as F
        x = SplitToRegion.apply(input, -1, mesh) if self.input_layouts == Replicate() \
            else input
        y = ReduceFromRegion.apply(F.linear(x, module.weight.to_local()), mesh)
        return y if module.bias is None else y + module.bias.to_local()

    def _embedding(self, module, mesh, input):
        from ....nn import functional as F
        start, stop = chunk_bounds(module.num_embeddings, mesh.size(), mesh.get_local_rank())
        outside = (input < start) | (input >= stop)     # rows another rank holds
        local = (input - start).masked_fill(outside, 0)
        y = F.embedding(local, module.weight.to_local(), None, None, module.norm_type,
                        module.scale_grad_by_freq, module.sparse)
        return ReduceFromRegion.apply(y.masked_fill(outside.unsqueeze(-1), 0.0), mesh)


def _distribute(module, name, mesh, placement, src_data_rank):
    from ....nn import Parameter
    param = getattr(module, name)
    if param is None:
        return
    if placement.is_shard() and placement.dim < 0:
        placement = Shard(placement.dim % param.ndim)
    dt = distribute_tensor(param.detach(), mesh, [placement], src_data_rank=src_data_rank)
    setattr(module, name, Parameter(dt, requires_grad=param.requires_grad))
