"""The default process group: `init_process_group`, ranks, subgroups, teardown.

`init_process_group()` reads the environment (see `env.py`) and picks a backend:
`nccl` when this process already works on a GPU and NCCL is there (see `_gpu_in_use`), else
`mpi` when started under MPI, `zmq` under `phalanx run` without MPI, `local` for a world of
one. Backends are found by name in `BACKENDS`,
where `register_backend` puts them. Every other function here follows
`torch.distributed`'s name and meaning.
"""
import datetime
import importlib.util
import os

from ..cuda import device_count
from ..tensor.backend import Device
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
    rendezvous = None     # the launcher-less rendezvous (standalone.py), closed with the world


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


class Backend(str):
    """A backend's name, as torch.distributed.Backend: `Backend("NCCL") == "nccl"`, the
    constants `Backend.NCCL`, `Backend.GLOO`, `Backend.MPI` (and Phalanx's `ZMQ`, `LOCAL`);
    an unknown name is lower-cased (init_process_group says which ones exist)."""
    UNDEFINED = "undefined"
    GLOO = "gloo"
    NCCL = "nccl"
    MPI = "mpi"
    ZMQ = "zmq"
    LOCAL = "local"
    backend_list = [UNDEFINED, GLOO, NCCL, MPI, ZMQ, LOCAL]

    def __new__(cls, name):
        if not isinstance(name, str):
            raise ValueError(f"Backend constructor parameter must be string-ish, got "
                             f"{type(name).__name__}")
        return str.__new__(cls, name.lower())


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
    from .nccl_backend import NcclProcessGroup
    return NcclProcessGroup.create(environment, timeout)


def _gpu_in_use(environment):
    """NCCL is the automatic choice for a job of several ranks when this process already works
    on a GPU (Phalanx loaded CuPy for a CUDA tensor or `px.cuda.set_device`), CuPy finds NCCL,
    and every rank of this node can have a GPU of its own (NCCL refuses two ranks on one GPU;
    MPI moves CuPy arrays then). A world of one stays `local`: its collectives are no-ops."""
    from ..tensor import backend as array_backend
    if array_backend._cupy is None or environment.world_size == 1:
        return False
    try:
        from cupy.cuda import nccl
        count = array_backend._cupy.cuda.runtime.getDeviceCount()
    except Exception:
        return False
    return bool(getattr(nccl, "available", False)) and environment.local_world_size <= count


def _choose(backend, environment):
    if backend is None and (environment.under_mpi or environment.store_endpoint) and \
            _gpu_in_use(environment):
        return "nccl"
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
                f"script.py`, or set MASTER_ADDR and MASTER_PORT (PyTorch's env:// "
                f"rendezvous, rank 0 serving the store).")
        return "local"
    backend = str(backend).lower()
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)} "
                         f"or leave backend=None to pick from the environment")
    return backend


