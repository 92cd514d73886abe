"""Who am I? Rank and world found from the environment a launcher left us.

Sources are tried in a fixed order: Phalanx's launcher (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
`LOCAL_WORLD_SIZE`, the same names torchrun uses), Open MPI (`OMPI_COMM_WORLD_*`), MPICH/Hydra
and other PMI launchers (`PMI_RANK`, `PMI_SIZE`, `MPI_LOCALRANKID`, `MPI_LOCALNRANKS`), Slurm
(`SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`, ...). With none of them the process is a world
of one. Nothing here imports MPI: reading the environment must stay cheap.
"""
import os
import re
from dataclasses import dataclass

MPI_MARKERS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")


@dataclass(frozen=True)
class Environment:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    source: str = "none"          # phalanx | openmpi | mpich | slurm | none, or standalone |
    #                               store: no launcher, PyTorch's rendezvous (standalone.py)
    under_mpi: bool = False       # started by mpirun/mpiexec/srun with an MPI process manager
    store_endpoint: str = None    # set by `phalanx run`: the rendezvous store

    @property
    def is_single(self):
        return self.world_size == 1 and not self.under_mpi


def _int(environ, name, default=None):
    value = environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer; "
                         f"unset it or fix the launcher that set it") from None


def _slurm_local_size(environ):
    """`SLURM_STEP_TASKS_PER_NODE` looks like `2(x3),1`; pick this node's entry."""
    spec = environ.get("SLURM_STEP_TASKS_PER_NODE") or environ.get("SLURM_TASKS_PER_NODE")
    node = _int(environ, "SLURM_NODEID", 0)
    if not spec:
        return None
    counts = []
    for part in spec.split(","):
        m = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part.strip())
        if not m:
            return None
        counts += [int(m.group(1))] * int(m.group(2) or 1)
    return counts[node] if node < len(counts) else None


def detect(environ=None):
    """Read rank, world size and local rank from the first launcher that set them."""
    env = os.environ if environ is None else environ
    under_mpi = any(k in env for k in MPI_MARKERS)
    store = env.get("PHALANX_STORE_ENDPOINT") or None
    sources = (
        ("phalanx", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"),
        ("openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
         "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"),
        ("mpich", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
        ("slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", None),
    )
    for source, r, w, lr, lw in sources:
        rank, world = _int(env, r), _int(env, w)
        if rank is None or world is None:
            continue
        if not 0 <= rank < world:
            raise ValueError(f"{source} launcher variables are inconsistent: {r}={rank}, "
                             f"{w}={world}; expected 0 <= rank < world size")
        local_rank = _int(env, lr, None)
        local_world = _int(env, lw, None) if lw else _slurm_local_size(env)
        if local_rank is None:
            local_rank, local_world = (rank, world) if local_world is None else (rank % local_world,
                                                                               local_world)
        if local_world is None:
            local_world = world
        if source == "slurm":  # srun with PMIx/PMI2 runs MPI; srun alone still needs it
            under_mpi = True
        return Environment(rank, world, local_rank, local_world, source, under_mpi, store)
    return Environment(under_mpi=under_mpi, store_endpoint=store)
