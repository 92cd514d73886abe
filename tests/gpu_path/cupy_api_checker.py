"""A static read of the engine's source against the CuPy that is installed (no GPU needed).

`check_source(Surface(), text, rel)` parses one file with `ast`, follows every expression that names
CuPy's array module or one of its submodules, classes, arrays or instances, and reports what
CuPy would refuse at run time:

- `missing`: an attribute CuPy lacks (`xp.nonexistent_fn`, `arr.flags.writeable`);
- `call`: a call whose positional count or keywords CuPy's function does not accept
  (`xp.indices(s, sparse=True)`), read from `inspect.signature`, from the signature Cython
  embeds as the first line of a docstring, or, for ufuncs, from their argument counts and the
  keywords `ufunc.__call__` takes;
- `dynamic`: `getattr(xp, name)` whose name neither is a constant nor comes from constants
  passed by this file's call sites;
- `unchecked`: a call to CuPy whose signature cannot be read here;
- `numpy`: a NumPy function given an array that may be CuPy's (`np.exp(d)` with
  `d = x._data`), which CuPy refuses to convert implicitly.

How the code names CuPy (the conventions followed):
- modules: the names `xp`, `cp`, `cupy`, `cupyx` and attributes `.xp`, `._xp`, `.cupy`,
  `._cupy`; the results of `array_module(...)`, `get_array_module(...)`, `cupy()`,
  `module_for_device(...)`, `require(...)` (phalanx.cuda), `special(xp)`, the first element
  of `placed_on(...)` and `probe()`; imports of cupy/cupyx/cupy_backends modules; functions
  of the same file that return one of these (`_xp_linalg(d).det`); per-file names listed in
  FILE_NAMES (the nccl backend takes its modules as parameters);
- arrays: `<tensor>._data`, results of CuPy's array functions and of array methods, indexing
  and arithmetic on arrays, and names bound to any of these;
- instances: results of CuPy classes (`cp.cuda.Event(...)`) and of the factories in
  FACTORIES, kept in names and in `self.<attr>` of the class that sets them.
A name bound to different kinds of values in one function is left alone (flow-insensitive).

Where CuPy's wrapper of a CUDA library does not import because the library is missing here
(NCCL without nvidia-nccl, cuRAND without cupy's [ctk] extra), its names and signatures are
read from the signatures Cython compiled into the wrapper's binary. Python modules that need
a missing library (cupyx.scipy.linalg needs cuBLAS) are skipped and listed in
`Surface.unavailable`.
"""
import ast
import inspect
import re
import sys
import types
import warnings

CALLS_RETURNING_CUPY = {"array_module": "cupy", "get_array_module": "cupy", "cupy": "cupy",
                        "module_for_device": "cupy", "require": "cupy", "_require": "cupy",
                        "special": "cupyx.scipy.special"}
CALLS_RETURNING_CUPY_FIRST = {"placed_on", "probe"}     # (module, ...) tuples
MODULE_NAMES = {"xp": "cupy", "cp": "cupy", "cupy": "cupy", "_cupy": "cupy", "cupyx": "cupyx"}
MODULE_ATTRS = {"xp": "cupy", "_xp": "cupy", "cupy": "cupy", "_cupy": "cupy"}
FILE_NAMES = {
    # NcclProcessGroup(comm, ..., nccl=, cuda=, xp=): the modules are parameters
    "distributed/nccl_backend.py": {"nccl": "cupy.cuda.nccl", "cuda": "cupy.cuda",
                                    "_nccl": "cupy.cuda.nccl", "_cuda": "cupy.cuda",
                                    "comm": "cupy.cuda.nccl.NcclCommunicator()"},
}
FACTORIES = {"cupy.get_default_memory_pool": "cupy.cuda.MemoryPool",
             "cupy.get_default_pinned_memory_pool": "cupy.cuda.PinnedMemoryPool",
             "cupy.cuda.get_current_stream": "cupy.cuda.Stream",
             "cupy.cuda.Stream.record": "cupy.cuda.Event",
             "cupy.cuda.Stream.null": "cupy.cuda.Stream"}
ARRAY_ATTRS = {"T", "mT", "real", "imag", "base"}
INSTANCE_ATTRS = {"data": "cupy.cuda.MemoryPointer", "device": "cupy.cuda.Device",
                  "flags": "cupy._core.flags.Flags"}
NOT_ARRAYS = {"item", "tolist", "tobytes", "get", "nonzero", "dumps", "fill", "set",
              "scatter_add", "scatter_max", "scatter_min", "put", "toDlpack", "__dlpack__",
              "__dlpack_device__"}
# CuPy functions whose result is not one array
NOT_ARRAY_RESULTS = {"nonzero", "unique", "histogram", "frexp", "modf", "divmod", "meshgrid",
                     "broadcast_arrays", "split", "array_split", "unravel_index",
                     "qr", "svd", "eigh", "slogdet", "get_array_module", "isscalar", "ndim",
                     "shape", "allclose", "array_equal", "result_type", "can_cast",
                     "asnumpy", "from_dlpack"}
