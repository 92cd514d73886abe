"""Anomaly mode: NaN/Inf in a backward output raises, naming the op and where it was created."""
import threading

class _State(threading.local):
    enabled = False


_state = _State()


def is_anomaly_enabled():
    return _state.enabled


class detect_anomaly:
    """Context manager / decorator. Slows every op (it records a stack per node): debug only."""

    def __init__(self, check_nan=True):
        self.check_nan = check_nan

    def __enter__(self):
        self._prev = is_anomaly_enabled()
        _state.enabled = self.check_nan
        return self

    def __exit__(self, *exc):
        _state.enabled = self._prev
        return False

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*a, **k):
            with detect_anomaly(self.check_nan):
                return fn(*a, **k)
        return wrapper


def set_detect_anomaly(mode):
    _state.enabled = bool(mode)


def check_grads(node, grads):
    """Called by the engine after `node` ran backward, in anomaly mode only."""
    for i, g in enumerate(grads):
        if g is None:
            continue
        xp_arr = g._data
        if xp_arr.dtype.kind in "fc" and not bool((abs(xp_arr) < float("inf")).all()):
            where = node.forward_stack or "(forward stack not recorded: the forward ran " \
                                          "outside detect_anomaly)\n"
            raise RuntimeError(
                f"Function '{node.name()}' returned nan or inf values in its {i}th output "
                f"(gradient of input {i}, shape {tuple(g.shape)}). The forward op was created "
                f"at:\n{where}")
