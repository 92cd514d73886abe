"""`phalanx.jit`: PyTorch's TorchScript API, answered with the eager program.

`script` and `trace` return what they are given: a scripted or traced function computes what
the Python one does (that is TorchScript's contract; it only changes how it runs), so scripts
decorated with `@torch.jit.script`, or that trace a model before using it, run unchanged. The
differences: nothing is compiled (no `.graph` / `.code`), a traced model keeps its Python
control flow (PyTorch freezes the branches the example inputs took), and `save` / `load` of
TorchScript archives are refused: an archive holds code, and Phalanx saves weights
(`px.save(model.state_dict())`) and exports graphs as ONNX (`px.onnx.export`).
"""
import collections
import contextlib
import typing
import warnings

from .futures import Future
from .nn.modules.module import Module

__all__ = ["Attribute", "CompilationUnit", "Error", "Future", "ScriptFunction", "ScriptModule",
           "annotate", "enable_onednn_fusion", "export", "export_opnames", "fork", "freeze",
           "interface", "ignore", "isinstance", "load", "onednn_fusion_enabled",
           "optimize_for_inference", "save", "script", "script_if_tracing",
           "set_fusion_strategy", "strict_fusion", "trace", "trace_module", "unused", "wait"]

_builtin_isinstance = isinstance
Attribute = collections.namedtuple("Attribute", ["value", "type"])


class Error(RuntimeError):
    """TorchScript's error type (raised here only by what PyTorch would raise it for)."""


class ScriptFunction:
    """The type of PyTorch's scripted functions; `script` returns plain functions here."""


class ScriptModule(Module):
    """A base class of old TorchScript code: an `nn.Module` whose `jit.Attribute` values are
    stored as their value, as scripting would."""

    def __setattr__(self, name, value):
        if _builtin_isinstance(value, Attribute):
            value = value.value
        super().__setattr__(name, value)

    def save(self, f, **kwargs):
        save(self, f)


def script(obj, optimize=None, _frames_up=0, _rcb=None, example_inputs=None):
    """`obj` itself (a function, method or module): it already computes what its script
    would. Deprecated, with PyTorch 2.13's warning."""
    warnings.warn("`torch.jit.script` is deprecated. Please switch to `torch.compile` or "
                  "`torch.export`.", DeprecationWarning, stacklevel=2)
    return obj


def trace(func, example_inputs=None, optimize=None, check_trace=True, check_inputs=None,
          check_tolerance=1e-5, strict=True, _force_outplace=False, _module_class=None,
          _compilation_unit=None, example_kwarg_inputs=None, _store_inputs=True):
    """`func` itself, after one call on the example inputs (as tracing runs it, so errors
    surface here); with `check_trace`, it is called on each of `check_inputs` too."""
    _call(func, example_inputs, example_kwarg_inputs)
    if check_trace:
        for inputs in check_inputs or ():
            _call(func, inputs, None)
    return func


def trace_module(mod, inputs, optimize=None, check_trace=True, check_inputs=None,
                 check_tolerance=1e-5, strict=True, _force_outplace=False,
                 _module_class=None, _compilation_unit=None, example_inputs_is_kwarg=False,
                 _store_inputs=True):
    """`mod` itself, after calling each method named in `inputs` ({name: example inputs})."""
    if not _builtin_isinstance(inputs, dict):
        raise AttributeError("expected a dictionary of (method_name, input) pairs")
    for name, example in inputs.items():
        method = mod if name == "forward" else getattr(mod, name)
        if example_inputs_is_kwarg:
            _call(method, None, example)
        else:
            _call(method, example, None)
    if check_trace:
        for check in check_inputs or ():
            for name, example in check.items():
                _call(mod if name == "forward" else getattr(mod, name), example, None)
    return mod