# modules whose functions return arrays (not cupy.cuda, cupyx.empty_pinned's NumPy arrays...)
ARRAY_MODULES = {"cupy", "cupy.linalg", "cupy.fft", "cupy.random", "cupyx.scipy.special",
                 "cupyx.scipy.linalg"}
# NumPy functions that read only an array's dtype or shape, which CuPy arrays give them
NUMPY_ON_METADATA = {"dtype", "result_type", "promote_types", "can_cast", "shape", "ndim",
                     "size", "broadcast_shapes", "iinfo", "finfo", "isscalar", "errstate"}
UFUNC_KEYWORDS = {"out", "dtype", "casting", "_where"}   # cupy._core._kernel.ufunc.__call__
_MISSING = object()


class Mod:
    def __init__(self, path):
        self.path = path


class Obj:
    """A CuPy object reached by an attribute path (function, class, constant)."""

    def __init__(self, path, obj):
        self.path, self.obj = path, obj


class Arr:
    pass


class Inst:
    def __init__(self, cls_path):
        self.cls_path = cls_path


class Method:
    def __init__(self, owner_path, name, obj):
        self.owner_path, self.name, self.obj = owner_path, name, obj


class Many:
    """One of several CuPy objects (`getattr(xp, table[key])`)."""

    def __init__(self, refs):
        self.refs = refs


ARR = Arr()


