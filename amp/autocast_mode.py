"""`autocast`: run chosen ops in a lower precision inside a region, as `torch.autocast`.

Autocast is an interceptor at the dispatch point (autograd/dispatch.py): inside a region each
op call looks up its Function class in the device type's policy table (amp/policies.py) and
casts its floating inputs before the op runs. The casts are ordinary differentiable `to`
copies, so backward produces gradients in each parameter's own dtype. The interceptor is in
the dispatch list only while some thread is inside a region; outside, ops pay nothing.

State is per thread, as in PyTorch: for each device type whether autocast is on, its dtype and
whether casts of weights are cached. An op belongs to the device type of its tensors; autocast
for "cuda" leaves CPU tensors alone and the reverse. The weight cache keeps the low-precision
copy of each float32 leaf that requires grad (a parameter) for the rest of the outermost
region, so a weight used by several ops is cast once.
"""
import functools
import threading
import warnings
import weakref

from ..autograd import dispatch
from ..autograd.grad_mode import is_grad_enabled
from ..tensor import backend, dtypes
from ..tensor.ops.conversion import to_copy
from ..tensor.tensor import Tensor
from . import policies

_DEVICE_TYPES = ("cpu", "cuda")
_DEFAULT_DTYPE = {"cpu": dtypes.bfloat16, "cuda": dtypes.float16}
_SUPPORTED = {"cpu": (dtypes.bfloat16, dtypes.float16), "cuda": (dtypes.float16,)}
_F32 = dtypes.float32.np
_F64 = dtypes.float64.np


class _ThreadState(threading.local):
    def __init__(self):
        self.enabled = {"cpu": False, "cuda": False}
        self.dtype = dict(_DEFAULT_DTYPE)
        self.cache_enabled = True
        self.nesting = 0
        self.cache = {}   # id(weight) -> (weakref, version, dtype, cast)


_state = _ThreadState()
_install_lock = threading.Lock()
_regions = [0]   # regions open in all threads: the interceptor is listed while > 0


def _check_device_type(device_type):
    if device_type not in _DEVICE_TYPES:
        raise RuntimeError(f"User specified an unsupported autocast device_type "
                           f"{device_type!r}; Phalanx supports 'cpu' and 'cuda'")


def is_autocast_available(device_type):
    return device_type in _DEVICE_TYPES


def is_autocast_enabled(device_type=None):
    """Whether autocast is on for `device_type` in this thread (no argument: "cuda", as in
    PyTorch's deprecated form)."""
    device_type = "cuda" if device_type is None else device_type
    if device_type == "meta":           # meta tensors: no autocast region covers them
        return False
    _check_device_type(device_type)
    return _state.enabled[device_type]


def get_autocast_dtype(device_type):
    _check_device_type(device_type)
    return _state.dtype[device_type]


def set_autocast_enabled(device_type, enabled=None):
    """(device_type, enabled), or PyTorch's deprecated (enabled), which means "cuda"."""
    if enabled is None:
        device_type, enabled = "cuda", device_type
    _check_device_type(device_type)
    _state.enabled[device_type] = bool(enabled)


def set_autocast_dtype(device_type, dtype):
    _check_device_type(device_type)
    _state.dtype[device_type] = dtype


def _deprecated(old, new, fn):
    """PyTorch's older per-device spellings, which it still accepts with a warning."""
    def call(*args):
        warnings.warn(f"torch.{old}() is deprecated. Please use torch.{new} instead.",
                      DeprecationWarning, stacklevel=2)
        return fn(*args)
    call.__name__ = old
    call.__doc__ = f"Deprecated spelling of `{new}`, as in PyTorch."
    return call


is_autocast_cpu_enabled = _deprecated("is_autocast_cpu_enabled", "is_autocast_enabled('cpu')",
                                      lambda: is_autocast_enabled("cpu"))
set_autocast_cpu_enabled = _deprecated("set_autocast_cpu_enabled",
                                       "set_autocast_enabled('cpu', enabled)",
                                       lambda enabled: set_autocast_enabled("cpu", enabled))
get_autocast_cpu_dtype = _deprecated("get_autocast_cpu_dtype", "get_autocast_dtype('cpu')",
                                     lambda: get_autocast_dtype("cpu"))
set_autocast_cpu_dtype = _deprecated("set_autocast_cpu_dtype",
                                     "set_autocast_dtype('cpu', dtype)",
                                     lambda dtype: set_autocast_dtype("cpu", dtype))
get_autocast_gpu_dtype = _deprecated("get_autocast_gpu_dtype", "get_autocast_dtype('cuda')",
                                     lambda: get_autocast_dtype("cuda"))
