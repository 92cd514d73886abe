"""`DataParallel`, as PyTorch scripts use it (`model = nn.DataParallel(model)`).

PyTorch's DataParallel splits each batch over the GPUs of one process. Phalanx does what
PyTorch does where that is one device: with no GPU the wrapper calls the module directly (and
ignores device_ids, as PyTorch does on a CPU-only machine); with one GPU in device_ids it moves
the module there and the inputs with it. Several GPUs in one process are not supported: one
process per GPU with DistributedDataParallel is the way to use them.
"""
from ... import cuda
from ...tensor import Tensor, backend
from ..modules.module import Module


def _index(device):
    if isinstance(device, int):
        return device
    return backend.Device(device).index or 0


def _to(obj, device):
    if isinstance(obj, Tensor):
        return obj.to(device)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(_to(v, device) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to(v, device) for v in obj)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj


class DataParallel(Module):
    def __init__(self, module, device_ids=None, output_device=None, dim=0):
        super().__init__()
        self.module = module
        gpus = cuda.device_count()
        if gpus == 0:
            self.device_ids = []
            return
        ids = list(range(gpus)) if device_ids is None else [_index(d) for d in device_ids]
        if len(ids) > 1:
            raise NotImplementedError(
                f"DataParallel over {len(ids)} GPUs (device_ids={ids}) is not supported: "
                f"start one process per GPU and wrap the model in "
                f"DistributedDataParallel (`phalanx run --nproc-per-node {len(ids)} "
                f"train.py`), or pass device_ids=[{ids[0]}]")
        self.dim = dim
        self.device_ids = ids
        self.output_device = ids[0] if output_device is None else _index(output_device)
        self.src_device_obj = backend.Device(f"cuda:{ids[0]}")
        self.module.to(self.src_device_obj)

    def forward(self, *inputs, **kwargs):
        if not self.device_ids:
            return self.module(*inputs, **kwargs)
        for t in list(self.module.parameters()) + list(self.module.buffers()):
            if t.device != self.src_device_obj:
                raise RuntimeError(f"module must have its parameters and buffers on device "
                                   f"{self.src_device_obj} (device_ids[0]) but found one of "
                                   f"them on device: {t.device}")
        return self.module(*_to(inputs, self.src_device_obj),
                           **_to(kwargs, self.src_device_obj))