def init_process_group(backend=None, timeout=None, **kwargs):
    """Create the default group. Works with and without a launcher (then: world of one).

    `backend`: None (pick from the environment), 'mpi', 'zmq', 'local' or 'nccl'; 'gloo' is
    taken as None (the zmq backend on CPUs). `timeout` (seconds or timedelta): a collective
    that runs longer aborts the job with a message instead of hanging. Under a launcher, ranks
    come from its environment (`rank`/`world_size` must agree with it). Without one, PyTorch's
    rendezvous works too: `init_method='env://'` with MASTER_ADDR/MASTER_PORT set,
    `init_method='tcp://host:port'`, `init_method='file:///path'`, or `store=`, with `rank` and
    `world_size` given (or RANK and WORLD_SIZE set); see `standalone.py` for how the ranks share
    their token.
    """
    if _state.world is not None:
        raise RuntimeError("init_process_group() was already called in this process; call "
                           "destroy_process_group() first to start a new one")
    environment = _env_mod.detect()
    unknown = set(kwargs) - {"init_method", "rank", "world_size", "store", "group_name",
                             "pg_options", "device_id"}
    if unknown:
        raise TypeError(f"init_process_group() got unexpected arguments {sorted(unknown)}")
    if kwargs.get("pg_options") is not None:
        raise NotImplementedError("init_process_group(pg_options=...) is not supported; leave "
                                  "it None")
    _check_device_id(kwargs.get("device_id"), environment)
    rendezvous = _rendezvous_without_launcher(backend, environment, kwargs, _seconds(timeout))
    if rendezvous is not None:
        environment = rendezvous.environment
    else:
        init_method = kwargs.get("init_method")
        if init_method not in (None, "env://"):
            raise ValueError(f"init_method={init_method!r} is not supported under a launcher: "
                             f"Phalanx finds the ranks in the environment of its launcher "
                             f"(mpirun, phalanx run); drop init_method or pass 'env://'")
        for name, value in (("rank", environment.rank),
                            ("world_size", environment.world_size)):
            given = kwargs.get(name, -1)
            if given not in (-1, None) and given != value:
                raise ValueError(f"init_process_group({name}={given}) disagrees with the "
                                 f"launcher's {name}={value}; drop the argument and let the "
                                 f"launcher decide")
    name = _choose(backend, environment)
    debug.configure_from_env()
    threads.share_cores(environment.local_world_size, announce=environment.local_rank == 0)
    try:
        world = BACKENDS[name](environment, _seconds(timeout))
    except BaseException:
        if rendezvous is not None:
            rendezvous.close()
        raise
    _state.world, _state.env, _state.groups = world, environment, []
    _state.rendezvous = rendezvous
    if name in ("mpi", "nccl") and world.size > 1:
        from . import abort
        abort.install(world)
    return None


def _check_device_id(device_id, environment):
    """`init_process_group(device_id=...)` names this process's GPU. Phalanx's is fixed (local
    rank modulo the GPU count, see nccl_backend.py): that one, or a CPU, is accepted; another
    raises rather than being ignored."""
    if device_id is None:
        return
    device = Device(f"cuda:{device_id}") if isinstance(device_id, int) else Device(device_id)
    if device.type == "cpu":
        return
    count = device_count()
    if count == 0:
        raise ValueError(f"init_process_group(device_id={device_id!r}): no usable GPU here; "
                         f"drop device_id or pass a CPU device")
    if device.index is None:
        raise ValueError("Please use a device_id with index.")
    ours = environment.local_rank % count
    if device.index != ours:
        raise NotImplementedError(
            f"init_process_group(device_id={device_id!r}): this rank (local rank "
            f"{environment.local_rank}) works on cuda:{ours} (local rank modulo {count} "
            f"GPUs); pass device_id={ours} or leave it None")


def _rendezvous_without_launcher(backend, environment, kwargs, timeout):
    """PyTorch's own rendezvous (see `standalone.py`) when no launcher connects the ranks:
    a `store=`, `init_method='tcp://...'` or `'file://...'`, or env:// with MASTER_ADDR and
    MASTER_PORT set. None under mpirun or `phalanx run`, and for an MPI backend (MPI connects
    its ranks itself)."""
    from . import standalone     # imports the store (pyzmq): only when it may be needed
    if environment.under_mpi or environment.store_endpoint or \
            str(backend).lower() == "mpi":
        return None
    if kwargs.get("store") is not None:
        return standalone.from_store(kwargs["store"], kwargs.get("rank"),
                                     kwargs.get("world_size"), timeout)
    if str(kwargs.get("init_method")).startswith(standalone.FILE_SCHEME):
        return standalone.from_file(kwargs["init_method"], kwargs.get("rank"),
                                    kwargs.get("world_size"), timeout)
    if standalone.master_from(kwargs.get("init_method"), os.environ) is None:
        return None
    return standalone.start(kwargs.get("init_method"), kwargs.get("rank"),
                            kwargs.get("world_size"), timeout)


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


def get_backend_config(group=None):
    """Which backend serves which device type in `group`, as PyTorch writes it:
    'cpu:mpi,cuda:mpi', 'cuda:nccl', 'cpu:zmq'."""
    pg = resolve(group)
    if pg is None:
        raise ValueError("get_backend_config: this rank is not a member of the group")
    return ",".join(f"{device}:{pg.backend}" for device in pg.device_types)


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


