"""Grad mode: whether ops record the graph. Thread-local, as in PyTorch."""
import functools
import threading

class _State(threading.local):
    enabled = True  # class-level defaults: every thread starts with grad mode on
    inference = False


_state = _State()


def is_grad_enabled():
    return _state.enabled


def _set(enabled):
    _state.enabled = bool(enabled)


def is_inference_mode_enabled():
    return _state.inference


class _Mode:
    """Base of the grad-mode context managers; each also works as a decorator."""

    def _target(self):  # the grad-enabled value inside the context
        raise NotImplementedError

    def __enter__(self):
        self._prev = is_grad_enabled()
        _set(self._target())
        return self

    def __exit__(self, *exc):
        _set(self._prev)
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self.__class__(*self._args()):
                return fn(*args, **kwargs)
        return wrapper

    def _args(self):
        return ()


class no_grad(_Mode):
    """Disable graph recording: `with px.no_grad():` or `@px.no_grad()`."""

    def _target(self):
        return False


class enable_grad(_Mode):
    def _target(self):
        return True


class set_grad_enabled(_Mode):
    def __init__(self, mode):
        self.mode = bool(mode)
        # like PyTorch, calling it as a function takes effect immediately
        self._prev = is_grad_enabled()
        _set(self.mode)

    def _target(self):
        return self.mode

    def __enter__(self):
        return self  # already applied in __init__

    def __call__(self, fn):
        _set(self._prev)  # used as a decorator: undo the immediate effect of __init__
        return super().__call__(fn)

    def _args(self):
        return (self.mode,)


_multithreading = [True]


class set_multithreading_enabled:
    """PyTorch's switch of multithreaded backward (accelerator worker threads); it applies at
    once and, as a context manager, until the block ends. Phalanx's engine always runs
    backward on the calling thread, which is what mode=False asks for and what PyTorch does on
    the CPU either way, so both modes compute the same; the mode is kept to be read back."""

    def __init__(self, mode):
        self.prev, self.mode = _multithreading[0], bool(mode)
        _multithreading[0] = self.mode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _multithreading[0] = self.prev
        return False

    def clone(self):
        return self.__class__(self.mode)


def is_multithreading_enabled():
    return _multithreading[0]


class inference_mode(_Mode):
    """No graph recording, and tensors made here are marked as inference tensors."""

    def __init__(self, mode=True):
        self.mode = bool(mode)

    def _target(self):
        return not self.mode and is_grad_enabled()

    def __enter__(self):
        self._prev_inf = is_inference_mode_enabled()
        _state.inference = self.mode
        return super().__enter__()

    def __exit__(self, *exc):
        _state.inference = self._prev_inf
        return super().__exit__(*exc)

    def _args(self):
        return (self.mode,)