set_autocast_gpu_dtype = _deprecated("set_autocast_gpu_dtype",
                                     "set_autocast_dtype('cuda', dtype)",
                                     lambda dtype: set_autocast_dtype("cuda", dtype))


def is_autocast_cache_enabled():
    return _state.cache_enabled


def set_autocast_cache_enabled(enabled):
    _state.cache_enabled = bool(enabled)


def clear_autocast_cache():
    _state.cache.clear()


class autocast:
    """`with px.autocast("cpu", dtype=px.bfloat16): ...` or `@px.autocast("cuda")`.

    Inside the region ops on PyTorch's lower-precision list (matmul, linear, conv) run in
    `dtype`, ops on its float32 list (losses; on CUDA also softmax, exp/log/pow, sums, norms)
    run in float32, and cat/stack promote to the widest input; see amp/policies.py. Regions
    nest; `enabled=False` inside a region turns autocast off for that device type until it
    ends. Call `backward()` after the region, as PyTorch advises."""

    def __init__(self, device_type, dtype=None, enabled=True, cache_enabled=None):
        if not isinstance(device_type, str):
            raise ValueError(f"Expected `device_type` of type `str`, got: `{type(device_type)}`")
        _check_device_type(device_type)
        self.device = device_type
        self.fast_dtype = get_autocast_dtype(device_type) if dtype is None else dtype
        self._cache_enabled = is_autocast_cache_enabled() if cache_enabled is None \
            else bool(cache_enabled)
        enabled = bool(enabled)
        if enabled and device_type == "cuda":
            from .. import cuda
            if not cuda.is_available():
                warnings.warn("User provided device_type of 'cuda', but CUDA is not available. "
                              "Disabling")
                enabled = False
            elif self.fast_dtype is dtypes.bfloat16:
                raise NotImplementedError(
                    "autocast(device_type='cuda', dtype=bfloat16): CuPy has no bfloat16 arrays, "
                    "so Phalanx cannot compute in bfloat16 on a GPU; use dtype=phalanx.float16 "
                    "(with phalanx.amp.GradScaler) on CUDA")
        if enabled and self.fast_dtype not in _SUPPORTED[device_type]:
            names = ", ".join(str(d) for d in _SUPPORTED[device_type])
            warnings.warn(f"In {device_type.upper()} autocast, but the target dtype "
                          f"{self.fast_dtype} is not supported (supported: {names}). "
                          f"Disabling autocast.")
            enabled = False
        self._enabled = enabled

    def __enter__(self):
        if self._enabled and self.fast_dtype is dtypes.bfloat16:
            dtypes._bfloat16_in_use()   # before the first op: its casts will make bfloat16
        st = _state
        self._prev = (st.enabled[self.device], st.dtype[self.device], st.cache_enabled)
        st.enabled[self.device] = self._enabled
        st.dtype[self.device] = self.fast_dtype
        st.cache_enabled = self._cache_enabled
        st.nesting += 1
        with _install_lock:
            _regions[0] += 1
            if _regions[0] == 1:
                dispatch.interceptors.append(_intercept)
        return self

    def __exit__(self, *exc):
        st = _state
        st.nesting -= 1
        if st.nesting == 0:
            st.cache.clear()
        st.enabled[self.device], st.dtype[self.device], st.cache_enabled = self._prev
        with _install_lock:
            _regions[0] -= 1
            if _regions[0] == 0:
                dispatch.interceptors.remove(_intercept)
        return False

    def __call__(self, func):
        args = (self.device, self.fast_dtype, self._enabled, self._cache_enabled)

        @functools.wraps(func)
        def decorated(*a, **k):
            with autocast(*args):   # a fresh region per call: the decorated function may recurse
                return func(*a, **k)
        return decorated


def _intercept(cls, args, kwargs, proceed):
    st = _state
    if st.nesting == 0:
        return proceed(args, kwargs)   # another thread's region
    device_type = None
    for a in args:
        if isinstance(a, Tensor):
            device_type = "cuda" if backend.is_cupy_array(a._data) else "cpu"
            break
    if device_type is None or not st.enabled[device_type]:
        return proceed(args, kwargs)
    policy = policies.table(device_type).get(cls)
    if policy is not None and not isinstance(policy, str):
        policy = policy(args)
    if policy is None:
        return proceed(args, kwargs)
    if policy == "banned":
        raise RuntimeError(
            "phalanx.nn.functional.binary_cross_entropy and phalanx.nn.BCELoss are unsafe to "
            "autocast. Many models use a sigmoid layer right before the binary cross entropy "
            "layer. In this case, combine the two layers using "
            "phalanx.nn.functional.binary_cross_entropy_with_logits or "
            "phalanx.nn.BCEWithLogitsLoss. binary_cross_entropy_with_logits and BCEWithLogits "
            "are safe to autocast.")
    if policy == "lower":
        target = st.dtype[device_type].np
    elif policy == "fp32":
        target = _F32
    else:  # promote
        target = None
        for a in args:
            if _floating(a):
                target = a._data.dtype if target is None else dtypes._promote(target,
                                                                              a._data.dtype)
        if target is None:
            return proceed(args, kwargs)
    cast = tuple(_cast(a, target, policy, device_type) for a in args)
    return proceed(cast, kwargs)


