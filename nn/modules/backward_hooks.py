"""A module's backward hooks (`register_full_backward_hook`, `register_full_backward_pre_hook`).

For one call of a module that has them, the tensors among its positional arguments and
among its outputs (the output itself, or the tensors of an output tuple) pass through an
identity op, a "gate", whose backward sees their gradients: at the output gate the pre-hooks
run on the gradients of the outputs (and may replace them); at the input gate the hooks run
with the gradients of the inputs and of the outputs (and may replace the former), as
PyTorch's BackwardHook does. Both tuples have one entry per argument or output: None where it
is not a tensor, and for a tensor without a gradient None at the outputs, zeros at the inputs.
When no input requires a gradient the hooks run at the output gate, with every input
gradient None, and must return None.
"""
import warnings

from ...autograd import Function, is_grad_enabled
from ...tensor import Tensor


class _Gate(Function):
    """Identity on `tensors`; its backward gives their gradients to `on_grads`, which
    returns the ones to pass on. As in PyTorch, a missing gradient is None at the outputs
    and zeros at the inputs (`materialize`)."""

    @staticmethod
    def forward(ctx, on_grads, materialize, *tensors):
        ctx.on_grads = on_grads
        ctx.set_materialize_grads(materialize)
        out = tuple(_alias(t) for t in tensors)
        ctx.mark_non_differentiable(*[a for a, t in zip(out, tensors) if not t.requires_grad])
        return out

    @staticmethod
    def backward(ctx, *grads):
        return (None, None) + tuple(ctx.on_grads(grads))


def _alias(t):
    """A tensor over the same memory and version counter as `t` (in-place writes show in both,
    and saved-tensor checks see them)."""
    a = Tensor._make(t._data)
    a._version = t._version
    return a


class BackwardHooks:
    """The backward hooks of one call of `module`."""

    def __init__(self, module, hooks, pre_hooks):
        self.module, self.hooks, self.pre_hooks = module, hooks, pre_hooks
        self.grad_outputs = None
        self.n_inputs = self.n_outputs = 0
        self.input_index = self.output_index = None   # positions of the gated tensors

    def gate_inputs(self, args):
        self.n_inputs = len(args)
        args, self.input_index = self._gate(args, self._input_grads, True)
        return args

    def gate_outputs(self, out):
        single = not isinstance(out, tuple)
        outs = (out,) if single else out
        self.n_outputs = len(outs)
        outs, self.output_index = self._gate(outs, self._output_grads, False)
        return outs[0] if single else outs

    def _gate(self, values, on_grads, materialize):
        index = [i for i, v in enumerate(values) if isinstance(v, Tensor)]
        if not is_grad_enabled() or not any(values[i].requires_grad for i in index):
            return values, None
        gated = _Gate.apply(on_grads, materialize, *[values[i] for i in index])
        values = list(values)
        for i, g in zip(index, gated):
            values[i] = g
        return tuple(values), index

    def _pack(self, index, grads, size):
        full = [None] * size
        for i, g in zip(index or (), grads):
            full[i] = g
        return tuple(full)

    def _output_grads(self, grads):
        self.grad_outputs = self._pack(self.output_index, grads, self.n_outputs)
        for hook in self.pre_hooks:
            res = hook(self.module, self.grad_outputs)
            if res is None:
                continue
            res = res if isinstance(res, tuple) else (res,)
            if len(res) != self.n_outputs:
                raise RuntimeError(f"Backward pre hook returned an invalid number of "
                                   f"grad_output, got {len(res)}, but expected "
                                   f"{self.n_outputs}")
            self.grad_outputs = res
        grad_outputs = self.grad_outputs
        if self.input_index is None:      # no input needs a gradient: the hooks run now
            if self.hooks:
                warnings.warn("Full backward hook is firing when gradients are computed with "
                              "respect to module outputs since no inputs require gradients.",
                              stacklevel=2)
            nothing = (None,) * self.n_inputs
            for hook in self.hooks:
                res = hook(self.module, nothing, grad_outputs)
                if res is not None and not all(r is None for r in res):
                    raise RuntimeError("Backward hook for Modules where no input requires "
                                       "gradient should always return None or None for all "
                                       "gradients.")
            self.grad_outputs = None
        return [grad_outputs[i] for i in self.output_index]

    def _input_grads(self, grads):
        if self.grad_outputs is None:     # the gradient reached the inputs around the outputs
            return grads
        grad_inputs = self._pack(self.input_index, grads, self.n_inputs)
        for hook in self.hooks:
            res = hook(self.module, grad_inputs, self.grad_outputs)
            if res is None:
                continue
            res = res if isinstance(res, tuple) else (res,)
            if len(res) != len(grad_inputs):
                raise RuntimeError(f"Backward hook returned an invalid number of grad_input, "
                                   f"got {len(res)}, but expected {len(grad_inputs)}")
            grad_inputs = res
        self.grad_outputs = None
        return [grad_inputs[i] for i in self.input_index]
