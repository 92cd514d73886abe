"""How `parallelize_module` shards one module (PyTorch's ParallelStyles) over a 1-D mesh.

A style makes the module's parameters DTensors and wraps its forward. Inputs enter as
DTensors (a plain tensor is taken as this rank's part laid out as `input_layouts`), are
redistributed to what the computation needs and handed to it as local parts; the local
result leaves as a DTensor laid out as `output_layouts` (or as its local part, with
`use_local_output`). Every step is one of DTensor's differentiable conversions, so
backward runs the collective each step implies (Megatron-LM's regions).

- `ColwiseParallel`: the output features are split: a Linear's weight and bias `Shard(0)`, an
  Embedding's weight `Shard(1)`. The input is made whole (`Replicate`; a sequence-sharded
  input is all-gathered), the result is this rank's columns (`Shard(-1)`).
- `RowwiseParallel`: the input features are split: a Linear's weight `Shard(1)` (its bias
  replicated), an Embedding's rows `Shard(0)`. The input is this rank's columns (`Shard(-1)`),
  the result a partial sum over the ranks: all-reduced for `Replicate()` outputs,
  reduce-scattered for `Shard(d)` ones (sequence parallelism).
- `SequenceParallel`: a module that acts on each position alone (LayerNorm, RMSNorm,
  Dropout) runs on this rank's part of the sequence with replicated parameters, whose
  gradients are summed over the ranks.
- `PrepareModuleInput` / `PrepareModuleOutput` / `PrepareModuleInputOutput`: only relayout a
  module's inputs or outputs.
"""
import contextlib
import functools

from ....tensor import Tensor
from ..dtensor import DTensor, chunk_bounds, distribute_tensor
from ..placement_types import Partial, Placement, Replicate, Shard


class ParallelStyle:
    """A way to shard one module (see the module docstring)."""

    def _apply(self, module, mesh, src_data_rank):
        raise NotImplementedError


# ---- moving values in and out of a module ---------------------------------------------------
def _as_dtensor(x, layout, mesh, shape=None):
    """`x` if a DTensor, else the DTensor of which `x` is this rank's part laid out as
    `layout` (a sharded dim of unknown size is taken as even, as PyTorch takes it)."""
    return x if isinstance(x, DTensor) else DTensor.from_local(x, mesh, [layout], shape=shape)


def _local_input(x, layout, desired, mesh, *, partial_grad=False, shape=None):
    """This rank's part of the input `x` laid out as `desired`. `partial_grad`: each rank's
    gradient for it is a partial sum (the whole input of a column-sharded layer), summed
    over the ranks in backward."""
    dt = _as_dtensor(x, layout, mesh, shape).redistribute(placements=[desired])
    return dt.to_local(grad_placements=[Partial()] if partial_grad else None)


def _output(y, layout, desired, mesh, use_local_output, shape=None):
    """The local result `y` (laid out as `layout`) as a DTensor laid out as `desired`, or
    this rank's part of it."""
    dt = DTensor.from_local(y, mesh, [layout], shape=shape).redistribute(placements=[desired])
    return dt.to_local() if use_local_output else dt


def _with_last(shape, n):
    return tuple(shape[:-1]) + (n,)


def _placement(value, what, style):
    if not isinstance(value, Placement):
        raise TypeError(f"{style}({what}={value!r}): expected a Placement (Shard(d), "
                        f"Replicate() or Partial())")
    return value


# ---- Linear and Embedding -----------------------------------------------------------------
class _LayerStyle(ParallelStyle):
    _default_input, _default_output = Replicate(), Replicate()

    def __init__(self, *, input_layouts=None, output_layouts=None, use_local_output=True):
        name = type(self).__name__
        self.input_layouts = _placement(input_layouts or self._default_input, "input_layouts",
                                        name)
        self.output_layouts = _placement(output_layouts or self._default_output,
                                         "output_layouts", name)
        self.use_local_output = use_local_output

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
            _distribute(module, name, mesh, placement, src_data_rank)
        _wrap_forward(module, self, functools.partial(getattr(self, f"_{kind}"), module, mesh))
        return module

    def _leave(self, y, layout, mesh, shape=None):
        return _output(y, layout, self.output_layouts, mesh, self.use_local_output, shape)


