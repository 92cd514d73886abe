"""`DeviceMesh` and `init_device_mesh` (`torch.distributed.device_mesh`): the ranks laid out as
an n-dimensional array, with one process group per line along each dimension.

    mesh = init_device_mesh("cpu", (2, 4), mesh_dim_names=("dp", "tp"))
    mesh["dp"].get_group()       # this rank and the 1 other with the same "tp" coordinate
    DistributedDataParallel(model, device_mesh=mesh["dp"])

Making a mesh is collective: every rank of the world creates every group, in the same order
(`new_group`'s rule). Slicing a mesh by dimension names (`mesh["tp"]`, `mesh["dp", "tp"]`)
reuses its groups.
"""
import numpy as np

from .world import (GroupMember, _world, get_rank, get_world_size, init_process_group,
                    is_initialized, new_group)


class DeviceMesh:
    """`mesh`: the global ranks (a tensor, array or nested list), one element per device;
    `mesh_dim_names`: a name per dimension, for slicing."""

    def __init__(self, device_type, mesh=None, *, mesh_dim_names=None, backend_override=None,
                 _init_backend=True):
        if mesh is None:
            raise TypeError("DeviceMesh needs `mesh`, the ranks laid out as an n-dimensional "
                            "array (or use init_device_mesh(device_type, mesh_shape))")
        if backend_override is not None:
            raise NotImplementedError("DeviceMesh(backend_override=...): every group runs on "
                                      "the world's backend; pass None")
        if not _init_backend:
            raise NotImplementedError("DeviceMesh(_init_backend=False) is not supported: the "
                                      "mesh's groups are made when it is")
        ranks = np.asarray(mesh.tolist() if hasattr(mesh, "tolist") else mesh)
        if ranks.size == 0 or ranks.dtype.kind not in "iu":
            raise ValueError(f"DeviceMesh: mesh must be a non-empty array of integer ranks, "
                             f"got {mesh!r}")
        if ranks.ndim == 0:
            ranks = ranks.reshape(1)
        _check_names(mesh_dim_names, ranks.shape)
        _init_world(device_type)
        world = get_world_size()
        flat = ranks.ravel().tolist()
        if len(set(flat)) != len(flat) or min(flat) < 0 or max(flat) >= world:
            raise RuntimeError(f"DeviceMesh: the mesh {ranks.tolist()} must hold distinct "
                               f"ranks of the world of {world}")
        self.device_type = device_type
        self._ranks = ranks
        self.mesh_dim_names = None if mesh_dim_names is None else tuple(mesh_dim_names)
        self._groups = [_line_groups(ranks, dim) for dim in range(ranks.ndim)]

    @classmethod
    def _slice(cls, parent, dims, ranks):
        self = cls.__new__(cls)
        self.device_type = parent.device_type
        self._ranks = ranks
        self.mesh_dim_names = None if parent.mesh_dim_names is None else \
            tuple(parent.mesh_dim_names[d] for d in dims)
        self._groups = [parent._groups[d] for d in dims]
        # the mesh it was cut from, and which of its dims these are (FSDP over TP builds
        # its parameters' 2-D layout from the two slices)
        self._root = getattr(parent, "_root", None) or parent
        root_dims = getattr(parent, "_root_dims", None) or list(range(parent.ndim))
        self._root_dims = [root_dims[d] for d in dims]
        return self

    @staticmethod
    def from_group(group, device_type, mesh=None, *, mesh_dim_names=None):
        """A mesh over an existing group (or one group per dimension, given as a list, with
        `mesh` laying out their ranks); no group is created."""
        from .world import get_process_group_ranks
        groups = list(group) if isinstance(group, (list, tuple)) else [group]
        if mesh is None:
            if len(groups) != 1:
                raise ValueError("DeviceMesh.from_group: pass `mesh` with more than one group")
            mesh = get_process_group_ranks(groups[0])
        ranks = np.asarray(mesh.tolist() if hasattr(mesh, "tolist") else mesh)
        if ranks.ndim != len(groups):
            raise ValueError(f"DeviceMesh.from_group: {len(groups)} group(s) for a "
                             f"{ranks.ndim}-dimensional mesh; give one group per dimension")
        _check_names(mesh_dim_names, ranks.shape)
        self = DeviceMesh.__new__(DeviceMesh)
        self.device_type, self._ranks = device_type, ranks
        self.mesh_dim_names = None if mesh_dim_names is None else tuple(mesh_dim_names)
        self._groups = groups
        return self

    # --- what it is --------------------------------------------------------------------
    @property
    def mesh(self):
        from .. import tensor, int32
        return tensor(self._ranks, dtype=int32)

    @property
    def ndim(self):
        return self._ranks.ndim

    @property
    def shape(self):
        return tuple(self._ranks.shape)

    def size(self, mesh_dim=None):
        return self._ranks.size if mesh_dim is None else self._ranks.shape[self._dim(mesh_dim)]

    def get_rank(self):
        """This process's global rank."""
        return get_rank()

    def get_coordinate(self):
        """This rank's index in the mesh (a tuple), or None if it is not in the mesh."""
        where = np.argwhere(self._ranks == get_rank())
        return tuple(int(i) for i in where[0]) if len(where) else None

    def get_local_rank(self, mesh_dim=None):
        """This rank's coordinate along `mesh_dim` (its rank in that dimension's group)."""
        dim = self._needs_dim(mesh_dim, "get_local_rank")
        coordinate = self.get_coordinate()
        if coordinate is None:
            raise RuntimeError(f"rank {get_rank()} is not in the mesh {self._ranks.tolist()}")
        return coordinate[dim]

    def get_group(self, mesh_dim=None):
        """The process group along `mesh_dim` (an index or name; optional for a 1-D mesh)
        that holds this rank."""
        dim = self._needs_dim(mesh_dim, "get_group")
        return self._groups[dim]

    def get_all_groups(self):
        return list(self._groups)

    def __getitem__(self, names):
        """The sub-mesh through this rank along the named dimensions, in the order given."""
        names = (names,) if isinstance(names, str) else tuple(names)
        if self.mesh_dim_names is None:
            raise RuntimeError("Cannot slice a DeviceMesh without mesh_dim_names")
        bad = [n for n in names if n not in self.mesh_dim_names]
        if bad or len(set(names)) != len(names):
            raise KeyError(f"Invalid mesh_dim_names {names} specified. Valid mesh_dim_names "
                           f"are {list(self.mesh_dim_names)}.")
        dims = [self.mesh_dim_names.index(n) for n in names]
        coordinate = self.get_coordinate()
        if coordinate is None:
            raise RuntimeError(f"rank {get_rank()} is not in the mesh {self._ranks.tolist()}")
        index = tuple(slice(None) if d in dims else coordinate[d] for d in range(self.ndim))
        kept = sorted(dims)
        ranks = np.moveaxis(self._ranks[index], [kept.index(d) for d in dims],
                            list(range(len(dims))))
        return DeviceMesh._slice(self, dims, ranks)

    def _line(self, dim):
        """The 1-D sub-mesh through this rank along dimension `dim` (named or not)."""
        coordinate = self.get_coordinate()
        if coordinate is None:
            raise RuntimeError(f"rank {get_rank()} is not in the mesh {self._ranks.tolist()}")
        index = tuple(slice(None) if d == dim else c for d, c in enumerate(coordinate))
        return DeviceMesh._slice(self, [dim], self._ranks[index])

    def _dim(self, mesh_dim):
        if isinstance(mesh_dim, str):
            if self.mesh_dim_names is None or mesh_dim not in self.mesh_dim_names:
                raise KeyError(f"Mesh dimension '{mesh_dim}' does not exist. Available mesh "
                               f"dimensions are: mesh_dim_names={self.mesh_dim_names}")
            return self.mesh_dim_names.index(mesh_dim)
        if not -self.ndim <= mesh_dim < self.ndim:
            raise IndexError(f"mesh_dim {mesh_dim} is out of range for a {self.ndim}-D mesh")
        return mesh_dim % self.ndim

    def _needs_dim(self, mesh_dim, what):
        if mesh_dim is None:
            if self.ndim > 1:
                raise RuntimeError(f"{what}: the DeviceMesh has {self.ndim} dimensions; pass "
                                   f"mesh_dim (an index or one of {self.mesh_dim_names})")
            return 0
        return self._dim(mesh_dim)

    # --- identity and printing ---------------------------------------------------------
    def __eq__(self, other):
        return isinstance(other, DeviceMesh) and self.device_type == other.device_type and \
            self._ranks.shape == other._ranks.shape and \
            bool((self._ranks == other._ranks).all()) and \
            self.mesh_dim_names == other.mesh_dim_names

    def __hash__(self):
        return hash((self.device_type, self._ranks.shape, tuple(self._ranks.ravel().tolist()),
                     self.mesh_dim_names))

    def __repr__(self):
        if self.mesh_dim_names is None:
            layout = str(self.shape)
        else:
            layout = "(" + ", ".join(f"{n}={s}" for n, s in zip(self.mesh_dim_names,
                                                                self.shape)) + ")"
        return f"DeviceMesh({layout}, {self.device_type!r}, ranks={self._ranks.tolist()})"


