"""`phalanx.autograd.functional`: derivatives of whole functions (PyTorch's
torch.autograd.functional): vjp, jvp, jacobian, hessian, vhp, hvp.

All are built on `grad()` (reverse mode): a Jacobian row per output element, a
Jacobian-vector product as the derivative of a vector-Jacobian product with respect to its
cotangent (the double-backward trick). `strategy="forward-mode"` and `vectorize` choose how
PyTorch computes; the values are the same, and here they are always computed in reverse mode.
Inputs are copied into fresh leaves (kept connected to their graph under create_graph=True,
as in PyTorch), so the caller's tensors are never marked or written.
"""
from . import grad as _grad   # the package imports this module after defining grad()
from .function import TensorBase

__all__ = ["hessian", "hvp", "jacobian", "jvp", "vhp", "vjp"]


def _as_tuple(x, what, fn_name):
    single = isinstance(x, TensorBase)
    items = (x,) if single else tuple(x)
    for i, t in enumerate(items):
        if not isinstance(t, TensorBase):
            raise TypeError(f"The {what} given to {fn_name} must be either a Tensor or a tuple "
                            f"of Tensors but the value at index {i} has type "
                            f"{type(t).__name__}.")
    return single, items


def _v_over_inputs(v, inputs, fn_name):
    """The vector v of a product over the inputs; None only for one single-element input."""
    if v is not None:
        return _as_tuple(v, "v", fn_name)[1]
    if len(inputs) != 1 or inputs[0].numel() != 1:
        raise RuntimeError("The vector v can only be None if the input to the user-provided "
                           "function is a single Tensor with a single element.")
    return (inputs[0].new_ones(*inputs[0].shape),)


def _prepare(inputs, create_graph):
    return tuple(t.view_as(t) if create_graph and t.requires_grad
                 else t.detach().requires_grad_(True) for t in inputs)


def _finish(tensors, create_graph):
    return tuple(t if create_graph or t is None else t.detach() for t in tensors)


def _zeros_for_unused(grads, like):
    return tuple(g if g is not None else t.new_zeros(*t.shape) for g, t in zip(grads, like))


# strict=True: PyTorch's errors when a derivative does not depend on what it should
_STRICT_NO_GRAD = {
    "outputs": "Output {i} of the user-provided function does not require gradients. The "
               "outputs must be computed in a differentiable manner from the input when "
               "running in strict mode.",
    "grad_inputs": "The gradient with respect to input {i} is independent of the inputs of the "
                   "user-provided function. This is not allowed in strict mode.",
    "jacobian": "While computing the hessian, found that the jacobian of the user-provided "
                "function with respect to input {i} is independent of the input. This is not "
                "allowed in strict mode. You should ensure that your function is twice "
                "differentiable and that the jacobian depends on the inputs (this would be "
                "violated by a linear function for example).",
}
_STRICT_UNUSED = {
    "back": "The output of the user-provided function is independent of input {i}. This is "
            "not allowed in strict mode.",
    "back_trick": "The gradient with respect to the input is independent of entry {i} in the "
                  "grad_outputs when using the double backward trick to compute forward mode "
                  "gradients. This is not allowed in strict mode.",
    "double_back": "The jacobian of the user-provided function is independent of input {i}. "
                   "This is not allowed in strict mode.",
}


def _check_strict(tensors, kind, strict):
    """Every tensor must exist and require grad (a None is an unreached input)."""
    if not strict:
        return
    for i, t in enumerate(tensors):
        if t is None:
            raise RuntimeError(_STRICT_UNUSED["back"].format(i=i))
        if not t.requires_grad:
            raise RuntimeError(_STRICT_NO_GRAD[kind].format(i=i))


def _strict_results(grads, strict, create_graph, stage):
    """The final derivatives under strict=True: none missing, and connected to the inputs
    when the caller asked for a graph."""
    if not strict:
        return
    for i, g in enumerate(grads):
        if g is None:
            raise RuntimeError(_STRICT_UNUSED[stage].format(i=i))
        if create_graph and not g.requires_grad:
            what = "hessian" if stage == "double_back" else "jacobian"
            raise RuntimeError(f"The {what} of the user-provided function is independent of "
                               f"input {i}. This is not allowed in strict mode when "
                               f"create_graph=True.")


def _apply(func, inputs, fn_name):
    single, outputs = _as_tuple(func(*inputs), "outputs of the user-provided function",
                                fn_name)
    return single, outputs