class ColwiseParallel(_LayerStyle):
    _default_input, _default_output = Replicate(), Shard(-1)

    def _placements(self, kind, module):
        if kind == "embedding":
            if module.max_norm is not None:
                raise NotImplementedError("ColwiseParallel on an Embedding with max_norm: the "
                                          "norm would span one rank's columns only")
            return {"weight": Shard(1)}
        return {"weight": Shard(0), "bias": Shard(0)}

    def _linear(self, module, mesh, input):
        from ....nn import functional as F
        x = _local_input(input, self.input_layouts, Replicate(), mesh, partial_grad=True)
        bias = None if module.bias is None else module.bias.to_local()
        y = F.linear(x, module.weight.to_local(), bias)
        return self._leave(y, Shard(-1), mesh, _with_last(y.shape, module.out_features))

    def _embedding(self, module, mesh, input):
        from ....nn import functional as F
        tokens = _local_input(input, self.input_layouts, Replicate(), mesh)
        y = F.embedding(tokens, module.weight.to_local(), module.padding_idx, None,
                        module.norm_type, module.scale_grad_by_freq, module.sparse)
        return self._leave(y, Shard(-1), mesh, _with_last(y.shape, module.embedding_dim))


class RowwiseParallel(_LayerStyle):
    _default_input, _default_output = Shard(-1), Replicate()

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
        shape = None
        if not isinstance(input, DTensor) and self.input_layouts.is_shard() and \
                self.input_layouts.dim in (-1, input.ndim - 1):
            shape = _with_last(input.shape, module.in_features)
        x = _local_input(input, self.input_layouts, Shard(-1), mesh, shape=shape)
        partial = F.linear(x, module.weight.to_local())
        if module.bias is None:
            return self._leave(partial, Partial(), mesh)
        y = _output(partial, Partial(), self.output_layouts, mesh, use_local_output=False)
        out = y.to_local() + self._bias(module.bias, y)
        return out if self.use_local_output else \
            DTensor.from_local(out, mesh, y.placements, shape=y.shape)

    @staticmethod
    def _bias(bias, y):
        """The replicated bias as added to this rank's part of the output `y`: cut to its
        columns; or (rows of a sharded sequence) with its gradient summed over the ranks;
        or, to a Partial output, a 1/n share on each rank (the sum adds it once)."""
        [p] = y.placements
        if p.is_shard(y.ndim - 1):
            return bias.redistribute(placements=[Shard(0)]).to_local()
        local = bias.to_local(grad_placements=[Partial()] if not p.is_replicate() else None)
        return local / y.device_mesh.size() if p.is_partial() else local

    def _embedding(self, module, mesh, input):
        from ....nn import functional as F
        tokens = _local_input(input, self.input_layouts, Replicate(), mesh)
        start, stop = chunk_bounds(module.num_embeddings, mesh.size(), mesh.get_local_rank())
        if start == stop:       # more ranks than rows: zeros, still tied to the empty shard
            y = module.weight.to_local().sum(0).expand(*tokens.shape, module.embedding_dim)
            return self._leave(y, Partial(), mesh)
        outside = (tokens < start) | (tokens >= stop)     # rows another rank holds
        local = (tokens - start).masked_fill(outside, 0)
        y = F.embedding(local, module.weight.to_local(), None, None, module.norm_type,
                        module.scale_grad_by_freq, module.sparse)
        return self._leave(y.masked_fill(outside.unsqueeze(-1), 0.0), Partial(), mesh)


def _wrap_forward(module, style, forward):
    """Make `forward` the module's (once: a second style would split split weights)."""
    earlier = module.__dict__.get("_parallel_style")
    if earlier is not None:
        raise ValueError(f"parallelize_module: this {type(module).__name__} is parallelized "
                         f"already ({type(earlier).__name__}); apply one of "
                         f"ColwiseParallel, RowwiseParallel and SequenceParallel per module")
    module.__dict__["_parallel_style"] = style
    module.forward = forward


def _distribute(module, name, mesh, placement, src_data_rank):
    from ....nn import Parameter
    param = getattr(module, name)
    if param is None:
        return
    if placement.is_shard() and placement.dim < 0:
        placement = Shard(placement.dim % param.ndim)
    dt = distribute_tensor(param.detach(), mesh, [placement], src_data_rank=src_data_rank)
    setattr(module, name, Parameter(dt, requires_grad=param.requires_grad))