def new_group(ranks=None, timeout=None, backend=None, pg_options=None,
              use_local_synchronization=False, group_desc=None, device_id=None):
    """A group of the given global ranks. Every rank of the world must call it, in the same
    order, and none returns before all have built it; ranks outside `ranks` get
    `GroupMember.NON_GROUP_MEMBER`. The group runs on the world's backend with the world's
    timeout; other values of those PyTorch options raise."""
    world = _world()
    _check_new_group_options(world, timeout, backend, pg_options, use_local_synchronization,
                             device_id)
    ranks = list(range(world.size)) if ranks is None else sorted(int(r) for r in ranks)
    bad = [r for r in ranks if not 0 <= r < world.size]
    if bad or len(set(ranks)) != len(ranks):
        raise ValueError(f"new_group(ranks={ranks}): ranks must be distinct and within the "
                         f"world of {world.size}")
    pg = world.split(ranks)
    # PyTorch's closing world barrier: no rank returns before every member has met its peers,
    # so none can tear down the store through which a slower member is still meeting them
    world.barrier().wait()
    if pg is None:
        return GroupMember.NON_GROUP_MEMBER
    pg.group_desc = "undefined" if group_desc is None else group_desc
    _state.groups.append(pg)
    return pg


def new_subgroups(group_size=None, group=None, timeout=None, backend=None, pg_options=None,
                  group_desc=None):
    """Split the world (or `group`) into subgroups of `group_size` consecutive ranks (default:
    this node's GPU count, as in PyTorch); returns (this rank's subgroup, every subgroup).
    Every rank must call it."""
    parent = _world() if group is None else group
    if group_size is None:
        group_size = device_count()
        if group_size == 0:
            raise ValueError("new_subgroups: group_size defaults to the number of GPUs per "
                             "node, and there is none here; pass group_size")
    if group_size <= 0:
        raise ValueError(f"The arg 'group_size' ({group_size}) must be positive")
    ranks = list(parent.ranks)
    if group_size > len(ranks) or len(ranks) % group_size:
        raise ValueError(f"new_subgroups: the group of {len(ranks)} ranks cannot be split into "
                         f"subgroups of {group_size} (group_size must divide it)")
    return new_subgroups_by_enumeration(
        [ranks[i:i + group_size] for i in range(0, len(ranks), group_size)], timeout=timeout,
        backend=backend, pg_options=pg_options, group_desc=group_desc)


def new_subgroups_by_enumeration(ranks_per_subgroup_list, timeout=None, backend=None,
                                 pg_options=None, group_desc=None):
    """One subgroup per list of global ranks, each rank in at most one; returns (this rank's
    subgroup, or None where it is in none; every subgroup, NON_GROUP_MEMBER for those this rank
    is outside of). Every rank must call it."""
    if not ranks_per_subgroup_list:
        raise ValueError("The arg 'ranks_per_subgroup_list' cannot be empty")
    seen = {}
    for ranks in ranks_per_subgroup_list:
        for r in ranks:
            if r in seen:
                raise ValueError(f"Rank {r} has appeared in both subgroup {seen[r]} and "
                                 f"{list(ranks)}")
            seen[r] = list(ranks)
    rank, mine, subgroups = get_rank(), None, []
    for i, ranks in enumerate(ranks_per_subgroup_list):
        desc = None if group_desc is None else f"{group_desc}_{i}"
        subgroups.append(new_group(ranks, timeout=timeout, backend=backend,
                                   pg_options=pg_options, group_desc=desc))
        if rank in ranks:
            mine = subgroups[-1]
    return mine, subgroups


