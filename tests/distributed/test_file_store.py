"""FileStore against PyTorch's, shared by real processes, and the file:// rendezvous
(init_process_group(init_method="file://...") and store=FileStore(...)) with real ranks."""
import datetime
import os
import stat
import textwrap

import msgpack
import pytest

import phalanx.distributed as dist
from phalanx.distributed import standalone
from phalanx.distributed.store import StoreError, StoreTimeout

from .spawned import clean_env, run_workers

torch_dist = pytest.importorskip("torch.distributed")


def _script(store, tiny):
    """The same calls on either framework's FileStore, and what each returned."""
    out = []
    store.set("a", "1")
    store.set("b", b"\x00\xff")
    out += [store.get("a"), store.get("b"), store.add("n", 3), store.add("n", -5),
            store.get("n"), store.add("fresh", 0)]
    out += [store.compare_set("a", "1", "2"), store.compare_set("a", "x", "3"),
            store.compare_set("new", "", "v"), store.compare_set("missing", "e", "d"),
            store.get("a"), store.check(["missing"])]
    out += [store.check(["a", "b"]), store.check(["a", "nope"]), store.num_keys()]
    out += [store.delete_key("a"), store.check(["a"]), store.num_keys()]
    store.multi_set(["x", "y"], ["1", b"2"])
    store.append("x", "abc")
    store.append("z", "q")
    out += [store.multi_get(["x", "y"]), store.get("z")]
    store.set_timeout(datetime.timedelta(seconds=tiny))
    with pytest.raises(RuntimeError, match="missing|[Tt]imeout"):
        store.get("missing")
    with pytest.raises(RuntimeError, match="missing|[Tt]imeout"):
        store.wait(["missing"], datetime.timedelta(seconds=tiny))
    return out


def test_the_api_returns_what_pytorchs_file_store_returns(tmp_path):
    ours = dist.FileStore(str(tmp_path / "ours"), 1)
    theirs = torch_dist.FileStore(str(tmp_path / "theirs"), 1)
    assert _script(ours, 0.2) == _script(theirs, 0.2)
    other = dist.FileStore(str(tmp_path / "ours"), 1)      # a second instance sees it all
    assert other.get("y") == b"2" and other.get("x") == b"1abc"
    assert other.keys() == ["b", "fresh", "n", "new", "x", "y", "z"]
    with pytest.raises(StoreTimeout, match=r"waiting for key\(s\) \['gone'\]"):
        other.get("gone", timeout=0.05)
    with pytest.raises(TypeError, match="must be a str"):
        other.set(3, "v")
    with pytest.raises(ValueError, match="'b' holds .* not an integer counter"):
        other.add("b", 1)
    other.close()
    ours.close()
    with pytest.raises(StoreError, match="closed"):
        ours.get("a")


def test_the_last_of_world_size_instances_removes_the_file(tmp_path):
    path = tmp_path / "job"
    first, second = dist.FileStore(str(path), 2), dist.FileStore(str(path), 2)
    first.set("k", "v")
    first.close()
    assert path.exists() and second.get("k") == b"v"
    second.close()
    assert not path.exists()
    kept = dist.FileStore(str(path))          # world_size=-1: never removed, as in PyTorch
    kept.close()
    assert path.exists()


def test_the_file_is_private_and_a_shared_or_foreign_file_is_refused(tmp_path):
    path = tmp_path / "store"
    with dist.FileStore(str(path)) as store:
        store.set("token", "secret")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    os.chmod(path, 0o644)
    with pytest.raises(PermissionError, match="not private to this user"):
        dist.FileStore(str(path))
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\xc1not msgpack")
    os.chmod(garbage, 0o600)
    with pytest.raises(StoreError, match="not a store file"):
        dist.FileStore(str(garbage))
    other = tmp_path / "other"
    other.write_bytes(msgpack.packb({"a": 1}))
    os.chmod(other, 0o600)
    with pytest.raises(StoreError, match="not a store entry"):
        dist.FileStore(str(other))
    cut = tmp_path / "cut"
    cut.write_bytes(msgpack.packb(["/k", b"value"])[:-2])
    os.chmod(cut, 0o600)
    with pytest.raises(StoreError, match="middle of a record"):
        dist.FileStore(str(cut))


COUNTER = textwrap.dedent("""
    import sys
    import phalanx.distributed as dist
    path, rank, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    store = dist.FileStore(path, size)
    store.set(f"ready/{rank}", str(rank))
    store.wait([f"ready/{r}" for r in range(size)], 30)      # all start adding together
    for _ in range(200):
        store.add("counter", 1)
    if store.add("done", 1) == size:
        store.set("total", store.get("counter"))
    print("total", store.get("total", timeout=30).decode())
    store.close()
""")


@pytest.mark.timeout(90)
def test_processes_share_it_and_read_modify_writes_are_atomic(tmp_path):
    path = tmp_path / "shared"
    codes, outs = run_workers(tmp_path, COUNTER, [(path, r, 4) for r in range(4)],
                              clean_env(tmp_path), timeout=60)
    assert codes == [0] * 4, "\n".join(outs)
    assert all("total 800" in out for out in outs), outs
    assert not path.exists()


RANK = textwrap.dedent("""
    import sys
    import phalanx as px
    import phalanx.distributed as dist
    how, path, rank, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    if how == "url":
        dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank,
                                world_size=size)
    else:
        store = dist.FileStore(path, size)
        dist.init_process_group("gloo", store=store, rank=rank, world_size=size)
    t = px.tensor([float(rank + 1)])
    dist.all_reduce(t)
    assert t.item() == size * (size + 1) / 2, t
    print("rank", dist.get_rank(), "of", dist.get_world_size(), "local",
          dist.get_local_rank(), dist.get_local_world_size())
    dist.destroy_process_group()
    print("worker ok")
""")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how,size", [("url", 3), ("store", 2)])
def test_ranks_meet_through_a_file(tmp_path, how, size):
    path = tmp_path / "rendezvous"
    # an earlier job's entry, naming a store that is gone: the ranks must wait for rank 0's
    with dist.FileStore(str(path)) as old:
        old.set(standalone._FILE_KEY, "tcp://127.0.0.1:9 0123456789abcdef")
    env = clean_env(tmp_path, MASTER_ADDR="127.0.0.1")
    codes, outs = run_workers(tmp_path, RANK, [(how, path, r, size) for r in range(size)],
                              env, timeout=90)
    assert codes == [0] * size, "\n".join(outs)
    for r, out in enumerate(outs):
        assert f"rank {r} of {size} local {r} {size}" in out and "worker ok" in out, out


def test_file_method_arguments_are_checked():
    with pytest.raises(ValueError, match="must name a file"):
        standalone.from_file("file://", 0, 1, timeout=1.0, environ={})
    with pytest.raises(ValueError, match="world_size"):
        standalone.from_file("file:///tmp/x", 0, None, timeout=1.0, environ={})


def test_a_rank_without_rank_zero_says_so_within_its_timeout(tmp_path):
    with pytest.raises(RuntimeError, match="no rendezvous store answered through"):
        standalone.from_file(f"file://{tmp_path / 'alone'}", 1, 2, timeout=0.3, environ={})
