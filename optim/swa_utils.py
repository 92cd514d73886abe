"""Weight averaging (SWA and EMA) with PyTorch's `torch.optim.swa_utils` API: `AveragedModel`
keeps a running average of a model's parameters, `SWALR` anneals the rate to a constant SWA
rate, and `update_bn` recomputes BatchNorm statistics for the averaged weights."""
import itertools
import math
from copy import deepcopy

import numpy as np

from ..autograd.grad_mode import no_grad
from ..nn.modules.batchnorm import _BatchNorm
from ..nn.modules.module import Module
from ..tensor import creation, dtypes
from ..tensor.backend import array_module
from ..tensor.tensor import Tensor
from ._array_ops import lerp_
from .lr_scheduler import LRScheduler
from .lr_scheduler._base import _per_group

__all__ = ["AveragedModel", "update_bn", "SWALR", "get_ema_multi_avg_fn",
           "get_swa_multi_avg_fn", "get_ema_avg_fn", "get_swa_avg_fn"]


def _check_decay(decay):
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"Invalid decay value {decay} provided. Please provide a value in "
                         f"[0,1] range.")


def _blend_(averaged, current, weight):
    """averaged += weight * (current - averaged) in place: a lerp for floating tensors; integer
    tensors take the truncated result, as a copy into them does in PyTorch."""
    avg, cur = averaged._data, current._data
    if avg.dtype.kind in "fc":
        lerp_(avg, cur, weight, array_module(avg).empty_like(avg))
    else:
        avg[...] = avg * (1 - weight) + cur * weight
    averaged._version[0] += 1


def get_ema_multi_avg_fn(decay=0.999):
    """An in-place exponential moving average over lists of tensors: ema = decay * ema +
    (1 - decay) * current."""
    _check_decay(decay)

    def ema_update(ema_param_list, current_param_list, _):
        for ema, current in zip(ema_param_list, current_param_list):
            _blend_(ema, current, 1 - decay)
    return ema_update


def get_swa_multi_avg_fn():
    """An in-place equal-weight running average over lists of tensors."""
    def swa_update(averaged_param_list, current_param_list, num_averaged):
        if averaged_param_list and averaged_param_list[0]._data.dtype.kind not in "fc":
            # PyTorch's in-place update refuses integer tensors too
            raise RuntimeError(f"the equal-weight in-place average cannot update integer "
                               f"tensors ({averaged_param_list[0].dtype}, e.g. BatchNorm's "
                               f"num_batches_tracked with use_buffers=True); use avg_fn="
                               f"get_swa_avg_fn() or the default average instead")
        if isinstance(num_averaged, Tensor):
            # PyTorch divides by the count tensor, which gives a float32 weight
            weight = float(np.float32(1) / np.float32(num_averaged.item() + 1))
        else:
            weight = 1 / (num_averaged + 1)
        for averaged, current in zip(averaged_param_list, current_param_list):
            _blend_(averaged, current, weight)
    return swa_update


def get_ema_avg_fn(decay=0.999):
    """The exponential moving average of one tensor, returned as a new tensor."""
    _check_decay(decay)

    def ema_update(ema_param, current_param, num_averaged):
        with no_grad():
            return decay * ema_param + (1 - decay) * current_param
    return ema_update


def get_swa_avg_fn():
    """The equal-weight running average of one tensor, returned as a new tensor."""
    def swa_update(averaged_param, current_param, num_averaged):
        with no_grad():
            return averaged_param + (current_param - averaged_param) / (num_averaged + 1)
    return swa_update


