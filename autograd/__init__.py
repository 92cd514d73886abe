"""Autograd: the Function base, the backward engine, grad modes, hooks and gradient checks.

It knows tensors only through `TensorBase` (their autograd slots) and duck typing, so it
imports nothing above it.
"""
from .anomaly import detect_anomaly, is_anomaly_enabled, set_detect_anomaly
from .engine import queue_callback, register_backward_start_hook, run_backward
from .function import Function, Node, RemovableHandle, TensorBase, once_differentiable
from .grad_mode import (enable_grad, inference_mode, is_grad_enabled,
                        is_inference_mode_enabled, is_multithreading_enabled, no_grad,
                        set_grad_enabled, set_multithreading_enabled)
from .gradcheck import GradcheckError, gradcheck, gradgradcheck
from . import graph
from .variable import Variable


def _as_list(x):
    if x is None:
        return None
    return list(x) if isinstance(x, (tuple, list)) else [x]


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """Accumulate the gradients of `tensors` into the `.grad` of the leaves (or `inputs`)."""
    tensors = _as_list(tensors)
    grad_tensors = _as_list(grad_tensors) or [None] * len(tensors)
    if retain_graph is None:
        retain_graph = create_graph
    run_backward(tensors, grad_tensors, retain_graph=retain_graph, create_graph=create_graph,
                 inputs=_as_list(inputs), accumulate=True)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=None, materialize_grads=False):
    """Return the gradients of `outputs` with respect to `inputs` (no `.grad` is touched)."""
    outputs = _as_list(outputs)
    single = not isinstance(inputs, (tuple, list))
    inputs = _as_list(inputs)
    grad_outputs = _as_list(grad_outputs) or [None] * len(outputs)
    if retain_graph is None:
        retain_graph = create_graph
    for i, t in enumerate(inputs):
        if not t.requires_grad:
            raise RuntimeError(f"inputs[{i}] (shape {tuple(t.shape)}) does not require grad; "
                               f"set requires_grad=True on it before the forward pass")
    allow = bool(allow_unused) or materialize_grads
    res = run_backward(outputs, grad_outputs, retain_graph=retain_graph,
                       create_graph=create_graph, inputs=inputs, allow_unused=allow,
                       accumulate=False)
    if materialize_grads:
        res = tuple(r if r is not None else t.new_zeros(t.shape) for r, t in zip(res, inputs))
    return res


__all__ = ["Function", "Node", "backward", "grad", "no_grad", "enable_grad", "set_grad_enabled",
           "inference_mode", "is_grad_enabled", "is_inference_mode_enabled", "gradcheck",
           "gradgradcheck", "GradcheckError", "detect_anomaly", "set_detect_anomaly",
           "is_anomaly_enabled", "queue_callback", "register_backward_start_hook",
           "once_differentiable", "graph", "RemovableHandle", "Variable",
           "set_multithreading_enabled"]
from . import functional  # noqa: E402  (jacobian, hessian, vjp, ...: built on grad above)
from . import forward_ad  # noqa: E402,F401  (dual tensors: built on grad above)


def __getattr__(name):
    if name == "profiler":            # torch.autograd.profiler: it builds on the tensor library
        import importlib
        return importlib.import_module(f"{__name__}.profiler")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
