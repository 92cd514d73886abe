"""`phalanx.multiprocessing.spawn` with torch.multiprocessing's semantics: index first, args
after; a failing child fails the spawn with its traceback (or exit code / signal) and the
others are terminated; join=False gives a context; children find a rank environment, so the
DDP tutorial's init_process_group("gloo", rank=..., world_size=...) connects them."""
import multiprocessing as std_mp
import os
import sys
import time

import pytest

import phalanx.multiprocessing as mp

sys.path.insert(0, os.path.dirname(__file__))
import spawn_workers  # noqa: E402

pytestmark = pytest.mark.timeout(120)


def test_each_child_gets_its_index_and_args(tmp_path):
    assert mp.spawn(spawn_workers.record, args=(str(tmp_path), "hi"), nprocs=3) is None
    assert sorted(os.listdir(tmp_path)) == ["0", "1", "2"]
    for i in range(3):
        assert (tmp_path / str(i)).read_text() == f"hi {i} 3"


@pytest.mark.parametrize("how", ["raise", "exit", "signal"])
def test_a_failing_child_fails_the_spawn_and_stops_the_others(tmp_path, how):
    start = time.monotonic()
    with pytest.raises(mp.ProcessException) as e:
        mp.spawn(spawn_workers.fail_or_sleep, args=(str(tmp_path), how), nprocs=3)
    assert time.monotonic() - start < 30          # the sleepers were terminated
    assert e.value.error_index == 1 and e.value.pid > 0
    if how == "raise":
        assert isinstance(e.value, mp.ProcessRaisedException)
        message = str(e.value)
        assert "-- Process 1 terminated with the following error:" in message
        assert "Traceback" in message and "ValueError: boom from 1" in message
    elif how == "exit":
        assert isinstance(e.value, mp.ProcessExitedException)
        assert e.value.exit_code == 3
        assert str(e.value) == "process 1 terminated with exit code 3"
    else:
        assert isinstance(e.value, mp.ProcessExitedException)
        assert e.value.signal_name == "SIGKILL" and e.value.exit_code == -9
    assert not [n for n in os.listdir(tmp_path) if n.startswith("survived")]


def test_join_false_returns_a_context(tmp_path):
    context = mp.spawn(spawn_workers.record, args=(str(tmp_path), "later"), nprocs=2,
                       join=False)
    assert isinstance(context, mp.ProcessContext) and len(context.pids()) == 2
    while not context.join(timeout=30):
        pass
    assert context.join() is True
    assert (tmp_path / "1").read_text() == "later 1 2"


def test_ddp_tutorial_rendezvous(tmp_path):
    mp.spawn(spawn_workers.all_reduce_rank, args=(2, str(tmp_path)), nprocs=2)
    for rank in range(2):
        assert (tmp_path / str(rank)).read_text() == f"{rank} 2 3.0"


def test_arguments_are_checked():
    with pytest.raises(TypeError, match=r"args=\(x,\)"):
        mp.spawn(spawn_workers.record, args=["x"], nprocs=1)
    with pytest.raises(ValueError, match="positive integer"):
        mp.spawn(spawn_workers.record, nprocs=0)


def test_start_method_other_than_spawn_warns(tmp_path):
    with pytest.warns(FutureWarning, match="only supports start_method=spawn"):
        mp.spawn(spawn_workers.record, args=(str(tmp_path), "w"), nprocs=1,
                 start_method="fork")
    assert (tmp_path / "0").read_text() == "w 0 1"


def test_standard_library_names_are_reexported():
    for name in ("Process", "Queue", "SimpleQueue", "Pool", "Manager", "Event", "Lock",
                 "get_context", "set_start_method", "get_start_method", "cpu_count",
                 "current_process"):
        assert getattr(mp, name) is getattr(std_mp, name), name
    assert mp.get_all_sharing_strategies() == {"file_descriptor", "file_system"}
    mp.set_sharing_strategy("file_system")
    assert mp.get_sharing_strategy() == "file_system"
    mp.set_sharing_strategy("file_descriptor")
    with pytest.raises(ValueError, match="unknown sharing strategy"):
        mp.set_sharing_strategy("shm")