def _check_new_group_options(world, timeout, backend, pg_options, use_local_synchronization,
                             device_id):
    """new_group's PyTorch options that Phalanx's subgroups cannot honour raise, naming it."""
    if backend is not None:
        name = str(backend).lower()
        cpu_world = world.backend in ("mpi", "zmq", "local")
        if not (name == world.backend or (name == "gloo" and cpu_world)):
            raise NotImplementedError(
                f"new_group(backend={backend!r}): a subgroup runs on the world's backend "
                f"{world.backend!r}; pass backend=None")
    world_timeout = getattr(world, "timeout", None)   # None: a world of one never waits
    if timeout is not None and world_timeout is not None and _seconds(timeout) != world_timeout:
        raise NotImplementedError(
            f"new_group(timeout={timeout!r}): a subgroup has the world's timeout "
            f"({world_timeout} s, set by init_process_group(timeout=...)); pass timeout=None")
    for name, value, default in (("pg_options", pg_options, None),
                                 ("use_local_synchronization", use_local_synchronization, False),
                                 ("device_id", device_id, None)):
        if value != default:
            raise NotImplementedError(f"new_group({name}={value!r}) is not supported; leave it "
                                      f"{default!r}")


def destroy_process_group(group=None):
    """Tear down `group`, or (default) every group and the world."""
    if group is None:
        groups, world = _state.groups, _state.world
        for pg in groups + ([world] if world is not None else []):
            pg.shutdown()
        _state.world, _state.env, _state.groups = None, None, []
        if _state.rendezvous is not None:
            _state.rendezvous.close()
            _state.rendezvous = None
        from . import abort
        abort.uninstall()
    elif group is not GroupMember.NON_GROUP_MEMBER:
        group.shutdown()
        if group in _state.groups:
            _state.groups.remove(group)


def is_mpi_available():
    """Whether the MPI backend can be used: mpi4py is installed (it is imported only when a
    group is made)."""
    return importlib.util.find_spec("mpi4py") is not None


def is_nccl_available():
    """Whether CuPy with NCCL is there (this imports CuPy when it is installed)."""
    if importlib.util.find_spec("cupy") is None:
        return False
    try:
        from cupy.cuda import nccl
    except Exception:
        return False
    return bool(getattr(nccl, "available", False))


def is_gloo_available():
    """'gloo' names the CPU backend over ZeroMQ here; it is there when pyzmq is."""
    return importlib.util.find_spec("zmq") is not None


def is_ucc_available():
    return False        # no UCC backend here


def is_xccl_available():
    return False        # nor Intel's XCCL


def get_default_backend_for_device(device):
    """The backend PyTorch pairs with a device type: 'gloo' for the CPU (here: the CPU backend
    init_process_group picks, ZeroMQ or MPI), 'nccl' for CUDA."""
    kind = device.type if isinstance(device, Device) else str(device).split(":")[0]
    backends = {"cpu": "gloo", "cuda": "nccl"}
    if kind not in backends:
        raise RuntimeError(f"get_default_backend_for_device({device!r}): Phalanx has backends "
                           f"for 'cpu' and 'cuda' devices only")
    return backends[kind]


def get_pg_count():
    """How many process groups exist: the default one and those new_group() made."""
    return 0 if _state.world is None else 1 + len(_state.groups)


def is_backend_available(backend):
    name = str(backend).lower()
    checks = {"mpi": is_mpi_available, "nccl": is_nccl_available, "gloo": is_gloo_available,
              "zmq": is_gloo_available}
    return checks[name]() if name in checks else name in BACKENDS


def is_torchelastic_launched():
    """True in a process started by an elastic launcher (`phalanx run`, or torchrun's
    variable), as PyTorch's check of TORCHELASTIC_RUN_ID."""
    return bool(os.environ.get("PHALANX_RUN_ID") or os.environ.get("TORCHELASTIC_RUN_ID"))


def get_node_local_rank(fallback_rank=None):
    """LOCAL_RANK from the launcher's environment, else `fallback_rank`, as in PyTorch."""
    if "LOCAL_RANK" in os.environ:
        return int(os.environ["LOCAL_RANK"])
    if fallback_rank is not None:
        return int(fallback_rank)
    raise RuntimeError("LOCAL_RANK is not in the environment; pass fallback_rank= or start "
                       "the job with `phalanx run` (or torchrun), which sets it")