# ---- CuPy's surface ---------------------------------------------------------------------------
def _import_quietly(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        __import__(name)
    return sys.modules[name]


class LibFromBinary:
    """Names and signatures of one of CuPy's wrappers of a CUDA library
    (`cupy_backends.cuda.libs.<name>`: nccl, curand, ...) read from the signatures Cython
    compiled into it, for machines where the library itself is not installed and the
    wrapper does not import (NCCL without nvidia-nccl, cuRAND without cupy's [ctk])."""

    def __init__(self, so):
        self.name = so.name.split(".")[0]
        lines = [line.strip() for chunk in re.findall(rb"[\x20-\x7e\n]{4,}", so.read_bytes())
                 for line in chunk.decode().split("\n")]
        self.constants = {line for line in lines if re.fullmatch(r"[A-Z][A-Z0-9]*_[A-Z0-9_]+",
                                                                 line)}
        self.signatures = {}
        for line in lines:
            m = re.fullmatch(r"(\w+(?:\.\w+)?)\(([^()]*)\)(?: -> [\w.]+)?", line)
            if m:
                self.signatures.setdefault(m.group(1), line)

    def attr(self, owner, name):
        """A stand-in object with the signature as its docstring, or _MISSING."""
        key = name if owner is None else f"{owner}.{name}"
        if owner is None and name in self.constants:
            return 0
        if key in self.signatures:
            kind = type if owner is None and name[0].isupper() else types.FunctionType
            return types.SimpleNamespace(__doc__=self.signatures[key], kind=kind, lib=self,
                                         binary_name=key)
        return _MISSING


_UNAVAILABLE = object()   # a CuPy module that needs a CUDA library missing here
LIBS = "cupy_backends.cuda.libs"


class Surface:
    """Attribute lookups and signatures on the installed CuPy."""

    def __init__(self):
        self.cupy = _import_quietly("cupy")
        _import_quietly("cupyx")
        _import_quietly("cupy.cuda.nccl")
        self.nccl_real = bool(getattr(self.cupy.cuda.nccl, "available", False))
        self.binaries = {}
        self.unavailable = {}       # module -> why it cannot be loaded here
        self._attrs = {}

    def binary(self, lib):
        if lib not in self.binaries:
            from pathlib import Path
            folder = Path(_import_quietly(LIBS).__path__[0])
            found = sorted(folder.glob(f"{lib}.*.so"))
            self.binaries[lib] = LibFromBinary(found[0]) if found else None
        return self.binaries[lib]

    @property
    def nccl(self):
        """NCCL's wrapper read from its binary, or None when NCCL itself loads here."""
        return None if self.nccl_real else self.binary("nccl")

    def root(self, path):
        """The object at a dotted path (modules imported as needed), _MISSING, or
        _UNAVAILABLE."""
        parts = path.split(".")
        try:
            obj = _import_quietly(parts[0])
        except ImportError:
            return _MISSING
        for i, part in enumerate(parts[1:], 1):
            obj = self.attr(".".join(parts[:i]), obj, part)
            if obj is _MISSING or obj is _UNAVAILABLE:
                return obj
        return obj

    def attr(self, path, obj, name):
        if isinstance(obj, types.SimpleNamespace) and hasattr(obj, "lib"):  # from a binary
            return obj.lib.attr(obj.binary_name, name)
        if isinstance(obj, LibFromBinary):
            return obj.attr(None, name)
        if path == "cupy.cuda.nccl" and not self.nccl_real and name != "available":
            return self.binary("nccl").attr(None, name)
        module = f"{getattr(obj, '__name__', path)}.{name}"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    return getattr(obj, name)
                except AttributeError:
                    if not isinstance(obj, types.ModuleType):
                        return _MISSING
                    return _import_quietly(module)
        except ModuleNotFoundError as e:
            if e.name == module:
                return _MISSING
            self.unavailable[module] = str(e)
        except ImportError as e:       # CuPy loads the submodule lazily: a CUDA library is missing
            if isinstance(obj, types.ModuleType) and obj.__name__ == LIBS and \
                    self.binary(name) is not None:
                return self.binary(name)
            self.unavailable[module] = str(e).strip().split("\n")[0]
        except Exception:
            return _MISSING
        return _UNAVAILABLE

    def instance_attrs(self, cls):
        """Attributes an instance of `cls` has: its class's, and those its Python source sets
        on self."""
        if cls not in self._attrs:
            names = set(dir(cls))
            # Cython classes set attributes CuPy documents under "Attributes: ~Cls.name"
            names |= set(re.findall(r"~\w+\.(\w+) \(", getattr(cls, "__doc__", "") or ""))
            for klass in getattr(cls, "__mro__", [cls]):
                try:
                    names |= set(re.findall(r"self\.(\w+)\s*=", inspect.getsource(klass)))
                except (TypeError, OSError):
                    pass
            self._attrs[cls] = names
        return self._attrs[cls]


def _split_params(text):
    depth, start, out = 0, 0, []
    for i, c in enumerate(text):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            out.append(text[start:i])
            start = i + 1
    out.append(text[start:])
    return [p.strip() for p in out if p.strip()]


def signature_from_doc(doc):
    """An inspect.Signature from Cython's embedded signature (`f(int a, b=1, *, c=None)`),
    types dropped; None when the docstring does not start with one."""
    first = (doc or "").strip().split("\n", 1)[0].replace("\\", "")
    m = re.match(r"^[\w.]+\((.*)\)(\s*->.*)?$", first)
    if not m:
        return None
    try:
        return _parse_params(m.group(1))
    except (ValueError, IndexError):    # not a signature after all
        return None


def _parse_params(text):
    params, kind = [], inspect.Parameter.POSITIONAL_OR_KEYWORD
    for p in _split_params(text):
        if p == "*":
            kind = inspect.Parameter.KEYWORD_ONLY
            continue
        if p == "/":
            params = [q.replace(kind=inspect.Parameter.POSITIONAL_ONLY) for q in params]
            continue
        left, eq, _ = p.partition("=")
        words = re.findall(r"\w+", left)
        name = words[-1]
        typed = words[-2] if len(words) > 1 else inspect.Parameter.empty
        if left.strip().startswith("**"):
            params.append(inspect.Parameter(name, inspect.Parameter.VAR_KEYWORD))
        elif left.strip().startswith("*"):
            params.append(inspect.Parameter(name, inspect.Parameter.VAR_POSITIONAL))
            kind = inspect.Parameter.KEYWORD_ONLY
        else:
            params.append(inspect.Parameter(name, kind, annotation=typed,
                                            default=None if eq else inspect.Parameter.empty))
    return inspect.Signature(params)


def _popped_kwargs(fn):
    """Keywords a `**kwargs` function of CuPy accepts when it pops them and refuses the rest
    (einsum), else None (it forwards them: anything goes)."""
    try:
        src = inspect.getsource(fn)
    except (TypeError, OSError):
        return None
    popped = re.findall(r"kwargs\.pop\(\s*['\"](\w+)['\"]", src)
    if popped and re.search(r"if kwargs:\s*\n\s*raise TypeError", src):
        return set(popped)
    return None


def signature(obj, bound):
    """(signature, drop_first) of a CuPy callable, or (None, reason)."""
    doc = getattr(obj, "__doc__", None)
    if isinstance(obj, types.SimpleNamespace):           # read from the NCCL binary
        sig = signature_from_doc(doc)
        if obj.kind is type and sig is not None:          # the constructor: no self
            return sig, False
        return sig, bound
    if not (inspect.isfunction(obj) or inspect.ismethod(obj)):
        # Cython's embedded signature keeps the parameter types (`bytes commId`)
        sig = signature_from_doc(doc)
        if sig is not None:
            names = list(sig.parameters)
            return sig, bool(names) and names[0] == "self"
    try:
        sig = inspect.signature(obj)
        names = list(sig.parameters)
        return sig, bound and bool(names) and names[0] == "self"
    except (TypeError, ValueError):
        pass
    if isinstance(obj, type):
        for source in (obj, obj.__init__):
            sig = signature_from_doc(getattr(source, "__doc__", None))
            if sig is not None:
                names = list(sig.parameters)
                return sig, bool(names) and names[0] == "self"
        return None, "a class without a readable signature"
    sig = signature_from_doc(doc)
    if sig is None:
        return None, "no signature in inspect or in its docstring"
    names = list(sig.parameters)
    return sig, bool(names) and names[0] == "self"


# ---- the walk ---------------------------------------------------------------------------------
class Finding:
    def __init__(self, rel, line, kind, key, detail):
        self.rel, self.line, self.kind, self.key, self.detail = rel, line, kind, key, detail

    def __repr__(self):
        return f"{self.rel}:{self.line}: [{self.kind}] {self.detail}"


def _param_names(fn):
    a = fn.args
    return [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs] + \
        [p.arg for p in (a.vararg, a.kwarg) if p is not None]


class _Scope:
    def __init__(self, parent, fn=None, cls=None):
        self.parent, self.fn, self.cls = parent, fn, cls
        self.names = {}

    def lookup(self, name):
        """(bound here or in an enclosing scope, what it is: a ref, "ambiguous" or None)."""
        s = self
        while s is not None:
            if name in s.names:
                return True, s.names[name]
            s = s.parent
        return False, None


class Checker:
    def __init__(self, surface, rel, tree):
        self.s, self.rel, self.tree = surface, rel, tree
        self.findings, self.record = [], False
        self.checked_calls = 0
        self.file_names = FILE_NAMES.get(rel, {})
        self.self_attrs = {}            # (class name, attr) -> ref
        self.functions = {}             # name -> FunctionDef (for module-returning helpers)
        self.module_functions = {}      # name -> module path they return
        self.array_functions = set()    # names of functions that return a CuPy array
        self.imports = {}               # name bound by import -> ref
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.functions.setdefault(node.name, []).append(node)

    # ---- references ----
    def _param_ref(self, name):
        """A parameter hides outer names, unless its name says it is CuPy's."""
        if name in self.file_names:
            return self._named(self.file_names[name])
        return Mod(MODULE_NAMES[name]) if name in MODULE_NAMES else None

    def _report(self, node, kind, key, detail):
        if self.record:
            self.findings.append(Finding(self.rel, getattr(node, "lineno", 0), kind, key,
                                         detail))

    def _named(self, path):
        """A ref from a FILE_NAMES / MODULE_NAMES entry ('...()' is an instance)."""
        if path.endswith("()"):
            return Inst(path[:-2])
        return Mod(path)

    def ref(self, node, scope):
        if isinstance(node, ast.Name):
            bound, r = scope.lookup(node.id)
            if bound:
                return r if r != "ambiguous" else None
            if node.id in self.imports:
                return self.imports[node.id]
            if node.id in self.file_names:
                return self._named(self.file_names[node.id])
            if node.id in MODULE_NAMES:
                return Mod(MODULE_NAMES[node.id])
            return None
        if isinstance(node, ast.Attribute):
            return self._attribute(node, scope)
        if isinstance(node, ast.Call):
            return self._call(node, scope)
        if isinstance(node, ast.Subscript):
            base = node.value
            if isinstance(base, ast.Call) and _callee_name(base.func) in \
                    CALLS_RETURNING_CUPY_FIRST and isinstance(node.slice, ast.Constant) \
                    and node.slice.value == 0:
                return Mod("cupy")
            return ARR if isinstance(self.ref(base, scope), Arr) else None
        if isinstance(node, ast.BinOp):
            left, right = self.ref(node.left, scope), self.ref(node.right, scope)
            return ARR if isinstance(left, Arr) or isinstance(right, Arr) else None
        if isinstance(node, ast.UnaryOp):
            return ARR if isinstance(self.ref(node.operand, scope), Arr) else None
        return None

    def _attribute(self, node, scope):
        attr = node.attr
        if isinstance(node.value, ast.Name) and node.value.id == "self" and scope.cls:
            r = self.self_attrs.get((scope.cls, attr))
            if r in ("ambiguous", "other"):
                return None
            if r is not None:
                return r
        if attr == "_data":
            return ARR
        if attr in self.file_names and not isinstance(self.ref(node.value, scope), Mod):
            return self._named(self.file_names[attr])
        if attr in MODULE_ATTRS:
            return Mod(MODULE_ATTRS[attr])
        return self._member(node, self.ref(node.value, scope), attr)

    def _member(self, node, base, attr, must_exist=True):
        if isinstance(base, Many):
            refs = [self._member(node, b, attr, must_exist) for b in base.refs]
            return None if any(r is None for r in refs) else Many(refs)
        if isinstance(base, Mod):
            path = f"{base.path}.{attr}"
            owner = self.s.root(base.path)
            obj = _UNAVAILABLE if owner is _UNAVAILABLE else self.s.attr(base.path, owner, attr)
            if obj is _UNAVAILABLE:
                return None
            if obj is _MISSING:
                if must_exist:
                    self._report(node, "missing", path, f"{path} does not exist in CuPy "
                                 f"{self.s.cupy.__version__}")
                return None
            if path in FACTORIES and not callable(obj):
                return Inst(FACTORIES[path])
            return Mod(path) if _is_module(obj) else Obj(path, obj)
        if isinstance(base, Obj):           # a class attribute (cp.cuda.Stream.null)
            path = f"{base.path}.{attr}"
            if path in FACTORIES:
                return Inst(FACTORIES[path])
            obj = self.s.attr(base.path, base.obj, attr)
            if obj is _UNAVAILABLE:
                return None
            if obj is _MISSING:
                if must_exist:
                    self._report(node, "missing", path, f"{path} does not exist in CuPy")
                return None
            return Obj(path, obj)
        if isinstance(base, Arr):
            return self._instance_member(node, "cupy.ndarray", attr, must_exist)
        if isinstance(base, Inst):
            return self._instance_member(node, base.cls_path, attr, must_exist)
        return None

    def _instance_member(self, node, cls_path, attr, must_exist):
        cls = self.s.root(cls_path)
        if cls is _MISSING:
            return None
        if cls is _UNAVAILABLE:
            return None
        if isinstance(cls, types.SimpleNamespace):            # read from a binary
            obj = cls.lib.attr(cls.binary_name, attr)
        elif attr in self.s.instance_attrs(cls):
            obj = getattr(cls, attr, None)
        else:
            obj = _MISSING
        if obj is _MISSING:
            if must_exist:
                what = "CuPy arrays" if cls_path == "cupy.ndarray" else f"{cls_path} objects"
                self._report(node, "missing", f"{cls_path}.{attr}",
                             f"{what} have no attribute {attr!r}")
            return None
        if cls_path == "cupy.ndarray":
            if attr in ARRAY_ATTRS:
                return ARR
            if attr in INSTANCE_ATTRS:
                return Inst(INSTANCE_ATTRS[attr])
        if callable(obj) or isinstance(obj, types.SimpleNamespace):
            return Method(cls_path, attr, obj)
        return None

    def _call(self, node, scope):
        func = node.func
        name = _callee_name(func)
        if name in CALLS_RETURNING_CUPY and not (
                isinstance(func, ast.Attribute) and isinstance(self.ref(func.value, scope),
                                                               (Mod, Arr, Inst))):
            return Mod(CALLS_RETURNING_CUPY[name])
        if name in self.module_functions and not isinstance(func, ast.Attribute) or \
                (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                 and func.value.id == "self" and name in self.module_functions):
            return Mod(self.module_functions[name])
        if name in ("getattr", "hasattr") and isinstance(func, ast.Name) and node.args:
            return self._getattr(node, scope, name)
        if isinstance(func, ast.Name) and name in self.array_functions and \
                not scope.lookup(name)[0]:
            return ARR
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and \
                func.value.id in ("np", "numpy") and func.attr not in NUMPY_ON_METADATA:
            on_device = [a for a in list(node.args) + [k.value for k in node.keywords]
                         if isinstance(self.ref(a, scope), Arr)]
            if on_device:
                self._report(node, "numpy", f"np.{func.attr}",
                             f"{ast.unparse(node)}: NumPy's {func.attr} on an array that may "
                             f"be CuPy's ({ast.unparse(on_device[0])}); CuPy refuses the "
                             f"implicit conversion: use the array's module, or "
                             f"backend.to_host on purpose")
        target = self.ref(func, scope)
        if isinstance(target, Many):
            for t in target.refs:
                if isinstance(t, Obj):
                    self._check_call(node, t.path, t.obj, bound=False)
                elif isinstance(t, Method):
                    self._check_call(node, f"{t.owner_path}.{t.name}", t.obj, bound=True)
            return None
        if isinstance(target, Obj):
            self._check_call(node, target.path, target.obj, bound=False)
            obj = target.obj
            if target.path in FACTORIES:
                return Inst(FACTORIES[target.path])
            if isinstance(obj, type):
                return None if obj.__module__.startswith("numpy") else Inst(target.path)
            if isinstance(obj, types.SimpleNamespace):
                return Inst(target.path) if obj.kind is type else None
            leaf = target.path.rsplit(".", 1)[-1]
            if target.path.rsplit(".", 1)[0] not in ARRAY_MODULES or leaf in NOT_ARRAY_RESULTS or \
                    getattr(obj, "nout", 1) != 1:
                return None
            return ARR
        if isinstance(target, Method):
            self._check_call(node, f"{target.owner_path}.{target.name}", target.obj,
                             bound=True)
            path = f"{target.owner_path}.{target.name}"
            if path in FACTORIES:
                return Inst(FACTORIES[path])
            if target.owner_path == "cupy.ndarray" and target.name not in NOT_ARRAYS:
                return ARR
        return None

    def _getattr(self, node, scope, which):
        base = self.ref(node.args[0], scope)
        if not isinstance(base, (Mod, Arr, Inst, Obj)) or len(node.args) < 2:
            return None
        optional = which == "hasattr" or len(node.args) > 2
        arg = node.args[1]
        names = self._constant_strings(arg, scope)
        if names is None:
            if not optional:
                self._report(node, "dynamic", ast.unparse(node),
                             f"{ast.unparse(node)}: a name this checker cannot follow")
            return None
        refs = [self._member(node, base, n, must_exist=not optional) for n in names]
        if which == "hasattr" or any(r is None for r in refs):
            return None
        return refs[0] if len(refs) == 1 else Many(refs)

    def _constant_strings(self, arg, scope):
        """The strings `arg` can be: a constant, or a parameter of an enclosing function
        that every call site in this file passes as a constant."""
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return [arg.value]
        if isinstance(arg, ast.Subscript) and isinstance(arg.value, ast.Name):
            return self._table_values(arg.value.id)
        if isinstance(arg, ast.Attribute) and isinstance(arg.value, ast.Name) and \
                arg.value.id in ("self", "cls"):
            return self._class_constants(arg.attr)
        if not isinstance(arg, ast.Name):
            return None
        s = scope
        while s is not None:
            if s.fn is not None and arg.id in _param_names(s.fn) and \
                    not isinstance(s.fn, ast.Lambda):
                return self._passed_constants(s.fn, arg.id)
            s = s.parent
        return None

    def _table_values(self, name):
        """The values of a module-level dict of string constants (`_UFUNC[reduce]`)."""
        for node in self.tree.body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name
                                                    for t in node.targets):
                if isinstance(node.value, ast.Dict) and all(
                        isinstance(v, ast.Constant) and isinstance(v.value, str)
                        for v in node.value.values):
                    return sorted({v.value for v in node.value.values})
        return None

    def _class_constants(self, attr):
        """Every string a class of this file sets `attr` to in its body (`method = "argmax"`),
        or None if one sets something else."""
        values = []
        for node in ast.walk(self.tree):
            if not isinstance(node, ast.ClassDef):
                continue
            for stmt in node.body:
                if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and
                                                        t.id == attr for t in stmt.targets):
                    if not (isinstance(stmt.value, ast.Constant)
                            and isinstance(stmt.value.value, str)):
                        return None
                    values.append(stmt.value.value)
        return sorted(set(values)) or None

    def _passed_constants(self, fn, param):
        params = [p.arg for p in fn.args.posonlyargs + fn.args.args]
        values, sites = [], 0
        for node in ast.walk(self.tree):
            if not isinstance(node, ast.Call) or _callee_name(node.func) != fn.name:
                continue
            sites += 1
            offset = 1 if isinstance(node.func, ast.Attribute) and params[:1] == ["self"] \
                else 0
            got = [k.value for k in node.keywords if k.arg == param]
            if not got and param in params:
                i = params.index(param) - offset
                if 0 <= i < len(node.args) and not any(isinstance(a, ast.Starred)
                                                       for a in node.args[:i + 1]):
                    got = [node.args[i]]
            if not got or not (isinstance(got[0], ast.Constant)
                               and isinstance(got[0].value, str)):
                return None
            values.append(got[0].value)
        return sorted(set(values)) if sites else None

    # ---- calls ----
    def _check_call(self, node, path, obj, bound):
        if any(isinstance(a, ast.Starred) for a in node.args):
            npos = None
        else:
            npos = len(node.args)
        keywords = [k.arg for k in node.keywords if k.arg is not None]
        spread = any(k.arg is None for k in node.keywords)
        ufunc = type(self.s.cupy.exp)
        owner = getattr(obj, "__self__", None)
        if getattr(obj, "__name__", None) == "at" and isinstance(owner, ufunc) and \
                getattr(owner, "_scatter_op", "unknown") is None:
            self._report(node, "call", path,
                         f"{ast.unparse(node)}: CuPy has no atomic for {path} (it raises "
                         f"NotImplementedError): use tensor.backend.ufunc_at")
            return
        if isinstance(obj, ufunc):
            bad = [k for k in keywords if k not in UFUNC_KEYWORDS]
            if bad:
                self._report(node, "call", f"{path}({_kw(bad)})",
                             f"{ast.unparse(node)}: CuPy's ufunc {path} takes no keyword "
                             f"{', '.join(bad)} (it takes {sorted(UFUNC_KEYWORDS)})")
            if npos is not None and not obj.nin <= npos <= obj.nargs:
                self._report(node, "call", f"{path}/{npos}",
                             f"{ast.unparse(node)}: CuPy's ufunc {path} takes {obj.nin} to "
                             f"{obj.nargs} positional arguments, given {npos}")
            return
        if isinstance(obj, type) and obj.__module__.startswith("numpy"):
            return                                   # cp.int32 is NumPy's scalar type
        sig, drop = signature(obj, bound)
        if sig is None:
            self._report(node, "unchecked", path, f"{path}: {drop}")
            return
        params = list(sig.parameters.values())
        if drop:
            params = params[1:]
        sig = sig.replace(parameters=params)
        var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
        accepted = _popped_kwargs(obj) if var_kw else None
        if accepted is not None:
            unknown = [k for k in keywords if k not in accepted and k not in sig.parameters]
            if unknown:
                self._report(node, "call", f"{path}({_kw(unknown)})",
                             f"{ast.unparse(node)}: CuPy's {path} does not accept "
                             f"{', '.join(unknown)} (it takes {sorted(accepted)})")
            keywords = [k for k in keywords if k in sig.parameters]
        if npos is None or spread:
            named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD,
                                                          p.KEYWORD_ONLY)}
            unknown = [k for k in keywords if k not in named and not var_kw]
            if unknown:
                self._report(node, "call", f"{path}({_kw(unknown)})",
                             f"{ast.unparse(node)}: CuPy's {path}{sig} takes no "
                             f"{', '.join(unknown)}")
            return
        try:
            bound_args = sig.bind(*range(npos), **{k: k for k in keywords})
        except TypeError as e:
            self._report(node, "call", f"{path}({_kw(keywords)})/{npos}",
                         f"{ast.unparse(node)}: CuPy's {path}{sig} refuses it ({e})")
            return
        self.checked_calls += 1
        keyword_nodes = {k.arg: k.value for k in node.keywords}
        for name, at in bound_args.arguments.items():
            typed = sig.parameters[name].annotation
            arg = node.args[at] if isinstance(at, int) else keyword_nodes.get(at)
            given = _builtin_type_of(arg)
            if typed in CYTHON_TYPES and given is not None and given != typed:
                self._report(node, "call", f"{path}({name}: {given})",
                             f"{ast.unparse(node)}: CuPy's {path}{sig} takes {name} as "
                             f"{typed} (Cython checks the type), given {given}")

    # ---- the walk with scopes ----
    def run(self):
        self._collect_imports()
        self._collect_module_functions()
        root = _Scope(None)
        self.record = False
        self._visit_body(self.tree, root)       # learns self.<attr> refs of each class
        self.record = True
        self._visit_body(self.tree, root)
        seen, unique = set(), []
        for f in self.findings:
            k = (f.line, f.kind, f.key)
            if k not in seen:
                seen.add(k)
                unique.append(f)
        return unique

    def _collect_imports(self):
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] in ("cupy", "cupyx", "cupy_backends"):
                        if a.asname:
                            self.imports[a.asname] = Mod(a.name)
                        else:
                            top = a.name.split(".")[0]
                            self.imports[top] = Mod(top)
            elif isinstance(node, ast.ImportFrom) and node.module and \
                    node.module.split(".")[0] in ("cupy", "cupyx", "cupy_backends"):
                for a in node.names:
                    path = f"{node.module}.{a.name}"
                    obj = self.s.root(path)
                    if obj is _UNAVAILABLE:
                        continue
                    if obj is _MISSING:
                        self._report_always(node, "missing", path,
                                            f"from {node.module} import {a.name}: no such name")
                        continue
                    ref = Mod(path) if _is_module(obj) else Obj(path, obj)
                    self.imports[a.asname or a.name] = ref

    def _report_always(self, node, kind, key, detail):
        self.findings.append(Finding(self.rel, getattr(node, "lineno", 0), kind, key, detail))

    def _collect_module_functions(self):
        """Functions of this file that return a CuPy module (`_xp_linalg`, `Tensor._xp`) or
        an array (`_float_input`)."""
        for _ in range(2):
            for name, defs in self.functions.items():
                if len(defs) != 1:
                    continue
                fn = defs[0]
                returns = [n.value for n in _body_nodes(fn) if isinstance(n, ast.Return)
                           and n.value is not None]
                scope = _Scope(None, fn)
                for p in _param_names(fn):
                    scope.names[p] = self._param_ref(p)
                self._bind_names(ast.Module(body=fn.body, type_ignores=[]), scope)
                refs = [self.ref(r, scope) for r in returns]
                if refs and all(isinstance(r, Mod) for r in refs) and \
                        len({r.path for r in refs}) == 1:
                    self.module_functions[name] = refs[0].path
                elif refs and all(isinstance(r, Arr) for r in refs):
                    self.array_functions.add(name)

    def _visit_body(self, node, scope):
        self._bind_names(node, scope)
        for child in ast.iter_child_nodes(node):
            self._visit(child, scope)

    def _visit(self, node, scope):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for d in getattr(node, "decorator_list", []):
                self._visit(d, scope)
            for d in node.args.defaults + [d for d in node.args.kw_defaults if d]:
                self._visit(d, scope)
            inner = _Scope(scope, node, scope.cls)
            for p in _param_names(node):
                inner.names[p] = self._param_ref(p)
            body = node.body if isinstance(node.body, list) else [node.body]
            holder = ast.Module(body=body, type_ignores=[])
            self._visit_body(holder, inner)
            return
        if isinstance(node, ast.ClassDef):
            for d in node.decorator_list + node.bases:
                self._visit(d, scope)
            self._visit_body(node, _Scope(scope, None, node.name))
            return
        if isinstance(node, (ast.Attribute, ast.Call)):
            self.ref(node, scope)   # reports what CuPy lacks along the chain (deduplicated)
        for child in ast.iter_child_nodes(node):
            self._visit(child, scope)

    def _bind_names(self, node, scope):
        """Names (and self.<attr>) bound in this body to CuPy modules, arrays or instances;
        a name bound to different kinds is left unresolved."""
        saved, self.record = self.record, False
        try:
            for _ in range(2):
                kinds = {}
                for n in _body_nodes(node):
                    for target, value in _assignments(n):
                        if isinstance(value, ast.Constant) and value.value is None:
                            continue            # `x = None` first, a value later
                        r = self.ref(value, scope) if value is not None else None
                        if isinstance(target, ast.Name):
                            kinds.setdefault(target.id, []).append(r)
                        elif isinstance(target, ast.Attribute) and isinstance(
                                target.value, ast.Name) and target.value.id == "self" \
                                and scope.cls:
                            key = (scope.cls, target.attr)
                            if r is None and isinstance(value, (
                                    ast.Dict, ast.List, ast.Set, ast.Constant, ast.DictComp,
                                    ast.ListComp)):
                                r = "other"     # a container, not an array (store._data)
                            if r is not None:
                                old = self.self_attrs.get(key)
                                if old is not None and _kind(old) != _kind(r):
                                    r = "ambiguous"
                                self.self_attrs[key] = r
                for name, refs in kinds.items():
                    if scope.fn is not None and name in _param_names(scope.fn):
                        refs = refs + [self._param_ref(name)]
                    k = {_kind(r) for r in refs}
                    scope.names[name] = refs[0] if len(k) == 1 and refs[0] is not None \
                        else ("ambiguous" if any(r is not None for r in refs) else None)
        finally:
            self.record = saved


