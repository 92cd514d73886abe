"""Anomaly mode as PyTorch's: the switches (`set_detect_anomaly` as a call and as a context
manager, `detect_anomaly(check_nan=...)`, `set_anomaly_enabled`) move the same flags, a
backward that fails names its node and the user's line that ran its forward, and NaN/Inf
gradients raise only with check_nan (an infinite one does not, as in PyTorch)."""
import warnings

import pytest
import torch

import phalanx as px


def _flags(lib):
    return lib.is_anomaly_enabled(), lib.is_anomaly_check_nan_enabled()


@pytest.fixture(autouse=True)
def _anomaly_off_after():
    yield
    px.set_anomaly_enabled(False)
    torch.set_anomaly_enabled(False)


def test_switches_move_the_flags_as_pytorchs():
    seen = {}
    for lib in (px, torch):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")       # PyTorch warns that the mode is slow
            trail = [_flags(lib)]
            lib.autograd.set_detect_anomaly(True, check_nan=False)      # a call
            trail.append(_flags(lib))
            with lib.autograd.set_detect_anomaly(False):               # a context manager
                trail.append(_flags(lib))
            trail.append(_flags(lib))                                   # restored
            with lib.autograd.detect_anomaly():
                trail.append(_flags(lib))
            trail.append(_flags(lib))
            with lib.autograd.detect_anomaly(check_nan=False):
                trail.append(_flags(lib))
            lib.set_anomaly_enabled(False)
            trail.append(_flags(lib))
        seen[lib] = trail
    assert seen[px] == seen[torch]
    assert seen[px][1] == (True, False) and seen[px][-1] == (False, True)


def test_detect_anomaly_decorates_a_function():
    @px.autograd.detect_anomaly(check_nan=False)
    def inside():
        return _flags(px)
    assert inside() == (True, False) and _flags(px) == (False, True)


def _sin_then_changed(lib):
    y = lib.ones(2, 3, requires_grad=True) * 1
    z = y.sin()                      # the user's line the warning must show
    y.add_(1)
    return z


def test_a_failing_backward_names_its_node_and_the_users_forward_line():
    with px.autograd.set_detect_anomaly(True, check_nan=False):
        z = _sin_then_changed(px)
        with pytest.warns(UserWarning, match="Error detected in SinBackward0") as record:
            with pytest.raises(RuntimeError, match=r"saved tensor 0 of SinBackward0 .*which "
                                                   r"is output 0 of AddBackward0, is at "
                                                   r"version 1"):
                z.sum().backward()
    message = str(record[0].message)
    assert "test_anomaly.py" in message and "z = y.sin()" in message
    assert "autograd/function.py" not in message and "tensor/ops" not in message  # user's only
    z = _sin_then_changed(px)                 # outside anomaly mode: the error, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RuntimeError, match="SinBackward0"):
            z.sum().backward()


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:divide by zero encountered:RuntimeWarning")
@pytest.mark.parametrize("check_nan", [True, False])
@pytest.mark.parametrize("first", [-1.0, 0.0], ids=["nan", "inf"])
def test_nan_gradients_raise_only_with_check_nan(check_nan, first):
    results = []
    for lib in (px, torch):
        x = lib.tensor([first, 1.0], requires_grad=True)   # sqrt's gradient: NaN or inf
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            with lib.autograd.detect_anomaly(check_nan=check_nan):
                try:
                    x.sqrt().sum().backward()
                    results.append("ran")
                except RuntimeError as e:
                    results.append("raised" if "SqrtBackward0" in str(e) else str(e))
    assert results[0] == results[1] == ("raised" if check_nan and first < 0 else "ran")
