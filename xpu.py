"""`torch.xpu` (Intel GPUs): Phalanx runs on CPUs and NVIDIA GPUs, so there is no XPU here;
device-agnostic scripts ask and get PyTorch's answers for a build without XPU support."""

__all__ = ["device_count", "is_available", "is_initialized", "manual_seed",
           "manual_seed_all", "seed", "seed_all", "synchronize"]


def is_available():
    return False


def device_count():
    return 0


def is_initialized():
    return False


def manual_seed(seed):
    """Nothing to seed (as PyTorch's, which seeds lazily and never without an XPU)."""
    int(seed)


manual_seed_all = manual_seed


def seed():
    pass


seed_all = seed


def synchronize(device=None):
    raise RuntimeError("phalanx has no XPU support (phalanx.xpu.is_available() is False); "
                       "use 'cpu' or 'cuda' devices")
