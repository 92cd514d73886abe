"""`phalanx.distributed`: process groups, collectives and data-parallel training.

    import phalanx.distributed as dist
    dist.init_process_group()            # mpirun, phalanx run, or plain python (world of one)
    model = dist.DistributedDataParallel(model)
    dist.all_reduce(t, op=dist.ReduceOp.AVG)

Names and signatures follow `torch.distributed`. Importing this package stays cheap (no NumPy,
no MPI, no tensor engine): the launcher imports the store from here. MPI is initialised by
`init_process_group`; DDP, SyncBatchNorm and the sharded optimizer load on first use.
"""
import importlib

from .process_group import ProcessGroup, ReduceOp, Work
from .world import (Backend, GroupMember, destroy_process_group, get_backend, get_backend_config,
                    get_default_backend_for_device, get_global_rank, get_group_rank,
                    get_local_rank, get_local_world_size, get_node_local_rank, get_pg_count,
                    get_process_group_ranks, get_rank, get_world_size, group,
                    init_process_group, is_available, is_backend_available, is_gloo_available,
                    is_initialized, is_mpi_available, is_nccl_available,
                    is_torchelastic_launched, is_ucc_available, is_xccl_available, new_group,
                    new_subgroups, new_subgroups_by_enumeration)
from .collectives import (P2POp, all_gather, all_gather_into_tensor, all_gather_object,
                          all_reduce, all_to_all, all_to_all_single, barrier,
                          batch_isend_irecv, broadcast, broadcast_object_list, gather,
                          gather_object, irecv, isend, monitored_barrier, recv, reduce,
                          recv_object_list, reduce_scatter, reduce_scatter_tensor, scatter,
                          scatter_object_list, send, send_object_list)
from .collectives import all_gather_into_tensor as all_gather_single
from .collectives import reduce_scatter_tensor as reduce_scatter_single
from .reduce_op import supports_complex
from .debug import (CollectiveMismatchError, DebugLevel, get_debug_level, set_debug_level,
                    set_debug_level_from_env)
from .errors import DistBackendError, DistError, DistNetworkError, DistStoreError, QueueEmptyError

_LAZY = {
    "DistributedDataParallel": ".ddp",
    "GradBucket": ".ddp",
    "SyncBatchNorm": ".sync_batchnorm",
    "ZeroRedundancyOptimizer": ".zero",
    "Store": ".store",
    "TCPStore": ".torch_stores",
    "HashStore": ".torch_stores",
    "PrefixStore": ".torch_stores",
    "FileStore": ".file_store",
    "DeviceMesh": ".device_mesh",
    "all_reduce_coalesced": ".coalesced",
    "all_gather_coalesced": ".coalesced",
    "breakpoint": ".debugger",
    "init_device_mesh": ".device_mesh",
}
_LAZY_MODULES = {"comm_hooks", "ddp", "sync_batchnorm", "zero", "store", "zmq_backend",
                 "heartbeat", "elastic", "mpi_backend", "local_backend", "env", "algorithms",
                 "optim", "constants", "distributed_c10d", "device_mesh", "nn"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    if name in _LAZY_MODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | _LAZY_MODULES)
