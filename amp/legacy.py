"""PyTorch's legacy per-device spellings (`torch.cuda.amp.autocast(...)`,
`torch.cpu.amp.GradScaler(...)`): the same classes bound to one device, each warning on use, as
PyTorch's do, with the current form."""
import warnings

from .autocast_mode import autocast as _autocast
from .grad_scaler import GradScaler as _GradScaler


def _deprecated(old, new):
    warnings.warn(f"`{old}(args...)` is deprecated. Please use `{new}` instead.", FutureWarning,
                  stacklevel=3)


def spellings(device, default_dtype):
    """(autocast, GradScaler) for `phalanx.<device>.amp`."""

    class autocast(_autocast):
        def __init__(self, enabled=True, dtype=default_dtype, cache_enabled=True):
            _deprecated(f"phalanx.{device}.amp.autocast",
                        f"phalanx.amp.autocast('{device}', args...)")
            super().__init__(device, dtype=dtype, enabled=enabled, cache_enabled=cache_enabled)

    class GradScaler(_GradScaler):
        def __init__(self, init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5,
                     growth_interval=2000, enabled=True):
            _deprecated(f"phalanx.{device}.amp.GradScaler",
                        f"phalanx.amp.GradScaler('{device}', args...)")
            super().__init__(device, init_scale=init_scale, growth_factor=growth_factor,
                             backoff_factor=backoff_factor, growth_interval=growth_interval,
                             enabled=enabled)

    for cls in (autocast, GradScaler):
        cls.__module__, cls.__qualname__ = f"phalanx.{device}.amp", cls.__name__
    return autocast, GradScaler
