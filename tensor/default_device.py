"""The default device of factory functions (`set_default_device`, `with phalanx.device(d):`):
where `zeros`, `empty`, `randn`, `tensor`, ... put a tensor given no `device=`.

The CPU (the default) and the meta device can be it. The factories are wrapped once, here: a
call with no device and the CPU as default pays one test. On the meta device a factory's
result is made meta (its array a `MetaArray`: see meta.py)."""
import functools

from .backend import CPU, Device
from .meta import is_meta, meta_array

FACTORIES = ("arange", "as_tensor", "asarray", "bartlett_window", "blackman_window", "empty",
             "empty_strided", "eye", "full", "hamming_window", "hann_window",
             "kaiser_window", "linspace", "logspace", "normal", "ones", "rand", "randint",
             "randn", "randperm", "range", "tensor", "tril_indices", "triu_indices", "zeros")
_default = [None]      # None: the CPU


def get_default_device():
    return CPU if _default[0] is None else _default[0]


def set_default_device(device):
    if device is None or Device(device) == CPU:
        _default[0] = None
        return
    if isinstance(device, int) or Device(device).type != "meta":
        raise NotImplementedError(f"set_default_device({device!r}): the CPU and 'meta' can be "
                                  f"the default device; create tensors with device= or move "
                                  f"them with .to({str(device)!r})")
    _default[0] = Device(device)


def on_default_device(fn):
    @functools.wraps(fn)
    def call(*args, **kwargs):
        device = kwargs.get("device")
        if device is None:
            if _default[0] is None:
                return fn(*args, **kwargs)
            device = _default[0]
        if Device(device).type != "meta":
            kwargs["device"] = device
            return fn(*args, **kwargs)
        kwargs["device"] = device        # the factories draw and allocate nothing there
        out = fn(*args, **kwargs)
        if not is_meta(out._data):
            out._data = meta_array(out._data.shape, out._data.dtype)
        return out
    return call


def apply(namespace):
    for name in FACTORIES:
        if callable(namespace.get(name)):
            namespace[name] = on_default_device(namespace[name])