def vjp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), v^T J): the vector-Jacobian product at `inputs`."""
    single_in, inputs = _as_tuple(inputs, "inputs", "vjp")
    inputs = _prepare(inputs, create_graph)
    single_out, outputs = _apply(func, inputs, "vjp")
    if v is None:
        if any(o.numel() != 1 for o in outputs):
            raise RuntimeError("The vector v can only be None if the user-provided function "
                               "returns a single Tensor with a single element.")
        v = tuple(o.new_ones(*o.shape) for o in outputs)
    else:
        _, v = _as_tuple(v, "v", "vjp")
    grads = _grad(outputs, inputs, v, create_graph=create_graph, allow_unused=not strict)
    grads = _finish(_zeros_for_unused(grads, inputs), create_graph)
    outputs = _finish(outputs, create_graph)
    return (outputs[0] if single_out else outputs), (grads[0] if single_in else grads)


def jvp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), J v): the Jacobian-vector product, as d/du (u^T J) v."""
    single_in, inputs = _as_tuple(inputs, "inputs", "jvp")
    v = _v_over_inputs(v, inputs, "jvp")
    inputs = _prepare(inputs, create_graph)
    single_out, outputs = _apply(func, inputs, "jvp")
    _check_strict(outputs, "outputs", strict)
    cotangents = tuple(o.new_zeros(*o.shape).requires_grad_(True) for o in outputs)
    grads = _grad(outputs, inputs, cotangents, create_graph=True, allow_unused=True)
    _check_strict(grads, "grad_inputs", strict)
    used = [(g, vi) for g, vi in zip(grads, v) if g is not None]
    if not used:
        result = tuple(o.new_zeros(*o.shape) for o in outputs)
    else:
        result = _grad([g for g, _ in used], cotangents, [vi for _, vi in used],
                       create_graph=create_graph, allow_unused=True)
        _strict_results(result, strict, create_graph, "back_trick")
        result = _zeros_for_unused(result, outputs)
    result = _finish(result, create_graph)
    outputs = _finish(outputs, create_graph)
    return (outputs[0] if single_out else outputs), (result[0] if single_out else result)


def _jacobian_rows(outputs, inputs, create_graph, strict):
    """[[J_ij for each input j] for each output i], J_ij of shape out_i.shape + in_j.shape."""
    blocks = []
    for out in outputs:
        n = out.numel()
        rows = [inp.new_zeros(n, *inp.shape) for inp in inputs]
        for k in range(n):
            onehot = out.new_zeros(n)
            onehot[k] = 1
            grads = _grad(out, inputs, onehot.reshape(*out.shape), retain_graph=True,
                          create_graph=create_graph, allow_unused=not strict)
            for row, g in zip(rows, grads):
                if g is not None:
                    row[k] = g
        blocks.append(tuple(r.reshape(*out.shape, *inp.shape)
                            for r, inp in zip(rows, inputs)))
    return blocks


def jacobian(func, inputs, create_graph=False, strict=False, vectorize=False,
             strategy="reverse-mode"):
    """d func / d inputs: a tensor of shape output.shape + input.shape, or the tuple (of
    tuples) of them when func takes or returns several tensors."""
    if strategy not in ("reverse-mode", "forward-mode"):
        raise ValueError(f'Expected strategy to be either "forward-mode" or "reverse-mode", '
                         f'got {strategy!r}')
    if strategy == "forward-mode" and not vectorize:
        raise NotImplementedError("torch.autograd.functional.jacobian: `strategy=\"forward-"
                                  "mode\"` requires `vectorize=True`, as in PyTorch")
    single_in, inputs = _as_tuple(inputs, "inputs", "jacobian")
    inputs = _prepare(inputs, create_graph)
    single_out, outputs = _apply(func, inputs, "jacobian")
    blocks = [_finish(b, create_graph) for b in
              _jacobian_rows(outputs, inputs, create_graph, strict)]
    if single_in:
        blocks = [b[0] for b in blocks]
    return blocks[0] if single_out else tuple(blocks)


def hessian(func, inputs, create_graph=False, strict=False, vectorize=False,
            outer_jacobian_strategy="reverse-mode"):
    """The Hessian of a scalar function: the Jacobian of its gradient."""
    single_in, tuple_inputs = _as_tuple(inputs, "inputs", "hessian")

    def gradient(*args):
        _, out = _as_tuple(func(*args), "outputs of the user-provided function", "hessian")
        if len(out) != 1 or out[0].numel() != 1:
            raise RuntimeError("The function given to hessian should return a single Tensor "
                               "containing a single element")
        grads = _grad(out[0], args, create_graph=True, allow_unused=True)
        return _zeros_for_unused(grads, args)

    blocks = jacobian(gradient, tuple_inputs, create_graph, strict, vectorize,
                      outer_jacobian_strategy)
    return blocks[0][0] if single_in else blocks


def vhp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), v^T H) for a scalar func."""
    single_in, inputs = _as_tuple(inputs, "inputs", "vhp")
    inputs = _prepare(inputs, create_graph)
    _, outputs = _apply(func, inputs, "vhp")
    _check_strict(outputs, "outputs", strict)
    if len(outputs) != 1 or outputs[0].numel() != 1:
        raise RuntimeError("The function given to vhp should return a single Tensor "
                           "containing a single element")
    v = _v_over_inputs(v, inputs, "vhp")
    grads = _grad(outputs[0], inputs, create_graph=True, allow_unused=True)
    _check_strict(grads, "jacobian", strict)
    grads = _zeros_for_unused(grads, inputs)
    used = [(g, vi) for g, vi in zip(grads, v) if g.requires_grad]
    result = _grad([g for g, _ in used], inputs, [vi for _, vi in used],
                   create_graph=create_graph, allow_unused=True) if used else \
        (None,) * len(inputs)
    _strict_results(result, strict, create_graph, "double_back")
    result = _finish(_zeros_for_unused(result, inputs), create_graph)
    value = _finish(outputs, create_graph)[0]
    return value, (result[0] if single_in else result)


def hvp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), H v): equal to v^T H, as the Hessian of a twice-differentiable scalar
    function is symmetric."""
    return vhp(func, inputs, v, create_graph, strict)