def init_device_mesh(device_type, mesh_shape, *, mesh_dim_names=None, backend_override=None):
    """A mesh of the whole world in row-major order (`mesh_shape` must multiply to the world
    size); initialises the default process group first if needed, as PyTorch does."""
    mesh_shape = tuple(int(s) for s in mesh_shape)
    if mesh_dim_names is not None and len(mesh_dim_names) != len(mesh_shape):
        raise RuntimeError(f"mesh_shape and mesh_dim_names should have same length! Found "
                           f"len(mesh_dim_names): {len(mesh_dim_names)} and len(mesh_shape):"
                           f"{len(mesh_shape)}.")
    _init_world(device_type)
    world = get_world_size()
    total = int(np.prod(mesh_shape)) if mesh_shape else 0
    if total != world:
        raise RuntimeError(f"init_device_mesh: mesh_shape {mesh_shape} holds {total} ranks; "
                           f"the world has {world}. Make the shape multiply to {world}.")
    return DeviceMesh(device_type, np.arange(world).reshape(mesh_shape),
                      mesh_dim_names=mesh_dim_names, backend_override=backend_override)


def _world_mesh(device_type="cpu"):
    """The 1-D mesh of the whole world, in rank order: what DTensor and fully_shard use when
    given no mesh (its group is the default group, so making it is free)."""
    _init_world(device_type)
    return DeviceMesh(device_type, np.arange(get_world_size()))


