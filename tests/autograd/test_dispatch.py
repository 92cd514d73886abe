"""The dispatch point: interceptors see every op call, nest in push order, may change arguments,
and leave nothing behind when their block ends."""
import numpy as np
import pytest

import phalanx as px
from phalanx.autograd import dispatch


def test_interceptor_sees_each_op_and_can_change_its_arguments():
    seen = []

    def double_first(cls, args, kwargs, proceed):
        seen.append(cls.__name__)
        if cls.__name__ == "Add":
            args = (args[0] * 2,) + args[1:]   # the op itself records this Mul too
        return proceed(args, kwargs)

    before = list(dispatch.interceptors)    # e.g. bfloat16 compute, once a test used bfloat16
    x = px.tensor([1.0, 2.0], requires_grad=True)
    with dispatch.intercept(double_first):
        y = x + 1
    assert "Add" in seen and "Mul" in seen
    np.testing.assert_array_equal(y.detach().numpy(), [3.0, 5.0])
    y.sum().backward()                  # the graph goes through the changed arguments
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0])
    assert dispatch.interceptors == before


def test_interceptors_nest_last_pushed_first_and_are_removed_on_error():
    order, before = [], list(dispatch.interceptors)

    def named(tag):
        def interceptor(cls, args, kwargs, proceed):
            order.append(tag)
            return proceed(args, kwargs)
        return interceptor

    with dispatch.intercept(named("outer")), dispatch.intercept(named("inner")):
        px.ones(2).neg()
    assert order[:2] == ["inner", "outer"]
    with pytest.raises(RuntimeError):
        with dispatch.intercept(named("x")):
            px.ones(2) + px.ones(3)     # a broadcast error passes through unchanged
    assert dispatch.interceptors == before


def test_transparent_interceptors_do_not_make_fused_ops_fall_back():
    def plain(cls, args, kwargs, proceed):
        return proceed(args, kwargs)

    def transparent(cls, args, kwargs, proceed):
        return proceed(args, kwargs)
    transparent.transparent = True
    before = dispatch.watching()
    with dispatch.intercept(transparent):
        assert dispatch.watching() == before
        with dispatch.intercept(plain):
            assert dispatch.watching()
