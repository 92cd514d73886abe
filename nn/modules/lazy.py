"""Lazy layers: `LazyLinear`, `LazyConv1d/2d`, `LazyConvTranspose1d/2d`, `LazyBatchNorm1d/2d/3d`
and `LazyInstanceNorm1d/2d/3d` infer their input size from the first input.

Their weights start as `UninitializedParameter`s (no data, no shape). The first forward reads
the input size, materialises every uninitialised parameter and buffer *in place* (so an
optimizer built before that step holds the real weights), initialises them as the eager layer
would, and turns the module into that layer (`LazyLinear` becomes `Linear`), as PyTorch does.
Loading a state dict into a lazy module materialises it with the stored shapes.
"""
import numpy as np

from ...autograd.grad_mode import no_grad
from ...tensor import Tensor, backend, dtypes
from ..parameter import Parameter
from .batchnorm import BatchNorm1d, BatchNorm2d, BatchNorm3d
from .conv import Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d
from .instancenorm import InstanceNorm1d, InstanceNorm2d, InstanceNorm3d
from .linear import Linear


class UninitializedTensorMixin:
    def materialize(self, shape, device=None, dtype=None):
        """Give the tensor data of `shape` (uninitialised values) and make it a plain
        Parameter (or Tensor, for a buffer)."""
        device = self._lazy_device if device is None else device
        dtype = self._lazy_dtype if dtype is None else dtype
        np_dtype = dtypes.to_numpy_dtype(dtype) if dtype is not None else \
            dtypes.get_default_dtype().np
        arr = backend.to_device(np.empty(tuple(shape), np_dtype), device or "cpu")
        requires_grad = self.requires_grad
        self.__class__ = self.cls_to_become
        self._init(arr, requires_grad)

    def __repr__(self):
        return f"<{type(self).__name__}>"


class UninitializedParameter(UninitializedTensorMixin, Parameter):
    """A parameter whose shape is not known yet (see the module docstring)."""
    cls_to_become = Parameter

    def __init__(self, requires_grad=True, device=None, dtype=None):
        super().__init__(None, requires_grad)
        self._lazy_device, self._lazy_dtype = device, dtype


class _Buffer(Tensor):
    """What an UninitializedBuffer becomes: a plain tensor (a subclass only so that the
    object can change class in place)."""


class UninitializedBuffer(UninitializedTensorMixin, Tensor):
    """A buffer whose shape is not known yet."""
    cls_to_become = _Buffer

    def __init__(self, requires_grad=False, device=None, dtype=None):
        self._init(np.empty((0,), dtypes.get_default_dtype().np), requires_grad)
        self._lazy_device, self._lazy_dtype = device, dtype


def _is_lazy(t):
    return isinstance(t, UninitializedTensorMixin)


class LazyModuleMixin:
    """Materialise on the first forward, then become `cls_to_become`."""
    cls_to_become = None

    def has_uninitialized_params(self):
        return any(_is_lazy(t) for t in list(self._parameters.values()) +
                   list(self._buffers.values()))

    def forward(self, input, *args, **kwargs):
        if self.has_uninitialized_params():
            with no_grad():
                self.initialize_parameters(input)
        self._become_eager()
        return self.forward(input, *args, **kwargs)

    def _become_eager(self):
        if not self.has_uninitialized_params() and self.cls_to_become is not None:
            self.__class__ = self.cls_to_become

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        for registry in (self._parameters, self._buffers):
            for name, t in registry.items():
                key = prefix + name
                if _is_lazy(t) and key in state_dict and not _is_lazy(state_dict[key]):
                    t.materialize(tuple(state_dict[key].shape))
        if not self.has_uninitialized_params():
            self._sizes_from_weights()
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                      missing_keys, unexpected_keys, error_msgs)
        self._become_eager()

    def _sizes_from_weights(self):
        """Set the inferred size attribute from materialised weights (after loading)."""


def _factory(device, dtype):
    return dict(device=device, dtype=dtype)


class LazyLinear(LazyModuleMixin, Linear):
    cls_to_become = Linear

    def __init__(self, out_features, bias=True, device=None, dtype=None):
        super().__init__(0, 0, False)
        self.weight = UninitializedParameter(**_factory(device, dtype))
        self.out_features = out_features
        if bias:
            self.bias = UninitializedParameter(**_factory(device, dtype))

    def reset_parameters(self):
        if not self.has_uninitialized_params() and self.in_features != 0:
            super().reset_parameters()

    def initialize_parameters(self, input):
        self.in_features = input.shape[-1]
        self.weight.materialize((self.out_features, self.in_features))
        if self.bias is not None:
            self.bias.materialize((self.out_features,))
        self.reset_parameters()

    def _sizes_from_weights(self):
        self.in_features = self.weight.shape[1]


