"""Flatten parameters into one vector and write a vector back into them."""
from ...tensor import Tensor, cat


def _check_same_device(params):
    devices = {str(p.device) for p in params}
    if len(devices) > 1:
        raise TypeError(f"Found parameters on different devices {sorted(devices)}; this "
                        f"function needs them all on one device")


def parameters_to_vector(parameters):
    """One 1-D tensor of all parameters, concatenated in order (differentiable)."""
    params = list(parameters)
    _check_same_device(params)
    return cat([p.reshape(-1) for p in params])


def vector_to_parameters(vec, parameters):
    """Copy consecutive slices of `vec` into the parameters (in place, no graph)."""
    if not isinstance(vec, Tensor):
        raise TypeError(f"expected vec to be a Tensor, but got: {type(vec).__name__}")
    params = list(parameters)
    _check_same_device(params)
    total = sum(p.numel() for p in params)
    if vec.numel() != total:
        raise RuntimeError(f"vector_to_parameters: vec has {vec.numel()} elements but the "
                           f"parameters hold {total}")
    v = vec._data.reshape(-1)
    offset = 0
    for p in params:
        n = p.numel()
        p._data[...] = v[offset:offset + n].reshape(p._data.shape).astype(p._data.dtype)
        p._version[0] += 1
        offset += n
