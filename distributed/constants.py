"""`torch.distributed.constants`: the default timeouts, as Phalanx applies them (a collective
that makes no progress for this long fails; see `comm_queue.default_collective_timeout`)."""
from datetime import timedelta

from .comm_queue import DEFAULT_COLLECTIVE_TIMEOUT

default_pg_timeout = timedelta(seconds=DEFAULT_COLLECTIVE_TIMEOUT)
default_pg_nccl_timeout = default_pg_timeout

__all__ = ["default_pg_timeout", "default_pg_nccl_timeout"]
