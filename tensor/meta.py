"""The meta device: tensors with a shape and a dtype and no data, for building a model without
allocating it (`with torch.device("meta"): model = Big()`, then `model.to_empty(device=...)`
or `load_state_dict(..., assign=True)`) and for working out shapes.

A meta tensor's array is a `MetaArray`: one element of its dtype seen through zero strides,
so it takes no memory whatever its shape. An op given a meta input runs on those zeros (shapes,
dtypes and errors are the real op's) and its results are made meta again, so nothing computed
is kept; in-place writes into a meta tensor change nothing but its version. Reading values
(`item`, `tolist`, `numpy`, a copy to another device) raises, as in PyTorch.
"""
import numpy as np

from ..autograd import function as _function


class MetaArray(np.ndarray):
    """The array of a meta tensor (see the module docstring). Casts and copies stay meta
    (they would otherwise allocate the whole shape)."""

    def astype(self, dtype, *args, **kwargs):
        return meta_array(self.shape, dtype)

    def copy(self, *args, **kwargs):
        return meta_array(self.shape, self.dtype)


class MetaModule:
    """The array module of the meta device for creating arrays: zeros/ones/empty/full make
    meta arrays from the shape alone; anything else is NumPy's, made meta."""

    def zeros(self, shape, dtype=np.float64, *args, **kwargs):
        return meta_array((shape,) if isinstance(shape, int) else shape, dtype)

    ones = empty = zeros

    def full(self, shape, fill_value, dtype=None, *args, **kwargs):
        dtype = np.result_type(fill_value) if dtype is None else dtype
        return meta_array((shape,) if isinstance(shape, int) else shape, dtype)

    def __getattr__(self, name):
        fn = getattr(np, name)
        if not callable(fn):
            return fn

        def made_meta(*args, **kwargs):
            out = fn(*args, **kwargs)
            return meta_array(out.shape, out.dtype) if isinstance(out, np.ndarray) else out
        return made_meta


def meta_array(shape, dtype):
    _function.meta_outputs = make_meta_outputs   # from now on ops look for meta inputs
    return np.broadcast_to(np.zeros((), dtype), tuple(shape)).view(MetaArray)


def is_meta(array):
    return type(array) is MetaArray


class MetaDraws:
    """The random stream of the meta device: each draw is a meta array of the asked size (so
    initialising a meta module allocates nothing)."""

    def __getattr__(self, name):
        def draw(*args, size=None, dtype=np.float64, **kwargs):
            shape = size if size is not None else (args[-1] if args else ())
            shape = (shape,) if isinstance(shape, int) else tuple(shape)
            return meta_array(shape, dtype if dtype is not None else np.float64)
        return draw


def no_data(what, kind=RuntimeError):
    """The error for reading a meta tensor's values (PyTorch's exception types: copies out
    raise NotImplementedError, item() RuntimeError, numpy() TypeError)."""
    return kind(f"{what}: a meta tensor has no data (it holds a shape and a dtype "
                        f"only); materialise the module with to_empty(device=...) and load or "
                        f"initialise its values first")


def make_meta_outputs(args, out):
    """After an op: if one of its tensor inputs is meta, its outputs become meta too."""
    if not any(is_meta(getattr(a, "_data", None)) or isinstance(a, (list, tuple)) and
               any(is_meta(getattr(b, "_data", None)) for b in a) for a in args):
        return
    for t in (out if isinstance(out, tuple) else (out,)):
        data = getattr(t, "_data", None)
        if data is not None and not is_meta(data):
            t._data = meta_array(data.shape, data.dtype)
