"""`torch.utils.data.dataloader`'s names, from `phalanx.data`."""
from ...data import DataLoader, default_collate, default_convert, get_worker_info

__all__ = ["DataLoader", "get_worker_info", "default_collate", "default_convert"]