class _LazyConvMixin(LazyModuleMixin):
    _spatial = 1

    def _lazy_init(self, out_channels, bias, device, dtype):
        self.weight = UninitializedParameter(**_factory(device, dtype))
        self.out_channels = out_channels
        if bias:
            self.bias = UninitializedParameter(**_factory(device, dtype))

    def reset_parameters(self):
        if not self.has_uninitialized_params() and self.in_channels != 0:
            super().reset_parameters()

    def initialize_parameters(self, input):
        batched = self._spatial + 2
        if input.ndim not in (batched - 1, batched):
            raise RuntimeError(f"Expected {batched - 1}D (unbatched) or {batched}D (batched) "
                               f"input to {type(self).__name__}, but got input of size: "
                               f"{list(input.shape)}")
        self.in_channels = input.shape[1] if input.ndim == batched else input.shape[0]
        if self.in_channels % self.groups:
            raise ValueError("in_channels must be divisible by groups")
        if self.transposed:
            shape = (self.in_channels, self.out_channels // self.groups) + self.kernel_size
        else:
            shape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        self.weight.materialize(shape)
        if self.bias is not None:
            self.bias.materialize((self.out_channels,))
        self.reset_parameters()

    def _sizes_from_weights(self):
        self.in_channels = self.weight.shape[0] if self.transposed else \
            self.weight.shape[1] * self.groups


class LazyConv1d(_LazyConvMixin, Conv1d):
    cls_to_become = Conv1d

    def __init__(self, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None):
        super().__init__(0, 0, kernel_size, stride, padding, dilation, groups, False,
                         padding_mode)
        self._lazy_init(out_channels, bias, device, dtype)


class LazyConv2d(_LazyConvMixin, Conv2d):
    cls_to_become = Conv2d
    _spatial = 2

    def __init__(self, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None):
        super().__init__(0, 0, kernel_size, stride, padding, dilation, groups, False,
                         padding_mode)
        self._lazy_init(out_channels, bias, device, dtype)


class LazyConvTranspose1d(_LazyConvMixin, ConvTranspose1d):
    cls_to_become = ConvTranspose1d

    def __init__(self, out_channels, kernel_size, stride=1, padding=0, output_padding=0,
                 groups=1, bias=True, dilation=1, padding_mode="zeros", device=None,
                 dtype=None):
        super().__init__(0, 0, kernel_size, stride, padding, output_padding, groups, False,
                         dilation, padding_mode)
        self._lazy_init(out_channels, bias, device, dtype)


class LazyConvTranspose2d(_LazyConvMixin, ConvTranspose2d):
    cls_to_become = ConvTranspose2d
    _spatial = 2

    def __init__(self, out_channels, kernel_size, stride=1, padding=0, output_padding=0,
                 groups=1, bias=True, dilation=1, padding_mode="zeros", device=None,
                 dtype=None):
        super().__init__(0, 0, kernel_size, stride, padding, output_padding, groups, False,
                         dilation, padding_mode)
        self._lazy_init(out_channels, bias, device, dtype)


class LazyConv3d(_LazyConvMixin, Conv3d):
    cls_to_become = Conv3d
    _spatial = 3

    def __init__(self, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None):
        super().__init__(0, 0, kernel_size, stride, padding, dilation, groups, False,
                         padding_mode)
        self._lazy_init(out_channels, bias, device, dtype)


class LazyConvTranspose3d(_LazyConvMixin, ConvTranspose3d):
    cls_to_become = ConvTranspose3d
    _spatial = 3

    def __init__(self, out_channels, kernel_size, stride=1, padding=0, output_padding=0,
                 groups=1, bias=True, dilation=1, padding_mode="zeros", device=None,
                 dtype=None):
        super().__init__(0, 0, kernel_size, stride, padding, output_padding, groups, False,
                         dilation, padding_mode)
        self._lazy_init(out_channels, bias, device, dtype)


class _LazyNormMixin(LazyModuleMixin):
    def __init__(self, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 device=None, dtype=None, *, bias=True):
        super().__init__(0, eps, momentum, False, False)
        self.affine, self.track_running_stats = affine, track_running_stats
        self._has_bias = affine and bias
        f = _factory(device, dtype)
        if affine:
            self.weight = UninitializedParameter(**f)
            if bias:
                self.bias = UninitializedParameter(**f)
        if track_running_stats:
            self.running_mean = UninitializedBuffer(**f)
            self.running_var = UninitializedBuffer(**f)
            self.num_batches_tracked = Tensor._make(np.asarray(0, np.int64))

    def reset_parameters(self):
        if not self.has_uninitialized_params() and self.num_features != 0:
            super().reset_parameters()

    def initialize_parameters(self, input):
        self.num_features = input.shape[1]
        if self.affine:
            self.weight.materialize((self.num_features,))
            if self.bias is not None:
                self.bias.materialize((self.num_features,))
        if self.track_running_stats:
            self.running_mean.materialize((self.num_features,))
            self.running_var.materialize((self.num_features,))
        self.reset_parameters()

    def _sizes_from_weights(self):
        self.num_features = (self.weight if self.affine else self.running_mean).shape[0]


def _norm(name, base):
    return type(name, (_LazyNormMixin, base), {"cls_to_become": base, "__module__": __name__,
                                               "__qualname__": name})


LazyBatchNorm1d = _norm("LazyBatchNorm1d", BatchNorm1d)
LazyBatchNorm2d = _norm("LazyBatchNorm2d", BatchNorm2d)
LazyBatchNorm3d = _norm("LazyBatchNorm3d", BatchNorm3d)


class _LazyInstanceNormMixin(_LazyNormMixin):
    """Note PyTorch's defaults here: affine=True and track_running_stats=True, unlike the
    eager InstanceNorm layers."""

    def initialize_parameters(self, input):
        batched = self._dims[0]
        if input.ndim == batched - 1:   # unbatched: the channels are dim 0
            input = input.unsqueeze(0)
        super().initialize_parameters(input)


def _instance_norm(name, base):
    return type(name, (_LazyInstanceNormMixin, base), {
        "cls_to_become": base, "__module__": __name__, "__qualname__": name})


LazyInstanceNorm1d = _instance_norm("LazyInstanceNorm1d", InstanceNorm1d)
LazyInstanceNorm2d = _instance_norm("LazyInstanceNorm2d", InstanceNorm2d)
LazyInstanceNorm3d = _instance_norm("LazyInstanceNorm3d", InstanceNorm3d)
