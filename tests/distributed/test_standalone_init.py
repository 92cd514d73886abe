"""init_process_group without a launcher, as PyTorch tutorials do it (MASTER_ADDR/MASTER_PORT
with env://, or tcp://host:port, plus rank= and world_size=): real processes on loopback, 2 and
3 ranks; the job token from PHALANX_STORE_TOKEN or from rank 0's private token file."""
import os
import stat
import textwrap

import pytest

from phalanx.distributed import standalone

from .spawned import clean_env, free_port, run_workers

WORKER = textwrap.dedent("""
    import sys
    import phalanx as px
    import phalanx.distributed as dist

    mode, rank, size, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    if mode == "env":
        dist.init_process_group("gloo", rank=rank, world_size=size)
    else:
        dist.init_process_group(backend="gloo", init_method=f"tcp://127.0.0.1:{port}",
                                rank=rank, world_size=size)
    t = px.tensor([float(rank + 1)])
    dist.all_reduce(t)
    assert t.item() == size * (size + 1) / 2, t
    got = [None] * size
    dist.all_gather_object(got, rank * 10)
    assert got == [r * 10 for r in range(size)], got
    print("rank", dist.get_rank(), "of", dist.get_world_size(), "backend",
          dist.get_backend(), "local", dist.get_local_rank(), dist.get_local_world_size())
    dist.destroy_process_group()
    print("worker ok")
""")


def _run(tmp_path, mode, size, env, port):
    return run_workers(tmp_path, WORKER, [(mode, r, size, port) for r in range(size)], env)


@pytest.mark.timeout(90)
def test_env_method_on_loopback_shares_a_private_token_file(tmp_path):
    port = free_port()
    env = clean_env(tmp_path, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    # a stale token file of an earlier job on this port: the ranks must not be fooled by it
    stale = standalone.token_path(port, env)
    standalone._write_token(stale, "an-old-token")
    codes, outs = _run(tmp_path, "env", 2, env, port)
    assert codes == [0, 0], "\n".join(outs)
    for r, out in enumerate(outs):
        assert f"rank {r} of 2 backend zmq local {r} 2" in out and "worker ok" in out, out
    assert not os.path.exists(stale)  # rank 0 removes its token file at teardown


@pytest.mark.timeout(90)
def test_tcp_method_with_an_exported_token_three_ranks(tmp_path):
    port = free_port()
    env = clean_env(tmp_path, PHALANX_STORE_TOKEN="0123456789abcdef0123456789abcdef")
    codes, outs = _run(tmp_path, "tcp", 3, env, port)
    assert codes == [0, 0, 0], "\n".join(outs)
    assert all("worker ok" in out for out in outs)
    assert not os.listdir(tmp_path / "run")  # no token file when the token is exported


def test_without_a_token_across_hosts_it_refuses_naming_the_fix():
    environ = {"MASTER_ADDR": "10.255.255.1", "MASTER_PORT": "29500"}
    with pytest.raises(RuntimeError, match="export the same secret PHALANX_STORE_TOKEN"):
        standalone.start("env://", 1, 2, timeout=1.0, environ=environ)


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="tcp://HOST:PORT"):
        standalone.master_from("tcp://nohostport", {})
    with pytest.raises(NotImplementedError, match="'udp' rendezvous.*'file://PATH'"):
        standalone.master_from("udp://host:1", {})
    with pytest.raises(ValueError, match="MASTER_PORT"):
        standalone.master_from("env://", {"MASTER_ADDR": "127.0.0.1"})
    assert standalone.master_from(None, {}) is None
    with pytest.raises(ValueError, match="world_size"):
        standalone.rank_and_size(0, None, {})
    with pytest.raises(ValueError, match="0 <= rank < world_size"):
        standalone.rank_and_size(3, 2, {})
    assert standalone.rank_and_size(None, None, {"RANK": "1", "WORLD_SIZE": "4"}) == (1, 4)
    assert standalone.is_loopback("localhost") and standalone.is_loopback("127.0.0.2")
    assert not standalone.is_loopback("10.1.2.3")


def test_token_file_is_private_and_a_readable_one_is_refused(tmp_path):
    environ = {"XDG_RUNTIME_DIR": str(tmp_path)}
    path = standalone.token_path(12345, environ)
    standalone._write_token(path, "secret")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert standalone._read_token(path) == "secret"
    os.chmod(path, 0o644)
    with pytest.raises(PermissionError, match="not private"):
        standalone._read_token(path)
    assert standalone._read_token(path + "-missing") is None


def test_availability_and_launch_queries(monkeypatch):
    from phalanx.distributed import world
    assert world.is_gloo_available() and world.is_backend_available("gloo")
    assert world.is_backend_available("local") and not world.is_backend_available("smoke")
    assert isinstance(world.is_mpi_available(), bool)
    monkeypatch.delenv("PHALANX_RUN_ID", raising=False)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    assert not world.is_torchelastic_launched()
    monkeypatch.setenv("PHALANX_RUN_ID", "abc")
    assert world.is_torchelastic_launched()
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert world.get_node_local_rank(fallback_rank=3) == 3
    with pytest.raises(RuntimeError, match="LOCAL_RANK"):
        world.get_node_local_rank()
    monkeypatch.setenv("LOCAL_RANK", "2")
    assert world.get_node_local_rank() == 2