# fused Functions on autocast's lists run fused inside a region (dispatch.watching)
_intercept.handles = lambda cls: any(cls in policies.table(d) for d in _DEVICE_TYPES)


def _floating(a):
    # complex tensors are never cast (as in PyTorch): a float16 copy would drop the imaginary part
    return isinstance(a, Tensor) and dtypes.is_floating_np(a._data.dtype) and \
        a._data.dtype.kind != "c"


def _cast(a, target, policy, device_type):
    if not _floating(a):
        return a
    dt = a._data.dtype
    if dt == target or (dt == _F64 and policy != "promote"):
        return a   # float64 is left alone by "lower" and "fp32", as in PyTorch
    if ("cuda" if backend.is_cupy_array(a._data) else "cpu") != device_type:
        return a
    st = _state
    cacheable = (policy == "lower" and st.cache_enabled and dt == _F32 and a.requires_grad
                 and a.grad_fn is None and a._view is None and is_grad_enabled())
    if not cacheable:
        return to_copy(a, target)
    hit = st.cache.get(id(a))
    if hit is not None:
        ref, version, hit_dtype, out = hit
        node = out.grad_fn
        if ref() is a and version == a._version[0] and hit_dtype == target and \
                (node is None or not node._released):
            return out
    out = to_copy(a, target)
    st.cache[id(a)] = (weakref.ref(a), a._version[0], target, out)
    return out


def custom_fwd(fwd=None, *, device_type, cast_inputs=None):
    """Decorate a custom Function's `forward` for autocast, as `torch.amp.custom_fwd`: with
    `cast_inputs` (a dtype), inside an enabled region the forward runs with autocast off on
    floating `device_type` tensors cast to it; without, it runs under the caller's autocast
    state. Either way `custom_bwd` gives backward the same state."""
    if fwd is None:
        return functools.partial(custom_fwd, device_type=device_type, cast_inputs=cast_inputs)
    _check_device_type(device_type)

    @functools.wraps(fwd)
    def decorate_fwd(ctx, *args, **kwargs):
        ctx._dtype = get_autocast_dtype(device_type)
        if cast_inputs is None:
            ctx._fwd_used_autocast = is_autocast_enabled(device_type)
            return fwd(ctx, *args, **kwargs)
        used = is_autocast_enabled(device_type)
        ctx._fwd_used_autocast = False
        if not used:
            return fwd(ctx, *args, **kwargs)
        target = dtypes.to_numpy_dtype(cast_inputs)
        with autocast(device_type, enabled=False):
            return fwd(ctx, *[_cast_input(a, target, device_type) for a in args],
                       **{k: _cast_input(v, target, device_type) for k, v in kwargs.items()})
    return decorate_fwd


def custom_bwd(bwd=None, *, device_type):
    """Decorate a custom Function's `backward` to run under the autocast state its forward
    saw (see `custom_fwd`)."""
    if bwd is None:
        return functools.partial(custom_bwd, device_type=device_type)
    _check_device_type(device_type)

    @functools.wraps(bwd)
    def decorate_bwd(ctx, *args, **kwargs):
        with autocast(device_type, enabled=ctx._fwd_used_autocast, dtype=ctx._dtype):
            return bwd(ctx, *args, **kwargs)
    return decorate_bwd


def _cast_input(value, target, device_type):
    if isinstance(value, Tensor):
        on = "cuda" if backend.is_cupy_array(value._data) else "cpu"
        if on == device_type and dtypes.is_floating_np(value._data.dtype) and \
                value._data.dtype != _F64 and value._data.dtype.kind != "c":
            return to_copy(value, target)
        return value
    if isinstance(value, (list, tuple)):
        return type(value)(_cast_input(v, target, device_type) for v in value)
    if isinstance(value, dict):
        return {k: _cast_input(v, target, device_type) for k, v in value.items()}
    return value
