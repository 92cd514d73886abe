"""torch.distributed's names that scripts use beyond the collectives: Backend, the exception
types, debug levels, the store classes (TCPStore with PyTorch's signature, HashStore,
PrefixStore), subgroups, object point-to-point, and the comm-hook module paths. The
multi-process parts run real processes that meet through a TCPStore, as PyTorch scripts do."""
import datetime
import os
import stat
import textwrap
import threading

import pytest
import torch.distributed as tdist

import phalanx as px
import phalanx.distributed as dist
from phalanx.distributed import comm_hooks, debug

from .spawned import clean_env, free_port, run_workers


@pytest.fixture
def private_runtime(tmp_path, monkeypatch):
    """A private XDG_RUNTIME_DIR, where a TCPStore master writes its token file."""
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("PHALANX_STORE_TOKEN", raising=False)
    return runtime


def test_backend_names_as_pytorch():
    for name in ("NCCL", "gloo", "Mpi", "weird"):
        assert dist.Backend(name) == tdist.Backend(name) and isinstance(dist.Backend(name), str)
    assert (dist.Backend.NCCL, dist.Backend.GLOO, dist.Backend.MPI) == ("nccl", "gloo", "mpi")
    assert {"gloo", "nccl", "mpi"} <= set(dist.Backend.backend_list)
    with pytest.raises(ValueError, match="string"):
        dist.Backend(3)


def test_backend_constant_picks_the_cpu_backend(no_launcher):
    dist.init_process_group(dist.Backend.GLOO)
    try:
        assert dist.get_backend() == "local" and dist.get_world_size() == 1
    finally:
        dist.destroy_process_group()


def test_exception_types_match_pytorch_and_phalanx_raises_them():
    for name in ("DistError", "DistBackendError", "DistNetworkError", "DistStoreError",
                 "QueueEmptyError"):
        ours, theirs = getattr(dist, name), getattr(tdist, name)
        assert [c.__name__ for c in ours.__mro__[:-3]] == \
            [c.__name__ for c in theirs.__mro__[:-3]], name
    assert issubclass(dist.CollectiveMismatchError, dist.DistError)
    from phalanx.distributed.zmq_mailbox import CollectiveError
    assert issubclass(CollectiveError, dist.DistBackendError)
    store = dist.HashStore()
    try:
        with pytest.raises(dist.DistStoreError, match="timed out"):
            store.get("never", timeout=0.1)
    finally:
        store.close()


def test_debug_levels(no_launcher, monkeypatch):
    assert set(dist.DebugLevel.__members__) == set(tdist.DebugLevel.__members__)
    monkeypatch.delenv("TORCH_DISTRIBUTED_DEBUG", raising=False)
    try:
        dist.set_debug_level(dist.DebugLevel.DETAIL)
        dist.init_process_group()       # no variable set: the level chosen in code stays
        assert debug.enabled()
        dist.destroy_process_group()
        dist.set_debug_level(dist.DebugLevel.DETAIL)
        assert dist.get_debug_level() is dist.DebugLevel.DETAIL and debug.enabled()
        dist.set_debug_level(dist.DebugLevel.INFO)
        assert not debug.enabled()
        with pytest.raises(TypeError, match="DebugLevel"):
            dist.set_debug_level("DETAIL")
        monkeypatch.setenv("TORCH_DISTRIBUTED_DEBUG", "detail")
        dist.set_debug_level_from_env()
        assert dist.get_debug_level() is dist.DebugLevel.DETAIL
        monkeypatch.setenv("TORCH_DISTRIBUTED_DEBUG", "LOUD")
        with pytest.raises(ValueError, match="OFF, INFO, or DETAIL"):
            dist.set_debug_level_from_env()
        # init_process_group reads PyTorch's variable: DETAIL turns the collective checks on
        dist.set_debug_level(dist.DebugLevel.OFF)
        monkeypatch.setenv("TORCH_DISTRIBUTED_DEBUG", "DETAIL")
        dist.init_process_group()
        assert debug.enabled()
        dist.destroy_process_group()
    finally:
        dist.set_debug_level(dist.DebugLevel.OFF)


