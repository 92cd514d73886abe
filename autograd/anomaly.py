"""Anomaly mode: each node records where its forward ran; a backward that fails names it
(a warning with that stack, then the error), and with check_nan a NaN gradient raises."""
import threading


class _State(threading.local):
    enabled = False
    check_nan = True


_state = _State()


def is_anomaly_enabled():
    return _state.enabled


def is_anomaly_check_nan_enabled():
    return _state.check_nan


def set_anomaly_enabled(enabled, check_nan=True):
    """PyTorch's switch: anomaly mode records each node's forward stack and names it when
    the node's backward fails; `check_nan` also raises on NaN/Inf gradients."""
    _state.enabled, _state.check_nan = bool(enabled), bool(check_nan)


class detect_anomaly:
    """Context manager / decorator: anomaly mode on inside. Slows every op (it records a
    stack per node): debug only."""

    def __init__(self, check_nan=True):
        self.check_nan = check_nan

    def __enter__(self):
        self._prev = (_state.enabled, _state.check_nan)
        set_anomaly_enabled(True, self.check_nan)
        return self

    def __exit__(self, *exc):
        set_anomaly_enabled(*self._prev)
        return False

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*a, **k):
            with detect_anomaly(self.check_nan):
                return fn(*a, **k)
        return wrapper


class set_detect_anomaly:
    """Sets anomaly mode at once, as a call; as a context manager, restores the previous
    mode on exit (PyTorch's class of the same name)."""

    def __init__(self, mode, check_nan=True):
        self._prev = (_state.enabled, _state.check_nan)
        set_anomaly_enabled(mode, check_nan)

    def __enter__(self):
        return None

    def __exit__(self, *exc):
        set_anomaly_enabled(*self._prev)
        return False


def report_failure(node):
    """A node's backward raised in anomaly mode: say where its forward ran (then the error
    propagates), as PyTorch's warning does."""
    import warnings
    where = node.forward_stack or "(not recorded: the forward ran outside anomaly mode)\n"
    warnings.warn(f"Error detected in {node.name()}. Traceback of forward call that caused "
                  f"the error:\n{where}", UserWarning, stacklevel=2)


def check_grads(node, grads):
    """Called by the engine after `node` ran backward, in anomaly mode with check_nan."""
    for i, g in enumerate(grads):
        if g is None:
            continue
        arr = g._data
        if arr.dtype.kind in "fc" and bool((arr != arr).any()):    # NaN only, as PyTorch
            where = node.forward_stack or "(forward stack not recorded: the forward ran " \
                                          "outside anomaly mode)\n"
            raise RuntimeError(
                f"Function '{node.name()}' returned nan values in its {i}th output "
                f"(gradient of input {i}, shape {tuple(g.shape)}). The forward op was created "
                f"at:\n{where}")