def _init_world(device_type):
    if device_type not in ("cpu", "cuda"):
        raise ValueError(f"DeviceMesh: device_type must be 'cpu' or 'cuda', got "
                         f"{device_type!r}")
    if not is_initialized():
        init_process_group()
    if device_type == "cuda":
        from .. import cuda
        from .world import get_local_rank
        if not cuda.is_available():
            raise RuntimeError("DeviceMesh('cuda'): no usable GPU here (phalanx.cuda."
                               "is_available() is False); use device_type='cpu'")
        cuda.set_device(get_local_rank() % cuda.device_count())


def _check_names(names, shape):
    if names is None:
        return
    if len(names) != len(shape):
        raise RuntimeError(f"mesh_dim_names {tuple(names)} must name each of the mesh's "
                           f"{len(shape)} dimensions")
    if len(set(names)) != len(names):
        raise RuntimeError(f"mesh_dim_names {tuple(names)} must be unique")


def _line_groups(ranks, dim):
    """Create the groups of every line of `ranks` along `dim` (collective: all ranks make
    all of them, in the same order); returns the one holding this rank, or
    NON_GROUP_MEMBER."""
    lines = np.moveaxis(ranks, dim, -1).reshape(-1, ranks.shape[dim])
    mine, me, world = GroupMember.NON_GROUP_MEMBER, get_rank(), get_world_size()
    for line in lines.tolist():
        # a line of the whole world in order is the default group (as PyTorch reuses it)
        group = _world() if line == list(range(world)) else new_group(line)
        if me in line:
            mine = group
    return mine