class AveragedModel(Module):
    """A copy of `model` whose parameters (and buffers, with `use_buffers`) are a running average
    of `model`'s over the calls to `update_parameters(model)`: equal weights (SWA) by default,
    or `avg_fn(averaged, current, n_averaged)` per tensor, or `multi_avg_fn` over lists of
    tensors in place (e.g. `get_ema_multi_avg_fn(0.999)` for an EMA). The first call copies."""

    def __init__(self, model, device=None, avg_fn=None, multi_avg_fn=None, use_buffers=False):
        super().__init__()
        if avg_fn is not None and multi_avg_fn is not None:
            raise AssertionError("Only one of avg_fn and multi_avg_fn should be provided")
        self.module = deepcopy(model)
        if device is not None:
            self.module = self.module.to(device)
        self.register_buffer("n_averaged", creation.tensor(0, dtype=dtypes.int64,
                                                             device=device))
        self.avg_fn = avg_fn
        self.multi_avg_fn = multi_avg_fn
        self.use_buffers = use_buffers

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def update_parameters(self, model):
        if self.use_buffers:
            averaged = list(itertools.chain(self.module.parameters(), self.module.buffers()))
            current = list(itertools.chain(model.parameters(), model.buffers()))
        else:
            averaged, current = list(self.parameters()), list(model.parameters())
        with no_grad():
            averaged = [p.detach() for p in averaged]
            current = [p.detach().to(a.device) for p, a in zip(current, averaged)]
            if self.n_averaged.item() == 0:
                for a, c in zip(averaged, current):
                    a.copy_(c)
            elif self.multi_avg_fn is not None:
                # one call per dtype, as PyTorch groups the lists by device and dtype
                for dtype in dict.fromkeys(a.dtype for a in averaged):
                    pairs = [(a, c) for a, c in zip(averaged, current) if a.dtype == dtype]
                    self.multi_avg_fn([a for a, _ in pairs], [c for _, c in pairs],
                                      self.n_averaged)
            else:
                avg_fn = self.avg_fn or get_swa_avg_fn()
                for a, c in zip(averaged, current):
                    a.copy_(avg_fn(a, c, self.n_averaged))
            if not self.use_buffers:  # the buffers follow the model's
                for b_averaged, b_model in zip(self.module.buffers(), model.buffers()):
                    b_averaged.detach().copy_(b_model.detach().to(b_averaged.device))
            self.n_averaged.add_(1)


def update_bn(loader, model, device=None):
    """One pass over `loader` (batches are tensors, or lists/tuples whose first item is the
    input) in training mode to recompute every BatchNorm's running statistics as plain
    averages over the data; the momenta and the training flag are restored after."""
    momenta = {}
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            module.reset_running_stats()
            momenta[module] = module.momentum
    if not momenta:
        return
    was_training = model.training
    model.train()
    for module in momenta:
        module.momentum = None  # a cumulative average
    with no_grad():
        for batch in loader:
            if isinstance(batch, (list, tuple)):
                batch = batch[0]
            if device is not None:
                batch = batch.to(device)
            model(batch)
    for module, momentum in momenta.items():
        module.momentum = momentum
    model.train(was_training)


class SWALR(LRScheduler):
    """Anneal each group's rate to `swa_lr` over `anneal_epochs` epochs ("cos" or "linear"),
    then hold it there; used once SWA averaging starts."""

    def __init__(self, optimizer, swa_lr, anneal_epochs=10, anneal_strategy="cos",
                 last_epoch=-1):
        for lr, group in zip(_per_group("swa_lr", optimizer, swa_lr), optimizer.param_groups):
            group["swa_lr"] = lr
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy must be one of 'cos' or 'linear', instead got "
                             f"{anneal_strategy}")
        self._anneal_strategy = anneal_strategy
        if not isinstance(anneal_epochs, int) or anneal_epochs < 0:
            raise ValueError(f"anneal_epochs must be equal or greater than 0, got "
                             f"{anneal_epochs}")
        self.anneal_epochs = anneal_epochs
        super().__init__(optimizer, last_epoch)

    def anneal_func(self, t):
        """The fraction of the way from the starting rate to swa_lr at progress t in [0, 1]."""
        if self._anneal_strategy == "cos":
            return (1 - math.cos(math.pi * t)) / 2
        return t

    @staticmethod
    def _get_initial_lr(lr, swa_lr, alpha):
        """The starting rate that, annealed by alpha toward swa_lr, gives lr."""
        if alpha == 1:
            return swa_lr
        return (lr - alpha * swa_lr) / (1 - alpha)

    def get_lr(self):
        # recursive: recover the starting rate from the current one, then advance a step
        step = self._step_count - 1
        if self.anneal_epochs == 0:
            step = max(1, step)
        prev_alpha = self.anneal_func(max(0, min(1, (step - 1) / max(1, self.anneal_epochs))))
        prev_lrs = [self._get_initial_lr(group["lr"], group["swa_lr"], prev_alpha)
                    for group in self.optimizer.param_groups]
        alpha = self.anneal_func(max(0, min(1, step / max(1, self.anneal_epochs))))
        return [group["swa_lr"] * alpha + lr * (1 - alpha)
                for group, lr in zip(self.optimizer.param_groups, prev_lrs)]
