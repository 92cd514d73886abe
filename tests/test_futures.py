"""phalanx.futures (torch.futures): Futures set by hand, chained with then(), and standing for
an asynchronous collective's work handle."""
import threading
import time

import numpy as np
import pytest

import phalanx as px
import phalanx.distributed as dist
from phalanx.distributed.process_group import Work
from phalanx.futures import Future, collect_all, wait_all


def test_set_result_then_chain_and_callbacks():
    fut = Future()
    seen = []
    fut.add_done_callback(lambda f: seen.append(f.value()))
    doubled = fut.then(lambda f: f.value() * 2)
    plus_one = doubled.then(lambda f: f.wait() + 1)
    assert not fut.done() and not plus_one.done()
    with pytest.raises(RuntimeError, match="before the future completed"):
        fut.value()
    fut.set_result(20)
    assert seen == [20] and doubled.value() == 40 and plus_one.wait() == 41
    fut.add_done_callback(lambda f: seen.append("late"))     # already done: runs at once
    assert seen == [20, "late"]
    with pytest.raises(RuntimeError, match="already completed"):
        fut.set_result(1)


def test_exceptions_travel_down_the_chain():
    fut = Future()
    child = fut.then(lambda f: f.value() + 1)
    fut.set_exception(ValueError("boom"))
    with pytest.raises(ValueError, match="boom"):
        child.wait()
    failing = Future()
    after = failing.then(lambda f: 1 / 0)
    failing.set_result(1)
    with pytest.raises(ZeroDivisionError):
        after.wait()
    with pytest.raises(TypeError, match="exception"):
        Future().set_exception("not an exception")


def test_wait_blocks_until_another_thread_sets_it():
    fut = Future()
    threading.Timer(0.1, lambda: fut.set_result("late")).start()
    start = time.monotonic()
    assert fut.wait() == "late" and time.monotonic() - start > 0.05


def test_collect_all_and_wait_all():
    a, b = Future(), Future()
    both = collect_all([a, b])
    a.set_result(1)
    assert not both.done()
    b.set_result(2)
    assert both.done() and [f.value() for f in both.wait()] == [1, 2]
    assert wait_all([a, b]) == [1, 2]


def test_a_work_handles_future_completes_when_the_work_does():
    work = Work()
    out = px.tensor([1.0])
    work.outputs = [out]
    fut = work.get_future()
    chained = fut.then(lambda f: f.value()[0] * 3)
    assert not fut.done() and not chained.done()       # polling never blocks
    threading.Timer(0.1, work.set_result).start()
    assert chained.wait().tolist() == [3.0] and fut.done() and fut.value() == [out]
    failed = Work()
    failed.set_error(RuntimeError("peer died"))
    with pytest.raises(RuntimeError, match="peer died"):
        failed.get_future().then(lambda f: f.value()).wait()


def test_async_collectives_futures_hold_their_outputs(world_of_one):
    t = px.tensor([1.0, 2.0])
    fut = dist.all_reduce(t, async_op=True).get_future()
    assert fut.wait()[0] is t
    halved = dist.broadcast(t, 0, async_op=True).get_future().then(lambda f: f.value()[0] / 2)
    np.testing.assert_array_equal(halved.wait().numpy(), [0.5, 1.0])
    assert dist.barrier(async_op=True).get_future().wait() == []


def test_device_futures_are_refused():
    with pytest.raises(NotImplementedError, match="devices"):
        Future(devices=["cuda:0"])


def test_callbacks_of_work_run_when_it_completes_without_anyone_waiting():
    work, other = Work(), Work()
    ran, both = threading.Event(), threading.Event()
    seen = []
    chained = work.get_future().then(lambda f: seen.append("then") or 7)
    chained.add_done_callback(lambda f: ran.set())
    collect_all([work.get_future(), other.get_future()]).add_done_callback(
        lambda f: both.set())
    assert not ran.wait(0.05) and not both.is_set()
    threading.Timer(0.05, work.set_result).start()
    assert ran.wait(5), "the callback did not run when the work completed"
    assert seen == ["then"] and chained.value() == 7 and not both.is_set()
    other.set_result()
    assert both.wait(5)


def test_a_raising_callback_is_logged_and_the_others_still_run(caplog):
    fut = Future()
    seen = []
    fut.add_done_callback(lambda f: 1 / 0)
    fut.add_done_callback(lambda f: seen.append(f.value()))
    with caplog.at_level("ERROR", logger="phalanx.futures"):
        fut.set_result(5)
    assert seen == [5] and fut.wait() == 5
    assert "ZeroDivisionError" in caplog.text and "a callback of <Future done> raised" in \
        caplog.text
