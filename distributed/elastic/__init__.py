"""Elastic training state: commit after a step, resume there after a restart.

    state = elastic.State("ckpt/state.px", model=model, optimizer=opt, sampler=sampler,
                          step=0, epoch=0)

    @elastic.run
    def train(state):
        while state.step < total_steps:
            ...one step...
            state.step += 1
            state.commit()

    train(state)

`commit()` snapshots everything in memory and has rank 0 write it to `path` atomically
(`phalanx.save`), so when `phalanx run` restarts the group after a failure, `run` restores the
last committed step — model, optimizer, sampler epoch, counters and the random generators — and
the run ends with the same weights as one that never failed. Objects are saved through their
`state_dict()` / `load_state_dict()`; plain numbers (step, epoch, ...) are attributes.
"""
import copy
import functools
import os
import random
import sys

import numpy as np

__all__ = ["State", "run"]


def _rank():
    from ..env import detect
    return detect().rank


def _barrier():
    from .. import collectives, world
    if world.is_initialized() and world.get_world_size() > 1:
        collectives.barrier()


def _rng_state():
    import phalanx
    np_state = np.random.get_state()
    py_version, py_keys, py_gauss = random.getstate()
    return {
        "phalanx": phalanx.get_rng_state(),
        "numpy_keys": np.asarray(np_state[1], dtype=np.uint32),
        "numpy_pos": int(np_state[2]),
        "numpy_gauss": [int(np_state[3]), float(np_state[4])],
        "python_keys": np.asarray(py_keys, dtype=np.uint32),
        "python_meta": [int(py_version), py_gauss],
    }


def _set_rng_state(state):
    import phalanx
    phalanx.set_rng_state(state["phalanx"])
    has_gauss, gauss = state["numpy_gauss"]
    np.random.set_state(("MT19937", np.asarray(state["numpy_keys"], dtype=np.uint32),
                         int(state["numpy_pos"]), int(has_gauss), float(gauss)))
    version, py_gauss = state["python_meta"]
    random.setstate((int(version), tuple(int(k) for k in np.asarray(state["python_keys"])),
                     py_gauss))


class State:
    """The objects and counters that define where training is.

    `path`: the checkpoint file rank 0 writes on `commit()` (None: keep commits in memory only,
    which survives nothing but an in-process retry). Keyword arguments with a `state_dict` method
    (model, optimizer, scheduler, ...) are saved through it; a sampler without one has its epoch
    saved and `set_epoch` called on restore; anything else must be a number or a string and
    becomes an attribute (`state.step`).
    """

    def __init__(self, path=None, *, save_rng=True, **entries):
        object.__setattr__(self, "_objects", {})
        object.__setattr__(self, "_values", {})
        self.path = path
        self.save_rng = save_rng
        self._committed = None
        for name, value in entries.items():
            if hasattr(value, "state_dict") and hasattr(value, "load_state_dict"):
                self._objects[name] = value
            elif hasattr(value, "set_epoch"):
                self._objects[name] = value
                self._values.setdefault("epoch", getattr(value, "epoch", 0))
            elif isinstance(value, (int, float, str, bool)):
                self._values[name] = value
            else:
                raise TypeError(f"elastic.State: {name}={type(value).__name__} has no "
                                f"state_dict()/load_state_dict() and is not a number or string; "
                                f"wrap it in an object that has them")

    def __getattr__(self, name):
        values = self.__dict__.get("_values", {})
        if name in values:
            return values[name]
        objects = self.__dict__.get("_objects", {})
        if name in objects:
            return objects[name]
        raise AttributeError(f"elastic.State has no entry {name!r}; pass {name}=... when "
                             f"creating it")

    def __setattr__(self, name, value):
        if name in self._values:
            self._values[name] = value
        else:
            object.__setattr__(self, name, value)

    # -- what is saved ------------------------------------------------------------------------
    def state_dict(self):
        objects = {}
        for name, obj in self._objects.items():
            if hasattr(obj, "state_dict"):
                objects[name] = obj.state_dict()
        state = {"objects": objects, "values": dict(self._values)}
        if self.save_rng:
            state["rng"] = _rng_state()
        return state

    def load_state_dict(self, state):
        for name, obj in self._objects.items():
            if hasattr(obj, "load_state_dict") and name in state["objects"]:
                obj.load_state_dict(state["objects"][name])
        self._values.update(state["values"])
        for obj in self._objects.values():
            if not hasattr(obj, "state_dict") and "epoch" in self._values:
                obj.set_epoch(self._values["epoch"])       # a sampler without state_dict
        if self.save_rng and "rng" in state:
            _set_rng_state(state["rng"])

    # -- commit / save / restore ----------------------------------------------------------------
    def commit(self):
        """Mark this point as the one to resume from: in memory, and on disk by rank 0.

        Every rank calls it. With a path and a process group of several ranks it ends in a
        barrier, so once `commit()` returned anywhere the commit is on disk: a rank that fails
        afterwards can never make the group resume from an older one."""
        self._committed = copy.deepcopy(self.state_dict())
        if self.path is not None:
            if _rank() == 0:
                self.save(self.path, self._committed)
            _barrier()

    def save(self, path=None, state=None):
        """Write the state (now, or the given snapshot) to `path` atomically."""
        import phalanx
        path = path or self.path
        if path is None:
            raise ValueError("elastic.State.save needs a path: State(path=...) or save(path)")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        phalanx.save(state if state is not None else self.state_dict(), path)

    def restore(self):
        """Go back to the last commit: the file at `path` if there is one, else the in-memory
        snapshot. Returns True if something was restored."""
        if self.path is not None and os.path.exists(self.path):
            import phalanx
            self.load_state_dict(phalanx.load(self.path))
            return True
        if self._committed is not None:
            self.load_state_dict(copy.deepcopy(self._committed))
            return True
        return False

    def __repr__(self):
        return (f"elastic.State(path={self.path!r}, objects={list(self._objects)}, "
                f"values={self._values})")


def run(train_fn):
    """Decorate `train_fn(state, ...)`: it starts from the last committed state, so a group that
    `phalanx run` restarted after a failure continues where the previous attempt committed."""
    @functools.wraps(train_fn)
    def wrapper(state, *args, **kwargs):
        if state.restore():
            restarts = os.environ.get("RESTART_COUNT", "0")
            print(f"[phalanx.elastic] resumed from {state.path or 'memory'} at "
                  f"{state._values} (restart {restarts})", file=sys.stderr, flush=True)
        return train_fn(state, *args, **kwargs)
    return wrapper
