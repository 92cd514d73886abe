"""The default process group: `init_process_group`, ranks, subgroups, teardown.

`init_process_group()` reads the environment (see `env.py`) and picks a backend:
`mpi` when started under MPI, `zmq` under `phalanx run` without MPI, `local` for a world of
one; `nccl` (GPU runs) comes with the NCCL backend. Backends are found by name in `BACKENDS`,
where `register_backend` puts them. Every other function here follows
`torch.distributed`'s name and meaning.
"""
import datetime
import importlib

from . import debug, threads
from .comm_queue import default_collective_timeout
from . import env as _env_mod


class _NonMember:
    """Returned by `new_group` on ranks outside the new group (PyTorch's NON_GROUP_MEMBER)."""

    def __repr__(self):
        return "GroupMember.NON_GROUP_MEMBER"


class GroupMember:
    NON_GROUP_MEMBER = _NonMember()

    @property
    def WORLD(self):
        return _state.world


class _State:
    world = None          # the default ProcessGroup
    env = None            # the Environment it was built from
    groups = []           # every group new_group() made, destroyed with the world


_state = _State()
group = GroupMember()     # `dist.group.WORLD`


def _seconds(timeout):
    """A collective's timeout: given, or $PHALANX_COLLECTIVE_TIMEOUT, or 600 s of no progress."""
    if timeout is None:
        return default_collective_timeout()
    if isinstance(timeout, datetime.timedelta):
        return timeout.total_seconds()
    return float(timeout)


BACKENDS = {}     # name -> factory(environment, timeout) -> the world's ProcessGroup


def register_backend(name):
    """Decorator: `factory(environment, timeout)` makes the world's group for backend `name`
    (`environment` is `env.Environment`, `timeout` in seconds). Factories import their
    backend's module themselves, so a backend costs nothing until it is chosen."""
    def add(factory):
        BACKENDS[name] = factory
        return factory
    return add


@register_backend("local")
def _local_group(environment, timeout):
    if environment.world_size != 1:
        raise RuntimeError(f"backend 'local' is a world of one, but the launcher started "
                           f"{environment.world_size} ranks; use backend=None")
    from .local_backend import LocalProcessGroup
    return LocalProcessGroup()


@register_backend("mpi")
def _mpi_group(environment, timeout):
    from .mpi_backend import MpiProcessGroup
    pg = MpiProcessGroup.world(timeout)
    if environment.source != "none" and pg.size != environment.world_size:
        raise RuntimeError(
            f"MPI reports a world of {pg.size} process(es) but the {environment.source} "
            f"launcher says {environment.world_size}: this MPI library does not match the "
            f"launcher (e.g. srun without --mpi=pmix, or mpirun of a different MPI than "
            f"mpi4py's). Launch with the mpiexec of the MPI mpi4py was built against.")
    return pg


@register_backend("zmq")
def _zmq_group(environment, timeout):
    from .store import Store
    from .zmq_backend import ZmqProcessGroup
    return ZmqProcessGroup.from_store(Store.from_env(), environment.rank,
                                      environment.world_size, timeout=timeout)


@register_backend("nccl")
def _nccl_group(environment, timeout):
    try:
        nccl = importlib.import_module(".nccl_backend", __package__)
    except ImportError:
        raise RuntimeError(
            "backend 'nccl' is not available in this build of Phalanx (it arrives with the "
            "GPU/NCCL issue). Use backend='mpi' (CuPy arrays are staged through host memory) "
            "or leave backend=None to pick the CPU backend for this launcher.") from None
    return nccl.NcclProcessGroup.create(environment, timeout)


def _choose(backend, environment):
    if backend in (None, "gloo"):   # gloo: what PyTorch CPU scripts ask for; we pick ours
        if environment.under_mpi:
            return "mpi"
        if environment.world_size > 1:
            if environment.store_endpoint:
                return "zmq"
            raise RuntimeError(
                f"RANK={environment.rank} and WORLD_SIZE={environment.world_size} are set, but "
                f"neither MPI nor a Phalanx store is there to connect the ranks. Start the job "
                f"with `phalanx run --nproc-per-node N script.py` or `mpirun -n N python "
                f"script.py`.")
        return "local"
    backend = str(backend).lower()
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)} "
                         f"or leave backend=None to pick from the environment")
    return backend