# ---- sequence parallelism -----------------------------------------------------------------
class SequenceParallel(ParallelStyle):
    """Run a module that acts on each position alone on this rank's part of the sequence
    (dim `sequence_dim`), its parameters replicated (see the module docstring)."""

    def __init__(self, *, sequence_dim=1, use_local_output=False):
        self.sequence_dim = sequence_dim
        self.use_local_output = use_local_output

    def __repr__(self):
        return (f"SequenceParallel(sequence_dim={self.sequence_dim}, "
                f"use_local_output={self.use_local_output})")

    def _apply(self, module, mesh, src_data_rank):
        for owner in module.modules():
            for name, p in list(owner._parameters.items()):
                if p is not None and not isinstance(p, DTensor):
                    _distribute(owner, name, mesh, Replicate(), src_data_rank)
        stream = _RankStream(1 + mesh.get_local_rank())
        _wrap_forward(module, self, functools.partial(self._forward, module, mesh,
                                                      module.forward, stream))
        return module

    def _forward(self, module, mesh, forward, stream, input, *args, **kwargs):
        from ....nn.utils.stateless import _reparametrize_module
        sharding = Shard(self.sequence_dim)
        x = _as_dtensor(input, sharding, mesh).redistribute(placements=[sharding])
        local = x.to_local()
        params = {name: p.to_local(grad_placements=[Partial()])
                  for name, p in module.named_parameters() if isinstance(p, DTensor)}
        with _reparametrize_module(module, params), stream(local.device):
            y = forward(local, *args, **kwargs)
        dim = self.sequence_dim % y.ndim
        shape = None          # the whole sequence's length along its dim, when y keeps it
        if y.ndim == local.ndim and y.shape[dim] == local.shape[dim]:
            shape = tuple(y.shape[:dim]) + (x.shape[dim],) + tuple(y.shape[dim + 1:])
        out = DTensor.from_local(y, mesh, [sharding], shape=shape)
        return out.to_local() if self.use_local_output else out


class _RankStream:
    """A random stream of this rank's own for one module's forward: with the same seed on
    every rank, ranks drawing dropout masks for their parts of the sequence from the shared
    stream would repeat one mask (PyTorch's RNG tracker offsets each shard). The global
    stream, which replicated regions must draw alike, is left as it was."""

    def __init__(self, offset):
        self.offset, self.states = offset, None

    @contextlib.contextmanager
    def __call__(self, device):
        from .... import cuda
        from ....tensor import random
        gpus = [device.index or 0] if device.type == "cuda" else []
        with random.fork_rng(devices=gpus):
            if self.states is None:
                random.manual_seed(random.initial_seed() + 1_000_003 * self.offset)
            else:
                random.set_rng_state(self.states[0])
                for gpu, state in zip(gpus, self.states[1]):
                    cuda.set_rng_state(state, gpu)
            yield
            self.states = (random.get_rng_state(), [cuda.get_rng_state(g) for g in gpus])


# ---- relayouts only -------------------------------------------------------------------------
def _layouts(layouts, desired, what):
    """(layouts, desired) as equal-length tuples (a single Placement is a 1-tuple)."""
    if layouts is None and desired is None:
        return None
    one = isinstance(layouts, Placement) or layouts is None
    layouts = (layouts,) if one else tuple(layouts)
    desired = (desired,) if isinstance(desired, Placement) or desired is None else \
        tuple(desired)
    if len(layouts) != len(desired):
        raise ValueError(f"{what}_layouts and desired_{what}_layouts should have same length!")
    return layouts, desired


def _relayout(value, layout, desired, mesh, use_local):
    if layout is None:
        return value
    if not isinstance(value, Tensor):
        raise TypeError(f"expecting input to be a torch.Tensor! got a "
                        f"{type(value).__name__} where the layout {layout} names a tensor")
    dt = _as_dtensor(value, layout, mesh)
    if desired is not None and desired != dt.placements[0]:
        dt = dt.redistribute(placements=[desired])
    return dt.to_local() if use_local else dt


