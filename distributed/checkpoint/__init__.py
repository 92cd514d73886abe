"""`torch.distributed.checkpoint` (DCP): sharded checkpoints in a folder, each rank writing
what it holds and reading what it needs at any world size (`save` / `load`, saver.py), and
the state-dict helpers (`state_dict`) that give one form of a model's and its optimizers'
state however the model is wrapped or sharded."""
from . import format_utils, state_dict  # noqa: F401
from .saver import FileSystemReader, FileSystemWriter, async_save, load, save
from .stateful import Stateful

__all__ = ["FileSystemReader", "FileSystemWriter", "Stateful", "async_save", "format_utils",
           "load", "save", "state_dict"]


def __getattr__(name):
    if name in ("save_state_dict", "load_state_dict"):
        raise AttributeError(
            f"phalanx.distributed.checkpoint has no {name} (deprecated in PyTorch): use save "
            f"/ load")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
