"""Debug mode (`PHALANX_DEBUG=1`): check that every rank calls the same collective alike.

Before each collective, the ranks of the group exchange a signature (verb, shape, dtype and
the arguments that must agree); if any differ, every rank raises `CollectiveMismatchError`
naming the ranks and the values, instead of hanging or corrupting memory. It costs one extra
small exchange per collective, so it is off unless asked for: `PHALANX_DEBUG=1` or PyTorch's
`TORCH_DISTRIBUTED_DEBUG=DETAIL` is read when the process group is created
(`init_process_group`), or call `set_debug_level(DebugLevel.DETAIL)`.
"""
import enum
import os

from .errors import DistError


class CollectiveMismatchError(DistError):
    """Ranks called different collectives, or the same one with different shapes/dtypes."""


class DebugLevel(enum.Enum):
    """PyTorch's levels (TORCH_DISTRIBUTED_DEBUG). DETAIL turns the checks above on; INFO adds
    log lines about DDP's setup in PyTorch, which Phalanx has none of, so it checks nothing."""
    OFF = 0
    INFO = 1
    DETAIL = 2


_level = DebugLevel.OFF
_enabled = False        # _level is DETAIL (read on every collective)


def enabled():
    return _enabled


def set_enabled(flag=True):
    set_debug_level(DebugLevel.DETAIL if flag else DebugLevel.OFF)


def get_debug_level():
    return _level


def set_debug_level(level):
    global _level, _enabled
    if not isinstance(level, DebugLevel):
        raise TypeError(f"set_debug_level: expected a DebugLevel (OFF, INFO, DETAIL), got "
                        f"{level!r}")
    _level, _enabled = level, level is DebugLevel.DETAIL


def set_debug_level_from_env():
    """The level TORCH_DISTRIBUTED_DEBUG names (OFF when unset)."""
    value = os.environ.get("TORCH_DISTRIBUTED_DEBUG", "OFF")
    if value.upper() not in DebugLevel.__members__:
        raise ValueError(f"The value of TORCH_DISTRIBUTED_DEBUG must be OFF, INFO, or DETAIL, "
                         f"got {value!r}")
    set_debug_level(DebugLevel[value.upper()])


def configure_from_env():
    """Read when the process group is created: TORCH_DISTRIBUTED_DEBUG sets the level,
    PHALANX_DEBUG (1/0) turns the checks on or off; with neither set the level stays."""
    if "TORCH_DISTRIBUTED_DEBUG" in os.environ:
        set_debug_level_from_env()
    flag = os.environ.get("PHALANX_DEBUG")
    if flag is not None:
        set_enabled(flag.lower() not in ("", "0", "false", "no", "off"))


_counts = {}   # id(group) -> number of collectives checked on it


def _show(sig):
    verb, fields = sig[0], sig[1:]
    return f"{verb}(" + ", ".join(f"{k}={tuple(v) if isinstance(v, list) else v}"
                                  for k, v in fields) + ")"


def check(group, verb, **fields):
    """Raise on every rank of `group` unless all of them pass equal `verb` and `fields`."""
    n = _counts.get(id(group), 0) + 1
    _counts[id(group)] = n
    sig = [verb] + [[k, _plain(v)] for k, v in sorted(fields.items())]
    sigs = group.allgather_plain(sig)      # msgpack: nothing a peer sends is unpickled
    if all(s == sigs[0] for s in sigs):
        return
    variants = {}
    for rank, s in enumerate(sigs):
        variants.setdefault(repr(s), (s, []))[1].append(group.ranks[rank])
    lines = [f"  rank{'s' if len(r) > 1 else ''} {', '.join(map(str, r))}: {_show(s)}"
             for s, r in variants.values()]
    raise CollectiveMismatchError(
        f"collective #{n} on {group.backend} group of {group.size} ranks does not match "
        f"across ranks:\n" + "\n".join(lines) + "\nEvery rank must call the same collectives "
        f"in the same order with the same shapes and dtypes (check rank-dependent branches "
        f"and uneven data shards).")


def _plain(v):
    """A msgpack-able, comparable, readable form of a signature field."""
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if hasattr(v, "name") and not isinstance(v, (str, int, float)):
        return v.name
    return v if isinstance(v, (str, int, float, bool, type(None))) else str(v)