def _call(func, args, kwargs):
    if args is None and kwargs is None:
        return None
    # a tuple or list holds the positional arguments; anything else is the one argument
    args = () if args is None else \
        (tuple(args) if _builtin_isinstance(args, (tuple, list)) else (args,))
    return func(*args, **(kwargs or {}))


def freeze(mod, preserved_attrs=None, optimize_numerics=True):
    """`mod` itself: freezing inlines parameters, which changes no value. As in PyTorch the
    module must be in eval mode."""
    if mod.training:
        raise RuntimeError("Freezing is currently only implemented for modules in eval mode. "
                           "Please call .eval() on your module before freezing.")
    return mod


def optimize_for_inference(mod, other_methods=None):
    """`mod` in eval mode (PyTorch freezes it first)."""
    return freeze(mod.eval())


def save(m, f, _extra_files=None):
    raise NotImplementedError(
        "jit.save writes a TorchScript archive (code and weights), which Phalanx does not make: "
        "save the weights with px.save(model.state_dict(), path) or export the graph with "
        "px.onnx.export(model, example_input, path)")


def load(f, map_location=None, _extra_files=None, _restore_shapes=False):
    raise NotImplementedError(
        "jit.load reads a TorchScript archive, whose code Phalanx cannot run: load weights with "
        "model.load_state_dict(px.load(path)), or read a torch.save file with px.load")


class CompilationUnit:
    """TorchScript source compiled at run time: not available."""

    def __init__(self, lang=None, _frames_up=0):
        raise NotImplementedError("jit.CompilationUnit compiles TorchScript source, which "
                                  "Phalanx does not run; define the functions in Python")


def export_opnames(m):
    raise NotImplementedError("jit.export_opnames lists a scripted module's operators; "
                              "Phalanx modules are not scripted")


# --- decorators and markers that only matter to the compiler ---------------------------------
def export(fn):
    return fn


def interface(obj):
    return obj


def script_if_tracing(fn):
    return fn


def unused(fn):
    return fn


def ignore(drop=False, **kwargs):
    """`@ignore` or `@ignore(drop=...)`: the function as it is."""
    if callable(drop):
        return drop
    return lambda fn: fn


def annotate(the_type, the_value):
    return the_value


def fork(func, *args, **kwargs):
    """A completed Future of `func(*args, **kwargs)` (run now, as in eager PyTorch)."""
    fut = Future()
    fut.set_result(func(*args, **kwargs))
    return fut


def wait(future):
    return future.wait()


def isinstance(obj, target_type):
    """`isinstance` that also checks the element types of `List[T]`, `Dict[K, V]`,
    `Tuple[...]` and `Optional[T]`, as TorchScript's refinement does."""
    origin, args = typing.get_origin(target_type), typing.get_args(target_type)
    if origin is None:
        return _builtin_isinstance(obj, target_type)
    if origin is typing.Union:
        return any(isinstance(obj, t) for t in args)
    if origin in (list, tuple, dict) and not _builtin_isinstance(obj, origin):
        return False
    if origin is list:
        return all(isinstance(x, args[0]) for x in obj)
    if origin is dict:
        return all(isinstance(k, args[0]) and isinstance(v, args[1]) for k, v in obj.items())
    if origin is tuple:
        return len(obj) == len(args) and all(isinstance(x, t) for x, t in zip(obj, args))
    return _builtin_isinstance(obj, origin)


# --- fusion switches: kernel choices of PyTorch's compiler, kept so code can read them back ---
_settings = {"onednn_fusion": False, "fusion_strategy": [("STATIC", 2), ("DYNAMIC", 10)]}


def enable_onednn_fusion(enabled):
    _settings["onednn_fusion"] = bool(enabled)


def onednn_fusion_enabled():
    return _settings["onednn_fusion"]


def set_fusion_strategy(strategy):
    previous, _settings["fusion_strategy"] = _settings["fusion_strategy"], list(strategy)
    return previous


@contextlib.contextmanager
def strict_fusion():
    yield