def init_process_group(backend=None, timeout=None, **kwargs):
    """Create the default group. Works with and without a launcher (then: world of one).

    `backend`: None (pick from the environment), 'mpi', 'zmq', 'local' or 'nccl'; 'gloo' is
    taken as None. `timeout` (seconds or timedelta): a collective that runs longer aborts the
    job with a message instead of hanging. For PyTorch scripts, `init_method='env://'` is
    accepted, and `rank`/`world_size` when they agree with the launcher's environment: ranks
    always come from the environment.
    """
    if _state.world is not None:
        raise RuntimeError("init_process_group() was already called in this process; call "
                           "destroy_process_group() first to start a new one")
    environment = _env_mod.detect()
    unknown = set(kwargs) - {"init_method", "rank", "world_size", "store", "group_name",
                             "pg_options", "device_id"}
    if unknown:
        raise TypeError(f"init_process_group() got unexpected arguments {sorted(unknown)}")
    init_method = kwargs.get("init_method")
    if init_method not in (None, "env://"):
        raise ValueError(f"init_method={init_method!r} is not supported: Phalanx finds the "
                         f"ranks in the environment of its launcher (mpirun, phalanx run); drop "
                         f"init_method or pass 'env://'")
    for name, value in (("rank", environment.rank), ("world_size", environment.world_size)):
        given = kwargs.get(name, -1)
        if given not in (-1, None) and given != value:
            raise ValueError(f"init_process_group({name}={given}) disagrees with the launcher's "
                             f"{name}={value}; drop the argument and let the launcher decide")
    name = _choose(backend, environment)
    debug.configure_from_env()
    threads.share_cores(environment.local_world_size, announce=environment.local_rank == 0)
    world = BACKENDS[name](environment, _seconds(timeout))
    _state.world, _state.env, _state.groups = world, environment, []
    if name == "mpi" and world.size > 1:
        from . import abort
        abort.install(world)
    return None


def is_initialized():
    return _state.world is not None


def is_available():
    return True


def _world():
    if _state.world is None:
        raise RuntimeError("the default process group is not initialized: call "
                           "phalanx.distributed.init_process_group() first (it also works "
                           "without a launcher, as a world of one)")
    return _state.world


def resolve(group=None):
    """The ProcessGroup for `group=` (None: the default one); None for non-members."""
    if group is None:
        return _world()
    if group is GroupMember.NON_GROUP_MEMBER:
        return None
    return group


def get_backend(group=None):
    return resolve(group).backend


def get_rank(group=None):
    """This process's rank in `group` (default: the world); -1 if it is not a member."""
    pg = resolve(group)
    return -1 if pg is None else pg.rank


def get_world_size(group=None):
    pg = resolve(group)
    return -1 if pg is None else pg.size


def get_local_rank():
    """This process's rank among the ranks on its node."""
    _world()
    return _state.env.local_rank


def get_local_world_size():
    _world()
    return _state.env.local_world_size


def get_process_group_ranks(group):
    return list(resolve(group).ranks)


def get_global_rank(group, group_rank):
    return resolve(group).ranks[group_rank]


def get_group_rank(group, global_rank):
    pg = resolve(group)
    try:
        return pg.ranks.index(global_rank)
    except ValueError:
        raise ValueError(f"rank {global_rank} is not in {pg!r} (ranks {pg.ranks})") from None


def new_group(ranks=None, timeout=None, backend=None, **kwargs):
    """A group of the given global ranks. Every rank of the world must call it, in the same
    order; ranks outside `ranks` get `GroupMember.NON_GROUP_MEMBER`."""
    world = _world()
    ranks = list(range(world.size)) if ranks is None else sorted(int(r) for r in ranks)
    bad = [r for r in ranks if not 0 <= r < world.size]
    if bad or len(set(ranks)) != len(ranks):
        raise ValueError(f"new_group(ranks={ranks}): ranks must be distinct and within the "
                         f"world of {world.size}")
    pg = world.split(ranks)
    if pg is None:
        return GroupMember.NON_GROUP_MEMBER
    _state.groups.append(pg)
    return pg


def destroy_process_group(group=None):
    """Tear down `group`, or (default) every group and the world."""
    if group is None:
        groups, world = _state.groups, _state.world
        for pg in groups + ([world] if world is not None else []):
            pg.shutdown()
        _state.world, _state.env, _state.groups = None, None, []
        from . import abort
        abort.uninstall()
    elif group is not GroupMember.NON_GROUP_MEMBER:
        group.shutdown()
        if group in _state.groups:
            _state.groups.remove(group)