def test_hash_store_and_prefix_store_api():
    store = dist.HashStore()
    try:
        store.set("a", "1")
        store.multi_set(["b", "c"], [b"2", "3"])
        assert store.get("a") == b"1" and store.multi_get(["b", "c"]) == [b"2", b"3"]
        assert store.add("n", 2) == 2 and store.add("n", 3) == 5
        assert store.compare_set("a", "1", "x") == b"x"
        assert store.check(["a", "b"]) and not store.check(["zz"])
        assert store.num_keys() == 4
        assert store.delete_key("a") and not store.delete_key("a") and store.num_keys() == 3
        store.set_timeout(datetime.timedelta(seconds=0.2))
        with pytest.raises(dist.DistStoreError):
            store.wait(["absent"])
        job = dist.PrefixStore("job1", store)
        job.set("a", "p")
        assert job.get("a") == b"p" and store.get("job1/a") == b"p"
        assert not job.check(["b"]) and job.num_keys() == 1
        assert job.add("n", 1) == 1 and store.get("n") == b"5"
        job.multi_set(["x"], ["y"])
        assert job.multi_get(["x"]) == [b"y"] and job.delete_key("x")
        job.wait(["a"])
        assert job.compare_set("a", "p", "q") == b"q"
    finally:
        store.close()


def test_tcp_store_master_and_client_in_one_process(private_runtime):
    master = dist.TCPStore("127.0.0.1", 0, is_master=True)
    client = dist.TCPStore("127.0.0.1", master.port, timeout=datetime.timedelta(seconds=10))
    try:
        token_file = private_runtime / "phalanx" / f"store-token-{master.port}"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        client.set("k", "v")
        assert master.get("k") == b"v" and master.port == client.port
        assert "TCPStore" in repr(client)
    finally:
        client.close()
        master.close()
    assert not token_file.exists()      # the master removes its token file with its server


def test_tcp_store_master_waits_for_its_workers(private_runtime):
    port = free_port()
    joined = []

    def worker():
        joined.append(dist.TCPStore("127.0.0.1", port, timeout=10))

    late = threading.Timer(0.5, worker)
    late.start()
    master = dist.TCPStore("127.0.0.1", port, world_size=2, is_master=True, timeout=10)
    late.join()
    try:
        assert joined, "the master returned before its worker connected"
        lonely = free_port()
        with pytest.raises(dist.DistStoreError, match="1 of 3 workers"):
            dist.TCPStore("127.0.0.1", lonely, world_size=3, is_master=True, timeout=0.3)
        # the failed master closed its server: the port is free again
        dist.TCPStore("127.0.0.1", lonely, is_master=True).close()
    finally:
        joined[0].close()
        master.close()


def test_tcp_store_multi_tenant_and_refusals(private_runtime, monkeypatch):
    first = dist.TCPStore("127.0.0.1", 0, is_master=True, multi_tenant=True)
    second = dist.TCPStore("127.0.0.1", first.port, is_master=True, multi_tenant=True)
    try:
        second.set("shared", "1")
        assert first.get("shared") == b"1"
        with pytest.raises(dist.DistStoreError, match="cannot bind"):
            dist.TCPStore("127.0.0.1", first.port, is_master=True)
    finally:
        second.close()
        first.set("still", "served")      # the server lives while a tenant uses it
        first.close()
    with pytest.raises(NotImplementedError, match="master_listen_fd"):
        dist.TCPStore("127.0.0.1", 0, is_master=True, master_listen_fd=5)
    with pytest.raises(RuntimeError, match="PHALANX_STORE_TOKEN"):
        dist.TCPStore("10.255.255.1", 29500)


def test_group_size_and_rank_are_numbers_pytorch_code_may_call(world_of_one):
    world = dist.group.WORLD
    assert world.size() == world.size == 1 and world.rank() == world.rank == 0
    assert world.size + 1 == 2 and type(world.size()) is int


def test_subgroups_in_a_world_of_one(world_of_one):
    mine, groups = dist.new_subgroups(group_size=1)
    assert groups == [mine] and dist.get_process_group_ranks(mine) == [0]
    with pytest.raises(ValueError, match="positive"):
        dist.new_subgroups(group_size=0)
    with pytest.raises(ValueError, match="cannot be split"):
        dist.new_subgroups(group_size=2)
    with pytest.raises(ValueError, match="cannot be empty"):
        dist.new_subgroups_by_enumeration([])
    with pytest.raises(ValueError, match="appeared in both"):
        dist.new_subgroups_by_enumeration([[0], [0]])


def test_comm_hooks_at_pytorch_module_paths():
    from phalanx.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook
    assert default_hooks.allreduce_hook is comm_hooks.allreduce_hook
    assert default_hooks.fp16_compress_hook is comm_hooks.fp16_compress_hook
    assert powerSGD_hook.powerSGD_hook is comm_hooks.powerSGD_hook
    assert powerSGD_hook.PowerSGDState is comm_hooks.PowerSGDState


