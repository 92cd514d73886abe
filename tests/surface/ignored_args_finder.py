"""Find parameters of Phalanx's public, PyTorch-mirroring callables that are accepted and ignored.

An argument accepted and ignored is a silent lie to a ported script (`pin_memory=True` that pins
nothing, a barrier `timeout` that never fires), so every public callable is walked (the
namespaces and classes below; aliases and decorators lead to the one definition, scanned once):
its source is parsed and each parameter must be read somewhere in the body, nested functions
and lambdas included. Not reading it:
- never loading the name, or only discarding it (`del x`, a bare `x`, `_ = x`);
- assigning it before any read (`device = "cpu"`);
- only storing it (`self.mask_check = mask_check`) in an attribute that no code reads;
- only picking keys out of `**kwargs` (`kwargs.get("k")`): any other key is ignored;
- only passing it on to Phalanx functions (private helpers included) that ignore it.
A body that calls `locals()` or `vars()` reads every parameter; a body that only raises (an
abstract method) ignores none. Builtins (NumPy, the standard library) have no source: they are
counted and skipped.

    python tests/surface/ignored_args_finder.py     # prints the findings and the counts
"""
import ast
import functools
import importlib
import inspect
import os
import types
from dataclasses import dataclass, field

# The public namespaces that mirror PyTorch's, by Phalanx's import path.
MODULES = (
    "phalanx", "phalanx.nn", "phalanx.nn.functional", "phalanx.nn.init", "phalanx.nn.utils",
    "phalanx.nn.utils.rnn", "phalanx.nn.parallel", "phalanx.optim", "phalanx.optim.lr_scheduler",
    "phalanx.optim.swa_utils", "phalanx.utils.data", "phalanx.utils.checkpoint",
    "phalanx.distributed", "phalanx.autograd", "phalanx.autograd.functional",
    "phalanx.distributions", "phalanx.distributions.kl", "phalanx.linalg", "phalanx.fft",
    "phalanx.special", "phalanx.cuda", "phalanx.amp", "phalanx.multiprocessing",
    "phalanx.func", "phalanx.testing", "phalanx.profiler", "phalanx.onnx", "phalanx.backends",
    "phalanx.backends.cudnn", "phalanx.backends.cuda", "phalanx.accelerator", "phalanx.cpu",
    "phalanx.nn.utils.parametrize", "phalanx.nn.utils.parametrizations",
    "phalanx.distributions.constraints", "phalanx.distributions.transforms",
    "phalanx.nn.attention", "phalanx.nn.utils.prune", "phalanx.nn.modules.module", "phalanx.jit",
    "phalanx.autograd.forward_ad", "phalanx.hub", "phalanx.sparse", "phalanx.utils.benchmark",
    "phalanx.utils.dlpack", "phalanx.utils.model_zoo",
    "phalanx.distributed.optim", "phalanx.distributed.algorithms",
    "phalanx.distributed.algorithms.join",
    "phalanx.distributed.algorithms.ddp_comm_hooks",
    "phalanx.distributed.algorithms.ddp_comm_hooks.default_hooks",
    "phalanx.distributed.algorithms.ddp_comm_hooks.powerSGD_hook",
    "phalanx.distributed.algorithms.ddp_comm_hooks.quantization_hooks",
    "phalanx.distributed.algorithms.ddp_comm_hooks.debugging_hooks",
    "phalanx.distributed.algorithms.ddp_comm_hooks.post_localSGD_hook",
    "phalanx.distributed.algorithms.model_averaging.averagers",
    "phalanx.distributed.algorithms.model_averaging.hierarchical_model_averager",
    "phalanx.distributed.algorithms.model_averaging.utils",
    "phalanx.distributed.fsdp", "phalanx.distributed.tensor", "phalanx.distributed.tensor.parallel",
    "phalanx.distributed.checkpoint", "phalanx.distributed.checkpoint.state_dict",
)
# Classes whose whole public method surface is scanned besides the module-level walk.
CLASSES = ("phalanx.Tensor", "phalanx.sparse.SparseTensor", "phalanx.Generator", "phalanx.nn.Module",
           "phalanx.nn.parallel.DistributedDataParallel", "phalanx.optim.Optimizer",
           "phalanx.optim.lr_scheduler.LRScheduler", "phalanx.optim.lr_scheduler.ReduceLROnPlateau",
           "phalanx.utils.data.DataLoader", "phalanx.distributions.Distribution",
           "phalanx.amp.GradScaler", "phalanx.distributed.tensor.DTensor",
           "phalanx.distributed.fsdp.FSDPModule")