def _is_module(obj):
    return isinstance(obj, (types.ModuleType, LibFromBinary))


def _kind(r):
    if isinstance(r, str):
        return r
    if isinstance(r, Mod):
        return ("mod", r.path)
    if isinstance(r, Inst):
        return ("inst", r.cls_path)
    if isinstance(r, Obj):
        return ("obj", r.path)
    return type(r).__name__


CYTHON_TYPES = {"bytes", "str", "tuple", "list", "dict"}   # typed parameters Cython enforces


def _builtin_type_of(node):
    """'tuple' for `tuple(...)` or `(a, b)`, etc.; None when the type is not evident."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
            node.func.id in CYTHON_TYPES:
        return node.func.id
    literal = {ast.Tuple: "tuple", ast.List: "list", ast.Dict: "dict",
               ast.ListComp: "list", ast.DictComp: "dict", ast.JoinedStr: "str"}
    if type(node) in literal:
        return literal[type(node)]
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
        return type(node.value).__name__
    return None


def _kw(names):
    return ", ".join(f"{n}=" for n in names)


def _callee_name(func):
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _body_nodes(node):
    """Every node of this body, not descending into nested functions or classes."""
    stack = list(ast.iter_child_nodes(node))
    while stack:
        n = stack.pop()
        yield n
        if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda,
                              ast.ClassDef)):
            stack.extend(ast.iter_child_nodes(n))


def _assignments(n):
    """(target, value) pairs; value None when the target gets an unknown value."""
    if isinstance(n, ast.Assign):
        for t in n.targets:
            yield from _pairs(t, n.value)
    elif isinstance(n, (ast.AnnAssign, ast.AugAssign)) and n.value is not None:
        yield from _pairs(n.target, n.value if isinstance(n, ast.AnnAssign) else None)
    elif isinstance(n, ast.NamedExpr):
        yield n.target, n.value
    elif isinstance(n, (ast.For, ast.comprehension)):
        yield from _pairs(n.target, None)
    elif isinstance(n, ast.withitem) and n.optional_vars is not None:
        yield from _pairs(n.optional_vars, None)


def _pairs(target, value):
    if isinstance(target, (ast.Tuple, ast.List)):
        if isinstance(value, ast.Call) and _callee_name(value.func) in \
                CALLS_RETURNING_CUPY_FIRST and target.elts:
            yield target.elts[0], ast.Subscript(value=value, slice=ast.Constant(0))
            rest = target.elts[1:]
        elif isinstance(value, (ast.Tuple, ast.List)) and \
                len(value.elts) == len(target.elts):
            for t, v in zip(target.elts, value.elts):
                yield from _pairs(t, v)
            return
        else:
            rest = target.elts
        for t in rest:
            yield from _pairs(t, None)
    elif isinstance(target, ast.Starred):
        yield from _pairs(target.value, None)
    else:
        yield target, value


def check_source(surface, text, rel):
    return Checker(surface, rel, ast.parse(text)).run()
