"""Debug mode (`PHALANX_DEBUG=1`): check that every rank calls the same collective alike.

Before each collective, the ranks of the group exchange a signature (verb, shape, dtype and
the arguments that must agree); if any differ, every rank raises `CollectiveMismatchError`
naming the ranks and the values, instead of hanging or corrupting memory. It costs one extra
small exchange per collective, so it is off unless asked for: `PHALANX_DEBUG` is read when the
process group is created (`init_process_group`), or call `set_enabled(True)`.
"""
import os


class CollectiveMismatchError(RuntimeError):
    """Ranks called different collectives, or the same one with different shapes/dtypes."""


_enabled = False


def enabled():
    return _enabled


def set_enabled(flag=True):
    global _enabled
    _enabled = bool(flag)


def configure_from_env():
    set_enabled(os.environ.get("PHALANX_DEBUG", "0").lower() not in ("", "0", "false", "no",
                                                                      "off"))


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
