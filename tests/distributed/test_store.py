"""The rendezvous store: every operation, timeouts, authentication, and fuzzing with the server
still serving afterwards. Single process (the server runs in a thread); not an MPI test.
Attacks by processes without the token are in test_store_security.py."""
import random
import socket
import struct
import subprocess
import sys
import threading
import time

import msgpack
import pytest
import zmq

from phalanx.distributed.store import FRAME_BYTES, Store, StoreError, StoreServer, StoreTimeout
from phalanx.distributed.zmq_auth import StoreCredentials

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def server():
    with StoreServer(max_message_bytes=1 << 20) as s:
        yield s


@pytest.fixture
def store(server):
    with Store(server.endpoint, server.token, timeout=5) as s:
        yield s


def test_set_get_add_compare_set_delete_keys(store):
    store.set("a", "1")
    store.set("b/x", b"\x00\xff")
    assert store.get("a") == b"1" and store.get("b/x") == b"\x00\xff"
    assert store.add("n", 5) == 5 and store.add("n") == 6 and store.get("n") == b"6"
    assert store.compare_set("n", "6", "x") == b"x"
    assert store.compare_set("n", "6", "y") == b"x"              # mismatch: unchanged
    assert store.compare_set("fresh", "", "v") == b"v"           # "" matches a missing key
    assert store.keys("b/") == ["b/x"] and set(store.keys()) >= {"a", "b/x", "n", "fresh"}
    assert store.check(["a", "n"]) and not store.check(["a", "nope"])
    assert store.delete("a") and not store.delete("a") and not store.check("a")


def test_get_and_wait_block_until_the_key_appears(server, store):
    other = Store(server.endpoint, server.token)
    threading.Timer(0.2, lambda: other.set("late", "v")).start()
    t = time.monotonic()
    assert store.get("late") == b"v"
    assert 0.15 < time.monotonic() - t < 3
    threading.Timer(0.1, lambda: (other.set("k1", "1"), other.set("k2", "2"))).start()
    store.wait(["k1", "k2"], timeout=5)


def test_timeouts_name_the_key_and_endpoint(store, server):
    with pytest.raises(StoreTimeout) as e:
        store.get("missing", timeout=0.2)
    assert "missing" in str(e.value) and server.endpoint in str(e.value)
    dead = Store("tcp://127.0.0.1:1", "t", timeout=0.3)
    with pytest.raises(StoreTimeout, match="tcp://127.0.0.1:1"):
        dead.set("k", "v")
    store.set("still", "works")                  # a timed-out request leaves the client usable
    assert store.get("still") == b"works"