class PrepareModuleInput(ParallelStyle):
    """Lay a module's inputs out as `desired_input_layouts` before its forward: each
    positional input laid out as `input_layouts` (None: left alone), keyword inputs as
    `input_kwarg_layouts`."""

    def __init__(self, *, input_layouts=None, desired_input_layouts=None,
                 input_kwarg_layouts=None, desired_input_kwarg_layouts=None,
                 use_local_output=False):
        self.input_layouts = input_layouts
        self.desired_input_layouts = desired_input_layouts
        self._positional = _layouts(input_layouts, desired_input_layouts, "input")
        self.input_kwarg_layouts = input_kwarg_layouts or {}
        self.desired_input_kwarg_layouts = desired_input_kwarg_layouts or {}
        if set(self.input_kwarg_layouts) != set(self.desired_input_kwarg_layouts):
            raise ValueError("input_kwarg_layouts and desired_input_kwarg_layouts should have "
                             "the same keys!")
        self.use_local_output = use_local_output

    def __repr__(self):
        return (f"PrepareModuleInput(input_layouts={self.input_layouts}, "
                f"desired_input_layouts={self.desired_input_layouts}, "
                f"input_kwarg_layouts={self.input_kwarg_layouts}, "
                f"desired_input_kwarg_layouts={self.desired_input_kwarg_layouts}, "
                f"use_local_output={self.use_local_output})")

    def _apply(self, module, mesh, src_data_rank):
        module.register_forward_pre_hook(
            lambda _, args, kwargs: self._inputs(args, kwargs, mesh), with_kwargs=True)
        return module

    def _inputs(self, args, kwargs, mesh):
        if self._positional is not None:
            layouts, desired = self._positional
            if len(args) != len(layouts):
                raise ValueError(f"module inputs and input_layouts should have same length! "
                                 f"(got {len(args)} inputs and {len(layouts)} layouts)")
            args = tuple(_relayout(a, lay, want, mesh, self.use_local_output)
                         for a, lay, want in zip(args, layouts, desired))
        for key, layout in self.input_kwarg_layouts.items():
            if key in kwargs:
                kwargs[key] = _relayout(kwargs[key], layout,
                                      self.desired_input_kwarg_layouts[key], mesh,
                                      self.use_local_output)
        return args, kwargs


class PrepareModuleOutput(ParallelStyle):
    """Lay a module's outputs (a tensor or a tuple), laid out as `output_layouts`, out as
    `desired_output_layouts` after its forward."""

    def __init__(self, *, output_layouts, desired_output_layouts, use_local_output=True):
        self.output_layouts = output_layouts
        self.desired_output_layouts = desired_output_layouts
        self._layouts = _layouts(output_layouts, desired_output_layouts, "output")
        self.use_local_output = use_local_output

    def __repr__(self):
        return (f"PrepareModuleOutput(output_layouts={self.output_layouts}, "
                f"desired_output_layouts={self.desired_output_layouts}, "
                f"use_local_output={self.use_local_output})")

    def _apply(self, module, mesh, src_data_rank):
        module.register_forward_hook(lambda _, __, output: self._outputs(output, mesh))
        return module

    def _outputs(self, output, mesh):
        one = not isinstance(output, tuple)
        outputs = (output,) if one else output
        layouts, desired = self._layouts
        if len(outputs) != len(layouts):
            raise ValueError(f"module outputs and output_layouts should have same length! "
                             f"(got {len(outputs)} outputs and {len(layouts)} layouts)")
        out = tuple(_relayout(o, lay, want, mesh, self.use_local_output)
                    for o, lay, want in zip(outputs, layouts, desired))
        return out[0] if one else out


class PrepareModuleInputOutput(ParallelStyle):
    """PrepareModuleInput and PrepareModuleOutput on one module."""

    def __init__(self, *, input_layouts=None, desired_input_layouts=None,
                 input_kwarg_layouts=None, desired_input_kwarg_layouts=None,
                 use_local_input=False, output_layouts, desired_output_layouts,
                 use_local_output=True):
        self.prepare_module_input = PrepareModuleInput(
            input_layouts=input_layouts, desired_input_layouts=desired_input_layouts,
            input_kwarg_layouts=input_kwarg_layouts,
            desired_input_kwarg_layouts=desired_input_kwarg_layouts,
            use_local_output=use_local_input)
        self.prepare_module_output = PrepareModuleOutput(
            output_layouts=output_layouts, desired_output_layouts=desired_output_layouts,
            use_local_output=use_local_output)

    def _apply(self, module, mesh, src_data_rank):
        self.prepare_module_input._apply(module, mesh, src_data_rank)
        return self.prepare_module_output._apply(module, mesh, src_data_rank)