# Methods scanned on every public class found in MODULES (the constructor and the call path).
CLASS_METHODS = ("__init__", "__new__", "__call__", "forward", "step", "zero_grad",
                 "load_state_dict", "state_dict", "sample", "rsample", "log_prob", "cdf",
                 "icdf", "entropy", "expand", "enumerate_support", "scale", "unscale_", "update")


@dataclass
class Report:
    findings: dict = field(default_factory=dict)   # "module.qualname(param)" -> public name
    callables: int = 0                               # distinct definitions parsed
    parameters: int = 0                              # their parameters (self/cls not counted)
    no_source: list = field(default_factory=list)    # public names with no Python source


def _resolve(name):
    """Import 'phalanx.a.b.Attr' as a module or as an attribute of the longest module prefix."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(name)


def _definition(obj):
    """The Python function behind a public name: unwrap decorators, partials, bound methods,
    static/class methods; None for builtins (C or NumPy functions)."""
    for _ in range(20):
        if isinstance(obj, (staticmethod, classmethod)):
            obj = obj.__func__
        elif isinstance(obj, functools.partial):
            obj = obj.func
        elif isinstance(obj, types.MethodType):
            obj = obj.__func__
        elif isinstance(obj, property):
            return None
        elif hasattr(obj, "__wrapped__"):
            obj = obj.__wrapped__
        else:
            break
    return obj if isinstance(obj, types.FunctionType) else None


def _is_phalanx(obj):
    return (getattr(obj, "__module__", None) or "").startswith("phalanx")


def _only_raises(fn_node):
    body = [s for s in fn_node.body
            if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    return len(body) == 1 and isinstance(body[0], ast.Raise)


@functools.lru_cache(maxsize=None)
def _parsed(filename):
    with open(filename, encoding="utf-8") as f:
        return ast.parse(f.read(), filename)


@functools.lru_cache(maxsize=None)
def _node_of(fn):
    """The ast node that defines `fn`: the def (or lambda) in its file at its first line."""
    code = fn.__code__
    try:
        tree = _parsed(code.co_filename)
    except (OSError, SyntaxError):
        return None
    arg_names = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
    for n in ast.walk(tree):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == code.co_name:
            first = min([n.lineno] + [d.lineno for d in n.decorator_list])
            if code.co_firstlineno in (first, n.lineno):
                return n
        elif (isinstance(n, ast.Lambda) and code.co_name == "<lambda>"
              and n.lineno == code.co_firstlineno
              and tuple(a.arg for a in n.args.posonlyargs + n.args.args + n.args.kwonlyargs)
              == arg_names):
            return n
    return None


@functools.lru_cache(maxsize=None)
def _unread_parameters(fn, node=None):
    """(parameter names, the ones never read) for one Python function (defined by `node`, by
    default found in its file), or None without source."""
    node = node or _node_of(fn)
    if node is None:
        return None
    args = node.args
    params = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
    params += [a.arg for a in (args.vararg, args.kwarg) if a is not None]
    if params and params[0] in ("self", "cls") and not isinstance(node, ast.Lambda):
        params = params[1:]
    if not params or (not isinstance(node, ast.Lambda) and _only_raises(node)):
        return params, []
    body = node.body if isinstance(node.body, list) else [node.body]
    kwarg = args.kwarg.arg if args.kwarg is not None else None
    read = set()
    for stmt in body:
        if _discards(stmt):
            continue
        for parent in ast.walk(stmt):
            if (isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name)
                    and parent.func.id in ("locals", "vars") and not parent.args):
                return params, []
            for n in ast.iter_child_nodes(parent):
                if (isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
                        and not (n.id == kwarg and _picks_keys(parent))):
                    read.add(n.id)
    overwritten = _overwritten_before_read(body, params)
    shelved = _stored_and_never_read(fn, body, params)
    return params, [p for p in params if p not in read or p in overwritten or p in shelved]


def _stored_and_never_read(fn, body, params):
    """Parameters read only to be stored (`self.mask_check = mask_check`) in an attribute that
    nothing reads: not the defining file, nor any file of the package that names the class."""
    stores, other_reads = {}, set()
    for stmt in body:
        for n in ast.walk(stmt):
            if not (isinstance(n, ast.Assign) and len(n.targets) == 1):
                continue
            target, value = n.targets[0], n.value
            pairs = [(target, value)]
            if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple) and \
                    len(target.elts) == len(value.elts):
                pairs = list(zip(target.elts, value.elts))   # self.a, self.b = a, b
            for t, v in pairs:
                if (isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name)
                        and t.value.id == "self" and isinstance(v, ast.Name)):
                    stores.setdefault(v.id, []).append((t.attr, v))
    stored_values = {id(v) for pairs in stores.values() for _, v in pairs}
    for stmt in body:
        for n in ast.walk(stmt):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and \
                    id(n) not in stored_values:
                other_reads.add(n.id)
    candidates = [p for p in params if p in stores and p not in other_reads]
    if not candidates:
        return set()
    class_name = fn.__qualname__.split(".")[-2] if "." in fn.__qualname__ else None
    readers = [attrs for file, (attrs, text) in _attribute_reads().items()
               if file == fn.__code__.co_filename or (class_name and class_name in text)]
    return {p for p in candidates
            if not any(attr in attrs for attr, _ in stores[p] for attrs in readers)}


@functools.lru_cache(maxsize=None)
def _attribute_reads():
    """file -> (attribute names its code reads: `x.name`, `getattr(x, "name")`; its text)."""
    root = os.path.dirname(importlib.import_module("phalanx").__file__)
    reads = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in ("tests", "__pycache__") and d[0] != "."]
        for file in files:
            if not file.endswith(".py"):
                continue
            path = os.path.join(folder, file)
            try:
                tree = _parsed(path)
            except (SyntaxError, UnicodeDecodeError):
                continue
            names = set()
            for n in ast.walk(tree):
                if isinstance(n, ast.Attribute) and not isinstance(n.ctx, ast.Store):
                    names.add(n.attr)
                elif (isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                      and n.func.id in ("getattr", "hasattr") and len(n.args) >= 2
                      and isinstance(n.args[1], ast.Constant)):
                    names.add(n.args[1].value)
            with open(path, encoding="utf-8") as f:
                reads[path] = (names, f.read())
    return reads


def _overwritten_before_read(body, params):
    """Parameters whose first mention in the body is a plain assignment that does not read them
    (`device = "cpu"`): the caller's value is thrown away."""
    overwritten = set()
    for name in params:
        for stmt in body:
            mentions = [n for n in ast.walk(stmt) if isinstance(n, ast.Name) and n.id == name]
            if not mentions:
                continue
            if (isinstance(stmt, ast.Assign)
                    and all(isinstance(m.ctx, ast.Store) for m in mentions)
                    and any(isinstance(t, ast.Name) and t.id == name for t in stmt.targets)):
                overwritten.add(name)
            break
    return overwritten