def test_barrier_is_reusable():
    with StoreServer() as server:
        stores = [Store(server.endpoint, server.token, timeout=5) for _ in range(3)]
        order = []

        def member(i):
            for round_ in range(3):
                time.sleep(0.01 * i)
                stores[i].barrier(3, name="b")
                order.append(round_)
        threads = [threading.Thread(target=member, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert order == sorted(order) and len(order) == 9


def test_wrong_token_cannot_read_or_write(server, store):
    store.set("secret", "s")
    intruder = Store(server.endpoint, "not-the-token", timeout=20)
    start = time.monotonic()
    with pytest.raises(StoreError, match="authentication failed .*PHALANX_STORE_TOKEN"):
        intruder.get("secret")
    with pytest.raises(StoreError, match="authentication failed"):
        intruder.set("secret", "overwritten")
    assert time.monotonic() - start < 5          # the failed handshake is reported, not waited out
    intruder.close()
    assert store.get("secret") == b"s"


def test_from_env(server, monkeypatch):
    monkeypatch.setenv("PHALANX_STORE_ENDPOINT", server.endpoint)
    monkeypatch.setenv("PHALANX_STORE_TOKEN", server.token)
    s = Store.from_env(timeout=3)
    s.set("e", "1")
    assert s.get("e") == b"1"
    monkeypatch.delenv("PHALANX_STORE_TOKEN")
    with pytest.raises(StoreError, match="PHALANX_STORE_TOKEN"):
        Store.from_env()


def test_values_must_be_bytes(store):
    with pytest.raises(TypeError, match="bytes or str"):
        store.set("k", 3)


def _client_socket(server):
    """A raw socket that passes the store's handshake, as every process of the job can."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    StoreCredentials(server.token).secure_client(sock, server.security)
    sock.connect(server.endpoint)
    return sock


def _raw_request(server, frames, timeout_ms=2000):
    sock = _client_socket(server)
    try:
        sock.send_multipart(frames)
        if not sock.poll(timeout_ms):
            return None
        return sock.recv_multipart()
    finally:
        sock.close()


def _error_of(reply):
    assert reply is not None, "the server did not answer"
    _, ok, error = msgpack.unpackb(b"".join(reply))
    assert not ok
    return error


def test_malformed_and_oversized_messages_get_error_replies(server, store):
    frame = b"0" * FRAME_BYTES
    assert "exceeds" in _error_of(_raw_request(server, [frame, b"0"]))          # over 1 MiB
    assert "expected frames of" in _error_of(_raw_request(server, [b"a", b"b", b"c"]))
    assert "malformed request" in _error_of(_raw_request(server, [b""]))
    assert "malformed request" in _error_of(_raw_request(server, [b"\xc1 not msgpack"]))
    assert "malformed request" in _error_of(_raw_request(server,
                                                         [msgpack.packb([1, "no_such_op"])]))
    assert "failed" in _error_of(_raw_request(server, [msgpack.packb([1, "add", "k", "x"])]))
    assert "takes 2 argument(s)" in _error_of(_raw_request(server, [msgpack.packb([1, "set"])]))
    body = msgpack.packb([1, "set", "split", b"v" * 100])
    assert msgpack.unpackb(b"".join(_raw_request(server, [body[:50], body[50:]])))[1] is False
    # a frame well past FRAME_BYTES: zmq drops the connection before reading it; no reply
    assert _raw_request(server, [frame + bytes(8192)], timeout_ms=500) is None
    store.set("alive", "yes")
    assert store.get("alive") == b"yes"


def test_values_up_to_the_limit_travel_in_frames(store):
    value = bytes(range(256)) * (3 * FRAME_BYTES // 256 + 7)       # a bit over 3 frames
    with StoreServer() as big:
        with Store(big.endpoint, big.token, timeout=10) as client:
            client.set("big", value)
            assert client.get("big") == value
    with pytest.raises(StoreError, match="exceeds"):        # the fixture's server: 1 MiB
        store.set("big", value)
    store.set("after", "big")
    assert store.get("after") == b"big"


def test_fuzzing_leaves_the_server_serving(server, store):
    rng = random.Random(0)
    sock = _client_socket(server)
    good = msgpack.packb([1, "set", "k", b"v"])
    for i in range(300):
        if i % 2:          # random frames
            frames = [rng.randbytes(rng.randint(0, 200)) for _ in range(rng.randint(1, 4))]
        else:              # truncated valid-looking requests
            frames = [good[:rng.randint(0, len(good) - 1)]]
        sock.send_multipart(frames)
    answered = 0
    while sock.poll(500):
        sock.recv_multipart()
        answered += 1
    sock.close()
    assert answered == 300                     # every bad message got an error reply
    # raw TCP garbage that is not even ZMTP: zmq drops the connection, the server lives on
    for payload in (b"\xff" * 64, b"GET / HTTP/1.1\r\n\r\n", struct.pack("!Q", 2 ** 63)):
        with socket.create_connection((server.host, server.port), timeout=2) as raw:
            raw.sendall(payload)
    store.set("after", "fuzz")
    assert store.get("after") == b"fuzz" and not store.check("k")


@pytest.mark.timeout(30)
def test_standalone_store_command_serves_clients_with_its_token():
    """`phalanx store --port P --token T` serves on loopback until it is stopped."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "phalanx.launcher", "store", "--port",
                             str(port), "--token", "cli-token"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = proc.stdout.readline()
        assert f"tcp://127.0.0.1:{port}" in first, first
        client = Store(f"tcp://127.0.0.1:{port}", "cli-token", timeout=10)
        client.set("k", b"v")
        assert client.get("k") == b"v"
        client.close()
        intruder = Store(f"tcp://127.0.0.1:{port}", "wrong-token", timeout=2)
        with pytest.raises(StoreError):
            intruder.get("k")
        intruder.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


# -- arguments the client refuses, requests the server survives --------------------------------
@pytest.mark.parametrize("call,error,match", [
    (lambda s: s.get("k", timeout=float("inf")), ValueError, "timeout .*inf"),
    (lambda s: s.get("k", timeout=float("nan")), ValueError, "timeout .*nan"),
    (lambda s: s.wait(["k"], timeout=-1), ValueError, "timeout .*-1"),
    (lambda s: s.get("k", timeout="10"), TypeError, "timeout .*str '10'"),
    (lambda s: s.get(b"k"), TypeError, "key must be a str, got bytes b'k'"),
    (lambda s: s.set(7, b"v"), TypeError, "key must be a str, got int 7"),
    (lambda s: s.add("k", "1"), TypeError, "amount must be an int, got str '1'"),
    (lambda s: s.wait([b"a", "b"]), TypeError, "keys must be a str, got bytes"),
    (lambda s: s.check(b"ab"), TypeError, "keys must be a str or a list of str, got bytes"),
    (lambda s: s.keys(prefix=3), TypeError, "prefix must be a str, got int 3"),
    (lambda s: s.barrier(0), ValueError, "world_size must be >= 1, got 0"),
])
def test_client_rejects_bad_arguments_naming_them(store, call, error, match):
    with pytest.raises(error, match=match):
        call(store)
    store.set("still", "serving")
    assert store.keys("still") == ["still"]


def test_client_timeout_must_be_finite():
    with pytest.raises(ValueError, match="timeout .*inf"):
        Store("tcp://127.0.0.1:1", "t", timeout=float("inf"))
    import datetime
    assert Store("tcp://127.0.0.1:1", "t", timeout=datetime.timedelta.max).timeout == 1e8


POISON = [
    [1, "get", "k", float("inf")], [2, "get", "k", float("nan")], [3, "get", "k", -0.5],
    [4, "wait", ["k"], -5.0], [5, "get", "k", "soon"], [6, "wait", "k", 1.0],
    [7, "set", 5, b"v"], [8, "set", b"bytes-key", b"v"], [9, "set", "k", "str value"],
    [10, "add", 7, 1], [11, "add", "n", "x"], [12, "add", "n", 2 ** 63],
    [13, "compare_set", "k", 1, b"v"], [14, "check", [1, 2]], [15, "keys", b"pre"],
    [16, "keys", None], [17, "delete", ["k"]], [18, "wait", [["k"]], 1.0],
    [[19], "ping"], [{"id": 1}, "ping"], [True, "ping"], [20, ["get"], "k", 1],
    [21, "ping", "extra"], [],
]


def _deep(depth):
    obj = 1
    for _ in range(depth):
        obj = [obj]
    return obj


def test_server_survives_poison_requests_with_valid_auth(server, store):
    bodies = [msgpack.packb(r) for r in POISON]
    bodies += [msgpack.packb([_deep(600), "ping"]), msgpack.packb([1, "set", "k", _deep(600)]),
               msgpack.packb("just a string"), msgpack.packb({"a": 1}), msgpack.packb(None),
               msgpack.packb([1, "add", "n", 1]) + b"trailing", msgpack.ExtType(3, b"x").data]
    for body in bodies:
        reply = _raw_request(server, [body])
        assert reply is not None, f"no answer to {body[:60]!r}"
        assert not msgpack.unpackb(b"".join(reply), raw=False)[1], body[:60]
    assert server.alive()
    huge = msgpack.packb([30, "get", "huge-wait", 1e308])     # parks (cut to MAX_TIMEOUT)
    assert _raw_request(server, [huge], timeout_ms=300) is None
    store.set("n", "1")       # "add n 2**63" must not have stored anything odd
    assert store.add("n", 1) == 2
    assert all(isinstance(k, str) for k in store.keys())


def _random_value(rng, depth=0):
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.randint(-2 ** 63, 2 ** 64 - 1)
    if kind == 1:
        return rng.choice([float("inf"), float("-inf"), float("nan"), 1e308, -0.0, 0.5])
    if kind == 2:
        return rng.randbytes(rng.randint(0, 8))
    if kind == 3:
        return rng.choice(["k", "", "a/b", "\u2603", "x" * 100])
    if kind == 4:
        return rng.choice([None, True, False])
    if kind == 5:
        return msgpack.ExtType(rng.randint(0, 127), rng.randbytes(3))
    if kind in (6, 7):
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(["a", "b", "c"]): _random_value(rng, depth + 1) for _ in range(2)}


def test_fuzzing_with_valid_auth_leaves_the_server_serving(server, store):
    rng = random.Random(1)
    sock = _client_socket(server)
    ops = list(StoreServer._ops)
    for _ in range(600):
        op = rng.choice(ops + ["bogus"])
        args = [_random_value(rng) for _ in range(rng.randint(0, 4))]
        rid = rng.choice([rng.randint(0, 1000), _random_value(rng)])
        sock.send_multipart([msgpack.packb([rid, op, *args])])
    answered = 0
    while sock.poll(1000):
        sock.recv_multipart()
        answered += 1
    sock.close()
    assert server.alive()
    # requests that parked (a valid wait with a long timeout) are answered later, not now
    assert answered > 500
    assert all(isinstance(k, str) for k in store.keys())
    store.set("after", "fuzz")
    assert store.get("after") == b"fuzz"


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_store_thread_fails_local_calls_at_once(monkeypatch):
    server = StoreServer().start()
    client = Store(server.endpoint, server.token, timeout=600, local_server=server)
    client.set("k", "v")

    def broken(*_):
        raise MemoryError("simulated")
    monkeypatch.setattr(server, "_poll_ms", broken)      # the serving loop's next turn dies
    deadline = time.monotonic() + 5
    while server.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not server.alive() and "MemoryError: simulated" in server.failure
    start = time.monotonic()
    with pytest.raises(StoreError, match="stopped serving .*MemoryError: simulated"):
        client.get("never", timeout=600)
    assert time.monotonic() - start < 2
    client.close()
    server.close()


def test_a_signal_while_a_request_is_handled_stops_the_server():
    """`phalanx store` turns SIGTERM into SignalReceived in the main thread, which serves. The
    server drops requests that break it (`except Exception`) and serves on; a signal landing
    inside one was dropped the same way, and the store never exited (seen under load)."""
    from phalanx.launcher.agent import SignalReceived
    server = StoreServer(port=0, token="t")
    client = Store(server.endpoint, "t", timeout=5)

    def interrupted(frames):
        raise SignalReceived(15)        # as if SIGTERM arrived while this request was handled
    server._handle = interrupted
    threading.Thread(target=lambda: _unanswered(client), daemon=True).start()
    give_up = threading.Timer(5, server._stop.set)   # swallowed, it would serve on: end it
    give_up.start()
    try:
        with pytest.raises(SignalReceived):
            server.serve_forever()
    finally:
        give_up.cancel()
        client.close()


def _unanswered(client):
    with pytest.raises(StoreError):
        client.set("k", b"v", timeout=1)
