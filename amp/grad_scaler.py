"""`GradScaler`: loss scaling for float16 training, as `torch.amp.GradScaler`.

    scaler = px.amp.GradScaler("cuda")
    with px.autocast("cuda"):
        loss = loss_fn(model(x), y)
    scaler.scale(loss).backward()
    scaler.step(optimizer)      # unscales, skips the step if a gradient holds inf/NaN
    scaler.update()             # backs the scale off after a skip, grows it after a run

The scale and the growth tracker live on the device as arrays, and `update` changes them with
array ops: the only host read per step is `step`'s single look at found_inf (PyTorch's too).
"""
import enum
import warnings
from collections import defaultdict

import numpy as np

from ..autograd.grad_mode import no_grad
from ..tensor import backend, dtypes
from ..tensor.tensor import Tensor


class OptState(enum.Enum):
    READY = 0
    UNSCALED = 1
    STEPPED = 2


def _fresh_optimizer_state():
    return {"stage": OptState.READY, "found_inf_per_device": {}}


class GradScaler:
    def __init__(self, device="cuda", init_scale=2.0 ** 16, growth_factor=2.0,
                 backoff_factor=0.5, growth_interval=2000, enabled=True):
        self._device = str(device)
        self._enabled = bool(enabled)
        if self._device not in ("cpu", "cuda"):
            raise ValueError(f"GradScaler(device={device!r}): Phalanx scales on 'cpu' or "
                             f"'cuda'")
        if self._device == "cuda" and self._enabled:
            from .. import cuda
            if not cuda.is_available():
                warnings.warn("phalanx.amp.GradScaler is enabled, but CUDA is not available.  "
                              "Disabling.", stacklevel=2)
                self._enabled = False
        if self._enabled:
            if growth_factor <= 1.0:
                raise AssertionError("The growth factor must be > 1.0.")
            if backoff_factor >= 1.0:
                raise AssertionError("The backoff factor must be < 1.0.")
        self._init_scale = init_scale
        self._growth_factor = growth_factor
        self._backoff_factor = backoff_factor
        self._growth_interval = growth_interval
        self._init_growth_tracker = 0
        self._scale = None            # 0-d float32 tensor, made by the first scale()
        self._growth_tracker = None   # 0-d int32 tensor
        self._per_optimizer_states = defaultdict(_fresh_optimizer_state)

    # ---- scaling -----------------------------------------------------------------------------
    def _lazy_init(self, device):
        self._scale = Tensor._make(backend.to_device(
            np.full((), self._init_scale, dtype=np.float32), device))
        self._growth_tracker = Tensor._make(backend.to_device(
            np.full((), self._init_growth_tracker, dtype=np.int32), device))

    def _check(self, funcname):
        if self._scale is None:
            raise AssertionError(f"Attempted {funcname} but _scale is None.  This may indicate "
                                 f"your script did not use scaler.scale(loss or outputs) "
                                 f"earlier in the iteration.")
        return self._scale, self._growth_tracker

    def scale(self, outputs):
        """Multiply `outputs` (a tensor, or lists/tuples of tensors) by the scale."""
        if not self._enabled:
            return outputs
        if isinstance(outputs, Tensor):
            if self._scale is None:
                self._lazy_init(outputs.device)
            return outputs * self._scale.to(outputs.device)
        if isinstance(outputs, (list, tuple)):
            return type(outputs)(self.scale(o) for o in outputs)
        if hasattr(outputs, "__iter__"):
            return map(self.scale, outputs)
        raise ValueError("outputs must be a Tensor or an iterable of Tensors")

    # ---- unscaling and stepping -----------------------------------------------------------
    def _unscale_grads_(self, optimizer, inv_scale, allow_fp16):
        """Multiply every gradient by inv_scale in place; return {device: found_inf} where
        found_inf is a 0-d float32 array, 1.0 when a gradient there held inf or NaN."""
        found = {}
        meshes = []          # of sharded gradients (FSDP): an inf anywhere skips every rank
        with no_grad():
            for group in optimizer.param_groups:
                for param in group["params"]:
                    if not isinstance(param, Tensor):
                        raise AssertionError(f"expected param to be phalanx.Tensor, got "
                                             f"{type(param).__name__}")
                    g = param.grad
                    if g is None:
                        continue
                    if not allow_fp16 and g.dtype is dtypes.float16:
                        raise ValueError("Attempting to unscale FP16 gradients.")
                    if hasattr(g, "_placements") and g._mesh not in meshes:
                        meshes.append(g._mesh)
                    d = g._data
                    xp = backend.array_module(d)
                    dev = backend.device_of(d)
                    inv = inv_scale if dev == backend.device_of(inv_scale) else \
                        backend.to_device(inv_scale, dev)
                    bad = xp.logical_not(xp.isfinite(d).all())   # stays on the device
                    f = found.get(dev)
                    found[dev] = bad if f is None else xp.logical_or(f, bad)
                    if d.dtype == inv.dtype:
                        xp.multiply(d, inv, out=d)
                    else:   # float16/bfloat16/float64 grads: compute in float32 and round
                        d[...] = (d.astype(inv.dtype) * inv).astype(d.dtype)
        found = {dev: backend.array_module(f).asarray(f, dtype="float32")
                 for dev, f in found.items()}
        if meshes:
            from ..distributed import ReduceOp, all_reduce
            for mesh in meshes:
                for f in found.values():
                    all_reduce(Tensor._make(f), op=ReduceOp.MAX, group=mesh.get_group())
        return found

    def unscale_(self, optimizer):
        """Divide the optimizer's gradients by the scale in place (before clipping them)."""
        if not self._enabled:
            return
        self._check("unscale_")
        state = self._per_optimizer_states[id(optimizer)]
        if state["stage"] is OptState.UNSCALED:
            raise RuntimeError("unscale_() has already been called on this optimizer since the "
                               "last update().")
        if state["stage"] is OptState.STEPPED:
            raise RuntimeError("unscale_() is being called after step().")
        s = self._scale._data
        inv_scale = (1.0 / s.astype("float64")).astype("float32")
        state["found_inf_per_device"] = self._unscale_grads_(optimizer, inv_scale, False)
        state["stage"] = OptState.UNSCALED

    def step(self, optimizer, *args, **kwargs):
        """Unscale (unless done), then `optimizer.step()` unless a gradient held inf/NaN."""
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        if "closure" in kwargs:
            raise RuntimeError("Closure use is not currently supported if GradScaler is "
                               "enabled.")
        self._check("step")
        state = self._per_optimizer_states[id(optimizer)]
        if state["stage"] is OptState.STEPPED:
            raise RuntimeError("step() has already been called since the last update().")
        if state["stage"] is OptState.READY:
            self.unscale_(optimizer)
        if len(state["found_inf_per_device"]) == 0:
            raise AssertionError("No inf checks were recorded for this optimizer.")
        retval = None
        # the one host read of the step, as in PyTorch
        if not sum(float(v) for v in state["found_inf_per_device"].values()):
            retval = optimizer.step(*args, **kwargs)
        state["stage"] = OptState.STEPPED
        return retval

    # ---- the scale's trajectory -----------------------------------------------------------
    def update(self, new_scale=None):
        """Back the scale off if any step of this iteration found inf/NaN, else count a
        success and grow it after `growth_interval` of them; or set it to `new_scale`."""
        if not self._enabled:
            return
        scale, tracker = self._check("update")
        if new_scale is not None:
            if isinstance(new_scale, float):
                scale._data[...] = new_scale
            else:
                reason = ("new_scale should be a float or a 1-element phalanx.Tensor with "
                          "requires_grad=False.")
                if not isinstance(new_scale, Tensor) or new_scale.numel() != 1 or \
                        new_scale.requires_grad or new_scale.device.type != self._device:
                    raise AssertionError(reason)
                scale._data[...] = backend.to_device(new_scale._data, scale.device).reshape(())
        else:
            found_infs = [backend.to_device(f, scale.device)
                          for state in self._per_optimizer_states.values()
                          for f in state["found_inf_per_device"].values()]
            if not found_infs:
                raise AssertionError("No inf checks were recorded prior to update.")
            found = found_infs[0]
            for f in found_infs[1:]:
                found = found + f
            _update_scale_(scale._data, tracker._data, found, self._growth_factor,
                           self._backoff_factor, self._growth_interval)
        self._per_optimizer_states = defaultdict(_fresh_optimizer_state)

    def get_scale(self):
        if not self._enabled:
            return 1.0
        return self._init_scale if self._scale is None else self._scale.item()

    def get_growth_factor(self):
        return self._growth_factor

    def set_growth_factor(self, new_factor):
        self._growth_factor = new_factor

    def get_backoff_factor(self):
        return self._backoff_factor

    def set_backoff_factor(self, new_factor):
        self._backoff_factor = new_factor

    def get_growth_interval(self):
        return self._growth_interval

    def set_growth_interval(self, new_interval):
        self._growth_interval = new_interval

    def _get_growth_tracker(self):
        if not self._enabled:
            return 0
        return self._init_growth_tracker if self._growth_tracker is None \
            else self._growth_tracker.item()

    def is_enabled(self):
        return self._enabled

    # ---- checkpoints -----------------------------------------------------------------------
    def state_dict(self):
        if not self._enabled:
            return {}
        return {"scale": self.get_scale(), "growth_factor": self._growth_factor,
                "backoff_factor": self._backoff_factor,
                "growth_interval": self._growth_interval,
                "_growth_tracker": self._get_growth_tracker()}

    def load_state_dict(self, state_dict):
        if not self._enabled:
            return
        if len(state_dict) == 0:
            raise RuntimeError("The source state dict is empty, possibly because it was saved "
                               "from a disabled instance of GradScaler.")
        self._init_scale = state_dict["scale"]
        if self._scale is not None:
            self._scale._data[...] = state_dict["scale"]
        self._growth_factor = state_dict["growth_factor"]
        self._backoff_factor = state_dict["backoff_factor"]
        self._growth_interval = state_dict["growth_interval"]
        self._init_growth_tracker = state_dict["_growth_tracker"]
        if self._growth_tracker is not None:
            self._growth_tracker._data[...] = state_dict["_growth_tracker"]

    def __getstate__(self):
        state = self.__dict__.copy()
        if self._enabled:
            if len(self._per_optimizer_states) != 0:
                raise AssertionError("A GradScaler instance may only be pickled at the "
                                     "beginning of an iteration, or at the end after "
                                     "scaler.update().")
            state["_init_scale"] = self.get_scale()
            state["_init_growth_tracker"] = self._get_growth_tracker()
            state["_scale"] = None
            state["_growth_tracker"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)


def _update_scale_(scale, tracker, found_inf, growth_factor, backoff_factor, growth_interval):
    """PyTorch's `_amp_update_scale_` with array ops on 0-d arrays (no host read): after an
    inf/NaN, scale *= backoff and the tracker restarts; else the tracker counts, and at
    growth_interval the scale grows (unless that overflows) and the tracker restarts."""
    xp = backend.array_module(scale)
    hit = found_inf > 0
    successful = tracker + 1
    grow = xp.logical_and(xp.logical_not(hit), successful == growth_interval)
    # products in float64, then rounded to the scale's float32 (as PyTorch's kernel does)
    with np.errstate(over="ignore"):   # a scale grown past float32's max is dropped below
        grown = (scale.astype("float64") * growth_factor).astype(scale.dtype)
    grown = xp.where(xp.isfinite(grown), grown, scale)
    backed_off = (scale.astype("float64") * backoff_factor).astype(scale.dtype)
    scale[...] = xp.where(hit, backed_off, xp.where(grow, grown, scale))
    tracker[...] = xp.where(xp.logical_or(hit, grow), 0, successful).astype(tracker.dtype)