def _discards(stmt):
    """`del x`, a bare `x`, `_ = x`: ways to silence a linter, not to honour an argument."""
    if isinstance(stmt, ast.Delete):
        return True
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, (ast.Name, ast.Tuple)):
        return True
    return (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name) and stmt.targets[0].id == "_")


def _picks_keys(parent):
    """`kwargs.get(k)`, `kwargs.pop(k)`, `kwargs[k]`: reading chosen keys leaves any other key
    ignored, so that alone does not read `**kwargs`; forwarding or checking it does."""
    return ((isinstance(parent, ast.Attribute) and parent.attr in ("get", "pop", "setdefault"))
            or isinstance(parent, ast.Subscript))


def _public_callables():
    """(public name, object) for every function and scanned method of the surface."""
    seen_classes = set()
    for module_name in MODULES:
        module = _resolve(module_name)
        names = getattr(module, "__all__", None) or dir(module)
        for name in sorted(set(names)):
            if name.startswith("_"):
                continue
            try:
                obj = getattr(module, name)
            except AttributeError:
                continue
            if isinstance(obj, types.ModuleType):
                continue
            if inspect.isclass(obj) and _is_phalanx(obj):
                if obj not in seen_classes:
                    seen_classes.add(obj)
                    for method in CLASS_METHODS:
                        if method in vars(obj) or any(method in vars(k) for k in obj.__mro__
                                                      if _is_phalanx(k)):
                            yield f"{module_name}.{name}.{method}", inspect.getattr_static(
                                obj, method)
            elif inspect.isclass(obj) or callable(obj):
                yield f"{module_name}.{name}", obj
    for class_name in CLASSES:
        cls = _resolve(class_name)
        for name in sorted(dir(cls)):
            if name.startswith("_") and name not in ("__init__", "__call__"):
                continue
            obj = inspect.getattr_static(cls, name)
            if callable(obj) or isinstance(obj, (staticmethod, classmethod)):
                yield f"{class_name}.{name}", obj


