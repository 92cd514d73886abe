"""`torch.distributed.checkpoint`: the state-dict helpers (`state_dict`) that give one form
of a model's and its optimizers' state however the model is wrapped or sharded. Save what
they return with `phalanx.save` (safetensors) on rank 0."""
from . import state_dict  # noqa: F401


def __getattr__(name):
    if name in ("save", "load", "async_save", "FileSystemWriter", "FileSystemReader",
                "save_state_dict", "load_state_dict"):
        raise AttributeError(
            f"phalanx.distributed.checkpoint has no {name}: sharded checkpoints on disk (DCP) "
            f"are not implemented; gather with state_dict.get_state_dict(..., options="
            f"StateDictOptions(full_state_dict=True, cpu_offload=True)) and phalanx.save "
            f"on rank 0")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
