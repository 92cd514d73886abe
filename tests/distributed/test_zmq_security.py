"""The ZeroMQ transport against a process without the job token (issue 11): a live 2-rank job
is attacked through the ports it listens on, found the way an attacker would (the ranks'
listening sockets). The job must finish with correct results, its ranks must not grow, and
nothing the attacker sent may be unpickled. Plus: where ranks bind, and that credentials come
from the token."""
import os
import pickle
import re
import socket
import struct
import subprocess
import sys
import threading
import time

import msgpack
import numpy as np
import psutil
import pytest
import zmq

import phalanx
from phalanx.distributed.store import Store, StoreServer
from phalanx.distributed.zmq_backend import ZmqProcessGroup
from phalanx.distributed.zmq_transport import Credentials, local_address, security_for

WORKERS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "launcher",
                       "workers")
FLOOD_BYTES = 50 << 20


def _spawn(server, size, script, **extra):
    parent = os.path.dirname(os.path.abspath(list(phalanx.__path__)[0]))
    env = dict(os.environ, PHALANX_STORE_ENDPOINT=server.endpoint,
               PHALANX_STORE_TOKEN=server.token, WORLD_SIZE=str(size),
               OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [parent, os.environ.get("PYTHONPATH")])),
               **extra)
    return [subprocess.Popen([sys.executable, os.path.join(WORKERS, script)],
                             env=dict(env, RANK=str(r)), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for r in range(size)]


def _join(procs, timeout):
    try:
        outs = [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:                 # on failure or timeout: no process survives the test
            if p.poll() is None:
                p.kill()
                p.wait()
    return [p.returncode for p in procs], outs


def _wait_for(path, procs, timeout):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            return False
        time.sleep(0.05)
    return True


def _listening(pids):
    """(host, port) of every TCP socket the processes listen on, as an attacker finds them."""
    found = []
    for pid in pids:
        for conn in psutil.Process(pid).net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN:
                found.append((conn.laddr.ip, conn.laddr.port))
    return found


class _Payload:
    """Unpickling this creates a file: proof that attacker bytes were unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _attack(ports, marker):
    """Pickle payloads, forged all-reduce contributions and garbage through ZeroMQ sockets
    with no, guessed and made-up credentials, then a flood of 12 x 50 MB."""
    payload = pickle.dumps(_Payload(marker))
    forged = [np.full(n, 1e6).tobytes() for n in (7, 150_000)]
    ctx = zmq.Context()
    socks = []
    for host, port in ports:
        null = ctx.socket(zmq.PUSH)
        plain = ctx.socket(zmq.PUSH)
        plain.plain_username, plain.plain_password = b"0", b"guess"
        curve = ctx.socket(zmq.PUSH)
        curve.curve_publickey, curve.curve_secretkey = zmq.curve_keypair()
        curve.curve_serverkey = zmq.curve_keypair()[0]
        for sock in (null, plain, curve):
            sock.linger = 0
            sock.connect(f"tcp://{host}:{port}")
            socks.append(sock)
    for sock in socks:
        for seq in range(1, 300):
            for sender in (0, 1):
                old = struct.pack("<iiq", sender, 0, seq)        # the former 16-byte header
                new = msgpack.packb([0, seq, {"verb": "all_gather_object"}])
                for header in (old, new):
                    for body in [payload] + forged:
                        try:
                            sock.send_multipart([header, body], zmq.NOBLOCK)
                        except zmq.Again:
                            pass
        for garbage in (b"\x00\x01\x02\x03\x04", [b"12345", b"", b"x" * 5]):
            try:
                (sock.send if isinstance(garbage, bytes) else sock.send_multipart)(
                    garbage, zmq.NOBLOCK)
            except zmq.Again:
                pass
    flood = bytes(FLOOD_BYTES)
    for k in range(12):
        host, port = ports[k % len(ports)]
        try:
            socks[k % len(socks)].send(flood, zmq.NOBLOCK, copy=False)
        except zmq.Again:
            pass
        with socket.socket() as raw:                      # and straight into the TCP port
            raw.settimeout(2.0)
            try:
                raw.connect((host, port))
                raw.sendall(b"\x01\x02\x03\x04\x05")
                raw.sendall(flood)
            except OSError:
                pass
    time.sleep(1.0)
    for sock in socks:
        sock.close(0)
    ctx.term()


@pytest.mark.timeout(150)
@pytest.mark.parametrize("security", ["plain", "curve"])
def test_a_process_without_the_token_cannot_reach_the_ranks(tmp_path, security):
    marker = tmp_path / "payload-ran"
    with StoreServer() as server:
        procs = _spawn(server, 2, "zmq_under_attack.py", ATTACK_DIR=str(tmp_path),
                       PHALANX_ZMQ_SECURITY=security)
        try:
            assert _wait_for(tmp_path / "ready", procs, 60), "the job did not start"
            ports = _listening([p.pid for p in procs])
            assert len(ports) == 2, ports
            _attack(ports, str(marker))
        finally:
            (tmp_path / "stop").touch()
            codes, outs = _join(procs, timeout=60)
    log = "\n".join(outs)
    assert codes == [0, 0], log
    assert not marker.exists(), "an attacker's pickle was unpickled in a rank"
    growth = [float(g) for g in re.findall(r"rss growth ([\d.]+) MB", log)]
    assert len(growth) == 2 and max(growth) < 100, log
    if security == "plain":     # the guessed password reached the gatekeeper, and was refused
        assert sum(int(n) for n in re.findall(r"refused (\d+) connections", log)) > 0, log


@pytest.mark.timeout(120)
def test_every_collective_over_curve():
    with StoreServer() as server:
        codes, outs = _join(_spawn(server, 2, "zmq_collectives.py", PHALANX_ZMQ_SECURITY="curve"),
                            timeout=100)
    assert codes == [0, 0], "\n".join(outs)


def _non_loopback_address():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))        # TEST-NET: only picks a route, sends nothing
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


@pytest.mark.timeout(30)
def test_ranks_bind_loopback_for_a_loopback_store(monkeypatch):
    monkeypatch.delenv("PHALANX_ZMQ_HOST", raising=False)
    with StoreServer() as server:
        pg = ZmqProcessGroup.from_store(Store(server.endpoint, server.token), 0, 1, timeout=5,
                                        prefix="bind")
        port = int(pg._transport.address.rsplit(":", 1)[1])
        listening = [c.laddr for c in psutil.Process().net_connections(kind="tcp")
                     if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
        pg.shutdown()
    assert [a.ip for a in listening] == ["127.0.0.1"]
    assert security_for("127.0.0.1") == "plain"


def test_multi_node_ranks_bind_the_rendezvous_interface_only(monkeypatch):
    monkeypatch.delenv("PHALANX_ZMQ_HOST", raising=False)
    monkeypatch.delenv("PHALANX_ZMQ_SECURITY", raising=False)
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this host has no non-loopback IPv4 address")
    assert local_address(f"tcp://{address}:29500") == address
    assert security_for(address) == "curve"         # bytes cross a network: encrypted
    for wildcard in ("0.0.0.0", "*"):
        monkeypatch.setenv("PHALANX_ZMQ_HOST", wildcard)
        with pytest.raises(ValueError, match="every interface"):
            local_address(f"tcp://{address}:29500")


@pytest.mark.timeout(60)
def test_ranks_meet_over_an_ipv6_rendezvous(monkeypatch, non_loopback_ipv6):
    """A store on a non-loopback IPv6 address: the ranks bind that interface only (in
    brackets), encrypted, and reduce together."""
    monkeypatch.delenv("PHALANX_ZMQ_HOST", raising=False)
    monkeypatch.delenv("PHALANX_ZMQ_SECURITY", raising=False)
    address = non_loopback_ipv6
    results, errors = {}, []

    def rank(r):
        try:
            pg = ZmqProcessGroup.from_store(Store(server.endpoint, server.token), r, 2,
                                            timeout=20, prefix="v6")
            values = np.full(3, r + 1.0)
            pg.allreduce(values).wait()
            port = int(pg._transport.address.rsplit(":", 1)[1])
            results[r] = (values.tolist(), pg._transport.address, pg._transport.security,
                          [c.laddr.ip for c in psutil.Process().net_connections(kind="tcp")
                           if c.status == psutil.CONN_LISTEN and c.laddr.port == port])
            pg.shutdown()
        except Exception as e:           # noqa: BLE001 - reported below
            errors.append(e)
    with StoreServer(host=address) as server:
        assert local_address(server.endpoint) == address
        threads = [threading.Thread(target=rank, args=(r,)) for r in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(40)
    assert not errors, errors
    for values, where, security, listening in results.values():
        assert values == [3.0] * 3 and security == "curve"
        assert where.startswith(f"tcp://[{address}]:") and listening == [address]
    monkeypatch.setenv("PHALANX_ZMQ_HOST", f"[{address}]")    # as an endpoint writes it
    assert local_address("tcp://10.0.0.1:29500") == address


def test_credentials_come_from_the_token_and_the_group():
    one = Credentials("token-a", "zmq_pg/run/0/1", 2)
    assert one.rank_of(b"PLAIN", [b"1", one.password(1)]) == 1
    assert one.rank_of(b"PLAIN", [b"0", one.password(1)]) is None       # not rank 0's
    assert one.rank_of(b"PLAIN", [b"1", Credentials("token-b", "zmq_pg/run/0/1",
                                                    2).password(1)]) is None
    assert one.rank_of(b"PLAIN", [b"1", Credentials("token-a", "zmq_pg/run/0/2",
                                                    2).password(1)]) is None
    public = zmq.utils.z85.decode(one.curve_pair(0)[0])
    assert one.rank_of(b"CURVE", [public]) == 0
    assert one.rank_of(b"CURVE", [zmq.utils.z85.decode(zmq.curve_keypair()[0])]) is None
    with pytest.raises(ValueError, match="token"):
        Credentials("", "p", 2)


def test_a_libzmq_without_curve_is_named_for_multi_node(monkeypatch):
    monkeypatch.delenv("PHALANX_ZMQ_SECURITY", raising=False)
    monkeypatch.setattr(zmq, "has", lambda capability: capability != "curve")
    with pytest.raises(RuntimeError, match="built without it.*PHALANX_ZMQ_SECURITY=plain"):
        security_for("10.1.2.3")
    assert security_for("127.0.0.1") == "plain"
    monkeypatch.setenv("PHALANX_ZMQ_SECURITY", "rot13")
    with pytest.raises(ValueError, match="choose 'plain'"):
        security_for("127.0.0.1")