def scan():
    report = Report()
    done = set()
    for public_name, obj in _public_callables():
        fn = _definition(obj)
        if fn is None:
            if not isinstance(obj, property):
                report.no_source.append(public_name)
            continue
        if not _is_phalanx(fn):
            report.no_source.append(public_name)  # NumPy's or the standard library's, as-is
            continue
        if fn.__code__ in done:
            continue
        done.add(fn.__code__)
        result = _unread_parameters(fn)
        if result is None:
            report.no_source.append(public_name)
            continue
        params, unread = result
        report.callables += 1
        report.parameters += len(params)
        for param in unread + _lost_in_callees(fn, params, unread):
            report.findings[f"{fn.__module__}.{fn.__qualname__}({param})"] = public_name
    return report


def _lost_in_callees(fn, params, unread, depth=0):
    """Parameters whose every read passes them on, by name, to Phalanx functions that ignore
    them (followed through private helpers, which the public walk does not reach)."""
    node = _node_of(fn)
    if node is None or isinstance(node, ast.Lambda) or depth > 4:
        return []
    lost = []
    for param in params:
        if param in unread:
            continue
        reads = _loads_and_calls(node)[0].get(param, 0)
        handoffs = list(_handoffs(fn, node, param))
        if reads and len(handoffs) == reads and all(
                _ignores(callee, callee_param, depth) for callee, callee_param in handoffs):
            lost.append(param)
    return lost


@functools.lru_cache(maxsize=None)
def _loads_and_calls(node):
    """How often the body loads each name, and its calls."""
    loads, calls = {}, []
    for stmt in node.body:
        for n in ast.walk(stmt):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
                loads[n.id] = loads.get(n.id, 0) + 1
            elif isinstance(n, ast.Call):
                calls.append(n)
    return loads, calls


def _handoffs(fn, node, param):
    """(callee, its parameter) for each call that passes `param` on as a plain argument."""
    for call in _loads_and_calls(node)[1]:
        callee = _callee(fn, call.func)
        callee_node = _node_of(callee) if callee is not None else None
        passed = [(i, a) for i, a in enumerate(call.args)] + \
                 [(k.arg, k.value) for k in call.keywords]
        for where, value in passed:
            if not (isinstance(value, ast.Name) and value.id == param):
                continue
            if callee_node is None or isinstance(callee_node, ast.Lambda):
                yield None, None    # passed to something this walk cannot see into
                continue
            a = callee_node.args
            positional = [x.arg for x in a.posonlyargs + a.args]
            if isinstance(where, int) and any(isinstance(x, ast.Starred)
                                              for x in call.args[:where]):
                yield None, None
            elif isinstance(where, int):
                yield (callee, positional[where]) if where < len(positional) else (None, None)
            elif where in positional + [x.arg for x in a.kwonlyargs]:
                yield callee, where
            else:
                yield None, None


def _callee(fn, func):
    """The Phalanx Python function a call's `func` names (a global, a closure variable, or an
    attribute of a module), or None."""
    if isinstance(func, ast.Name):
        free = fn.__code__.co_freevars
        if func.id in free:
            try:
                target = fn.__closure__[free.index(func.id)].cell_contents
            except ValueError:      # an empty cell
                return None
        else:
            target = fn.__globals__.get(func.id)
    elif (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
          and isinstance(fn.__globals__.get(func.value.id), types.ModuleType)):
        target = getattr(fn.__globals__[func.value.id], func.attr, None)
    else:
        return None
    target = _definition(target) if target is not None else None
    return target if target is not None and _is_phalanx(target) else None


@functools.lru_cache(maxsize=None)
def _ignores(callee, param, depth):
    if callee is None:
        return False
    result = _unread_parameters(callee)
    if result is None:
        return False
    params, unread = result
    return param in unread or param in _lost_in_callees(callee, params, unread, depth + 1)


if __name__ == "__main__":
    found = scan()
    for key, public in sorted(found.findings.items()):
        print(f"{key:90s} via {public}")
    print(f"{found.callables} callables, {found.parameters} parameters, "
          f"{len(found.findings)} unread, {len(found.no_source)} without Python source: "
          f"{sorted(found.no_source)}")