# ---- real processes meeting through a TCPStore ----------------------------------------------
WORKER = textwrap.dedent("""
    import sys
    import time
    import phalanx as px
    import phalanx.distributed as dist

    rank, size, port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    store = dist.TCPStore("127.0.0.1", port, size, is_master=rank == 0, timeout=60)
    dist.init_process_group(dist.Backend.GLOO, store=store, rank=rank, world_size=size)
    t = px.tensor([float(rank + 1)])
    dist.all_reduce(t)
    assert t.item() == size * (size + 1) / 2, t

    # objects, point to point: rank 0 sends each rank its own list; the others answer
    if rank == 0:
        for peer in range(1, size):
            dist.send_object_list([{"to": peer}, "x" * peer, [peer] * 3], dst=peer)
        got = {}
        for _ in range(1, size):
            answer = [None]
            sender = dist.recv_object_list(answer)          # from any rank
            got[sender] = answer[0]
        assert got == {p: ("ok", p) for p in range(1, size)}, got
    else:
        objs = [None, None, None]
        assert dist.recv_object_list(objs, src=0, use_batch=rank % 2 == 0) == 0
        assert objs == [{"to": rank}, "x" * rank, [rank] * 3], objs
        dist.send_object_list([("ok", rank)], group_dst=0)

    # subgroups of 2 consecutive ranks, each reducing on its own
    mine, groups = dist.new_subgroups(group_size=2)
    assert len(groups) == size // 2
    t = px.tensor([float(rank)])
    dist.all_reduce(t, group=mine)
    pair = rank - rank % 2
    assert t.item() == pair + pair + 1, (rank, t)
    # the odd ranks come late: no rank may leave group creation (and rank 0 then close the
    # store the odd ranks meet through) before they have built theirs
    if rank % 2:
        time.sleep(1.0)
    start = time.monotonic()
    odd, all_ = dist.new_subgroups_by_enumeration([[r for r in range(size) if r % 2],
                                                   [r for r in range(size) if not r % 2]])
    assert dist.get_process_group_ranks(odd) == [r for r in range(size) if r % 2 == rank % 2]
    assert rank % 2 or time.monotonic() - start > 0.9, "left before the late ranks arrived"
    dist.destroy_process_group()
    store.close()
    print("worker ok")
""")


@pytest.mark.timeout(120)
def test_processes_meet_through_a_tcp_store(tmp_path):
    size, port = 4, free_port()
    env = clean_env(tmp_path)
    codes, outs = run_workers(tmp_path, WORKER, [(r, size, port) for r in range(size)], env,
                              timeout=100)
    assert codes == [0] * size, "\n".join(outs)
    assert all("worker ok" in out for out in outs)
    assert not os.listdir(tmp_path / "run" / "phalanx")     # the master's token file is gone


def test_backend_queries_answer_as_pytorchs(world_of_one):
    for name in ("is_ucc_available", "is_xccl_available"):
        assert getattr(dist, name)() == getattr(tdist, name)() is False
    for device in ("cpu", "cuda", "cuda:1", px.device("cpu")):
        expected = tdist.get_default_backend_for_device(str(device))
        assert dist.get_default_backend_for_device(device) == expected
    with pytest.raises(RuntimeError, match="'cpu' and 'cuda' devices only"):
        dist.get_default_backend_for_device("xla")
    assert dist.get_pg_count() == 1
    dist.new_group([0])
    assert dist.get_pg_count() == 2


def test_pytorch_module_paths_of_the_process_group_api(world_of_one):
    """`torch.distributed.distributed_c10d` (the API's home, with `_get_default_group`),
    `torch.distributed.constants`, `torch.utils.hooks`."""
    from phalanx.distributed import constants, distributed_c10d
    from phalanx.utils.hooks import RemovableHandle
    assert distributed_c10d.all_reduce is dist.all_reduce
    assert distributed_c10d.ReduceOp is dist.ReduceOp
    assert distributed_c10d._get_default_group() is dist.group.WORLD
    assert "get_world_size" in dir(distributed_c10d)
    with pytest.raises(AttributeError, match="no_such_name"):
        distributed_c10d.no_such_name
    assert constants.default_pg_timeout == datetime.timedelta(minutes=10)
    assert isinstance(px.nn.Linear(1, 1).register_forward_hook(lambda *a: None),
                      RemovableHandle)
    assert dist.distributed_c10d is distributed_c10d
