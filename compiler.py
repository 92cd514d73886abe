"""`torch.compiler`: Phalanx runs every program eagerly (see compile_api.py), so compiling is
never under way, and the decorators that steer a compiler return their function as it is."""
from .compile_api import compile  # noqa: F401

__all__ = ["allow_in_graph", "assume_constant_result", "compile", "cudagraph_mark_step_begin",
           "disable", "is_compiling", "is_dynamo_compiling", "is_exporting", "reset"]


def is_compiling():
    return False


def is_dynamo_compiling():
    return False


def is_exporting():
    return False


def reset():
    """Nothing cached to clear."""


def disable(fn=None, recursive=True, *, reason=None):
    """Keep `fn` out of compilation: it always is, so `fn` comes back unchanged."""
    if fn is None:
        return lambda f: f
    return fn


def allow_in_graph(fn):
    return fn


def assume_constant_result(fn):
    return fn


def cudagraph_mark_step_begin():
    """No CUDA graphs are captured here, so there is no step to mark."""
