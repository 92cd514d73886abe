"""The rendezvous key-value store: a ZeroMQ server and client speaking msgpack.

What protects what:
- Connections. The server admits a connection only after ZeroMQ's handshake proves a
  credential derived from the job's token (zmq_auth.py: a gatekeeper answers ZeroMQ's
  authentication hook, ZAP). Until then ZeroMQ delivers and queues nothing from the peer, so a
  process without the token can neither read nor write a key, nor make the server buffer its
  bytes: ZeroMQ bounds every frame, during the handshake too (MAXMSGSIZE, a little over
  `FRAME_BYTES`), and the ends cut larger messages in frames of `FRAME_BYTES`.
- The wire. The store speaks CurveZMQ wherever libzmq has it (`store_security`), on loopback
  too: the client proves the token to the server and the server to the client, and every
  message is encrypted and authenticated under keys of that connection alone, so bytes seen on
  the wire can be neither read, altered, nor replayed on another connection, and a process
  squatting the store's port can neither pose as the store nor learn a credential. (A libzmq
  without CurveZMQ falls back to PLAIN, which authenticates the client only and encrypts
  nothing: loopback only, or across hosts where PHALANX_ZMQ_SECURITY=plain says the network is
  trusted.) A message therefore carries no signature of its own.
- The client. It reads replies only from a connection that proved the store's key; a server
  that fails the handshake (a wrong token, an impostor) is reported with a fixed message, and
  a reply that does not parse, or answers another request, is never trusted.
- The server. A message is `[frame, ...]`, the frames of one msgpack list. Requests are
  `[request_id, op, *args]`; replies are `[request_id, ok, result_or_error]`. The server answers
  malformed and oversized messages, and requests whose arguments have the wrong types or values,
  with an error and keeps serving: even a token holder cannot knock it over. Whoever holds the
  token can read every key and stop the job: treat it as a password.
Values are bytes (str is encoded as UTF-8), as in PyTorch's TCPStore.

This module imports only the standard library, pyzmq and msgpack (and zmq_auth, which imports
no more): the launcher uses it, and the launcher must start fast.
"""
import datetime
import itertools
import math
import numbers
import os
import secrets
import sys
import threading
import time
import traceback
import weakref

import msgpack
import zmq
from zmq.utils.monitor import parse_monitor_message

from .errors import DistStoreError
from .zmq_auth import Gatekeeper, StoreCredentials, store_security

ENDPOINT_ENV = "PHALANX_STORE_ENDPOINT"
TOKEN_ENV = "PHALANX_STORE_TOKEN"
DEFAULT_TIMEOUT = 300.0
MAX_MESSAGE_BYTES = 64 << 20
FRAME_BYTES = 1 << 20              # the largest frame a client sends, and the server replies
_WIRE_FRAME_BYTES = FRAME_BYTES + 4096     # ZeroMQ's MAXMSGSIZE: a frame and CurveZMQ's framing
MAX_TIMEOUT = 1e8                  # seconds (about three years): longer waits are cut to it
_HANDSHAKE_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                     | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
_monitor_ids = itertools.count()
_CUTS_MEAN_REFUSED = 3    # handshakes in a row the server hung up on (~0.3 s of reconnects)

__all__ = ["Store", "StoreServer", "StoreError", "StoreTimeout", "new_token",
           "ENDPOINT_ENV", "TOKEN_ENV"]


class StoreError(DistStoreError):
    """The store rejected a request, or could not be reached."""


class StoreTimeout(StoreError, TimeoutError):
    """A store operation did not complete in time."""


def new_token():
    return secrets.token_hex(16)


def _frames(body):
    """`body` cut in frames of at most FRAME_BYTES (views, not copies)."""
    view = memoryview(body)
    return [view[i:i + FRAME_BYTES] for i in range(0, len(body), FRAME_BYTES)] or [b""]


def _host_of(endpoint):
    """The host of `tcp://host:port` (an IPv6 address keeps its brackets)."""
    return endpoint.split("://", 1)[-1].rsplit(":", 1)[0]


def _check_key(key, what="key"):
    if not isinstance(key, str):
        raise TypeError(f"store {what} must be a str, got {type(key).__name__} {key!r:.80}; "
                        f"decode bytes keys (key.decode()) and format numbers (str(n))")
    return key


def _check_keys(keys):
    """A str, or an iterable of str, as a list."""
    if isinstance(keys, str):
        return [keys]
    if isinstance(keys, (bytes, bytearray)) or not hasattr(keys, "__iter__"):
        raise TypeError(f"store keys must be a str or a list of str, got "
                        f"{type(keys).__name__} {keys!r:.80}")
    keys = list(keys)
    for key in keys:
        _check_key(key, "keys")
    return keys


def _check_timeout(timeout, what="timeout"):
    """Seconds (a real number or a timedelta), finite and >= 0, as a float."""
    if isinstance(timeout, datetime.timedelta):
        timeout = timeout.total_seconds()
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise TypeError(f"store {what} must be a number of seconds or a timedelta, got "
                        f"{type(timeout).__name__} {timeout!r:.80}")
    timeout = float(timeout)
    if not (math.isfinite(timeout) and timeout >= 0):
        raise ValueError(f"store {what} must be a finite number of seconds >= 0, got "
                         f"{timeout!r}; pass a large finite value to wait long")
    return min(timeout, MAX_TIMEOUT)


def _check_int(value, what):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"store {what} must be an int, got {type(value).__name__} {value!r:.80}")
    return int(value)


def _as_bytes(value, what):
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"store {what} must be bytes or str, got {type(value).__name__}; "
                    f"encode it first (e.g. str(x).encode() or pickle.dumps(x))")


class StoreServer:
    """Serves the key-value table on `tcp://host:port` (port 0 picks a free one).

    `start()` serves from a daemon thread (the launcher's way); `serve_forever()` serves from the
    calling thread (`phalanx store`). Blocking `get`/`wait` requests are parked, not polled: they
    are answered when their keys appear or their deadline passes.
    """

    def __init__(self, host="127.0.0.1", port=0, token=None, max_message_bytes=MAX_MESSAGE_BYTES):
        self.token = token or new_token()
        self.max_message_bytes = max_message_bytes
        host = host.strip("[]")                       # "[::1]" as in an endpoint, or "::1"
        self.security = store_security(host)
        credentials = StoreCredentials(self.token)
        self._ctx = zmq.Context()
        # the context's gatekeeper, up before the socket binds: no connection is ever admitted
        # without it (this context is the server's own, so a transport in this process has its
        # own gatekeeper)
        self._gatekeeper = Gatekeeper(self._ctx, credentials.admit, f"store on {host}")
        self._gatekeeper.start()
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        credentials.secure_server(self._sock, self.security)
        # zmq drops the connection of a peer sending a larger frame (and allocates no more for
        # it, handshake included); clients cut messages in frames of FRAME_BYTES
        self._sock.setsockopt(zmq.MAXMSGSIZE, _WIRE_FRAME_BYTES)
        self._sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
        if ":" in host:
            self._sock.setsockopt(zmq.IPV6, 1)
        address = f"[{host}]" if ":" in host else host
        try:
            if port:
                self._sock.bind(f"tcp://{address}:{port}")
            else:
                port = self._sock.bind_to_random_port(f"tcp://{address}")
        except zmq.ZMQError as e:
            self._sock.close()
            self._ctx.term()
            raise StoreError(f"store cannot bind tcp://{address}:{port}: {e}; pick another port "
                             f"(--rdzv-endpoint host:PORT) or use --standalone") from e
        self.host, self.port = host, int(port)
        self._gatekeeper.where = f"store at {self.endpoint}"
        self._data = {}
        self._waiters = []           # [deadline, identity, request_id, keys, reply_value_of]
        self._stop = threading.Event()
        self._thread = None
        self.failure = None          # why the serving loop died, if it did
        self._wake_recv = None

    @property
    def endpoint(self):
        host = "127.0.0.1" if self.host in ("0.0.0.0", "*", "::") else self.host
        return f"tcp://[{host}]:{self.port}" if ":" in host else f"tcp://{host}:{self.port}"

    @property
    def refused(self):
        """How many connections the gatekeeper refused (a wrong token that knew the store's key,
        or a guessed PLAIN password; other handshakes fail before it is asked)."""
        return self._gatekeeper.refused

    def start(self):
        self._thread = threading.Thread(target=self.serve_forever, name="phalanx-store",
                                        daemon=True)
        self._thread.start()
        return self

    def serve_forever(self):
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                if poller.poll(self._poll_ms()):
                    frames = self._sock.recv_multipart(copy=False)
                    try:
                        self._handle(frames)
                    except Exception:        # a request we failed to foresee: drop it, serve on
                        sys.stderr.write("[phalanx store] dropped a request that broke the "
                                         "server:\n" + traceback.format_exc())
                self._expire_waiters()
        except BaseException as e:
            self.failure = f"{type(e).__name__}: {e}"
            raise
        finally:
            # linger briefly: the replies just sent (a departing agent's last call) go out
            self._sock.close(linger=500)
            self._ctx.term()

    def alive(self):
        """Whether the serving thread started by `start()` is still serving."""
        return self._thread is not None and self._thread.is_alive()

    def close(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # -- protocol ---------------------------------------------------------------------------
    def _poll_ms(self):
        if not self._waiters:
            return 100
        wait = min(w[0] for w in self._waiters) - time.monotonic()
        return max(0, min(100, int(wait * 1000) + 1))

    def _reply(self, identity, request_id, ok, result):
        body = msgpack.packb([request_id, ok, result], use_bin_type=True)
        self._sock.send_multipart([identity, *_frames(body)])

    def _handle(self, frames):
        """One message of an authenticated client (ZeroMQ admits no other): `frames` are its
        identity, then the frames of its body."""
        identity, parts = bytes(frames[0]), frames[1:]
        size = sum(len(p) for p in parts)
        if size > self.max_message_bytes:
            return self._reply(identity, _request_id_of(parts[0]), False,
                               f"message of {size} bytes exceeds the store's limit of "
                               f"{self.max_message_bytes} bytes")
        if len(parts) > size // FRAME_BYTES + 1:
            return self._reply(identity, _request_id_of(parts[0]), False,
                               f"malformed message: {size} bytes in {len(parts)} frames; "
                               f"expected frames of {FRAME_BYTES} bytes, the last one shorter")
        try:
            request = msgpack.unpackb(b"".join(parts), raw=False)
            request_id, op, *args = request
            if not isinstance(request_id, int) or isinstance(request_id, bool):
                raise TypeError(f"request id must be an int, got {type(request_id).__name__}")
            handler = self._ops[op]
            arity = self._arity[op]
            if len(args) != arity:
                raise TypeError(f"{op} takes {arity} argument(s), got {len(args)}")
        except Exception as e:
            return self._reply(identity, None, False, f"malformed request: {e!r:.200}")
        try:
            handler(self, identity, request_id, *args)
        except Exception as e:
            self._reply(identity, request_id, False, f"{op} failed: {e!r:.200}")

    def _op_set(self, ident, rid, key, value):
        _check_key(key)
        self._data[key] = _bytes_arg(value)
        self._reply(ident, rid, True, None)
        self._wake(key)

    def _op_get(self, ident, rid, key, timeout):
        self._park(ident, rid, [_check_key(key)], timeout, lambda: self._data[key])

    def _op_wait(self, ident, rid, keys, timeout):
        self._park(ident, rid, _list_of_keys(keys), timeout, lambda: None)

    def _op_check(self, ident, rid, keys):
        self._reply(ident, rid, True, all(k in self._data for k in _list_of_keys(keys)))

    def _op_add(self, ident, rid, key, amount):
        _check_key(key)
        value = int(self._data.get(key, b"0")) + _check_int(amount, "amount")
        if not -2 ** 63 <= value < 2 ** 63:           # what a reply (msgpack int64) can carry
            raise OverflowError(f"counter {key!r} would become {value}, outside int64")
        self._data[key] = str(value).encode()
        self._reply(ident, rid, True, value)
        self._wake(key)

    def _op_compare_set(self, ident, rid, key, expected, desired):
        _check_key(key)
        expected, desired = _bytes_arg(expected), _bytes_arg(desired)
        current = self._data.get(key)
        if (current is None and expected == b"") or current == expected:
            self._data[key] = bytes(desired)
            self._reply(ident, rid, True, bytes(desired))
            self._wake(key)
        else:
            self._reply(ident, rid, True, current if current is not None else expected)

    def _op_delete(self, ident, rid, key):
        self._reply(ident, rid, True, self._data.pop(_check_key(key), None) is not None)

    def _op_keys(self, ident, rid, prefix):
        _check_key(prefix, "prefix")
        self._reply(ident, rid, True, sorted(k for k in self._data if k.startswith(prefix)))

    def _op_ping(self, ident, rid):
        self._reply(ident, rid, True, "pong")

    _ops = {"set": _op_set, "get": _op_get, "wait": _op_wait, "check": _op_check,
            "add": _op_add, "compare_set": _op_compare_set, "delete": _op_delete,
            "keys": _op_keys, "ping": _op_ping}
    _arity = {"set": 2, "get": 2, "wait": 2, "check": 1, "add": 2, "compare_set": 3,
              "delete": 1, "keys": 1, "ping": 0}

    def _park(self, ident, rid, keys, timeout, value_of):
        timeout = _check_timeout(timeout)
        if all(k in self._data for k in keys):
            return self._reply(ident, rid, True, value_of())
        self._waiters.append([time.monotonic() + timeout, ident, rid, keys, value_of])

    def _wake(self, key):
        still = []
        for w in self._waiters:
            if key in w[3] and all(k in self._data for k in w[3]):
                self._reply(w[1], w[2], True, w[4]())
            else:
                still.append(w)
        self._waiters = still

    def _expire_waiters(self):
        now = time.monotonic()
        expired = [w for w in self._waiters if w[0] <= now]
        if expired:
            self._waiters = [w for w in self._waiters if w[0] > now]
            for _, ident, rid, keys, _ in expired:
                missing = [k for k in keys if k not in self._data]
                self._reply(ident, rid, False, {"timeout": missing})


def _close_watched(sock, monitor):
    """Close a client socket and the reader of its monitor, in this order."""
    if not sock.closed:
        try:
            sock.disable_monitor()
        except zmq.ZMQError:
            pass
        sock.close(0)
    monitor.close(0)


def _request_id_of(frame):
    """The request id at the start of a message the server will not read whole, so that its
    error reply reaches the caller; None if there is none."""
    try:
        unpacker = msgpack.Unpacker(raw=False, max_buffer_size=FRAME_BYTES)
        unpacker.feed(frame)
        unpacker.read_array_header()
        request_id = unpacker.unpack()
    except Exception:  # noqa: BLE001 - no id to be found: the reply goes without one
        return None
    return request_id if type(request_id) is int else None


def _bytes_arg(value):
    if not isinstance(value, bytes):
        raise TypeError(f"values must be bytes, got {type(value).__name__}")
    return value


def _list_of_keys(keys):
    if not isinstance(keys, list):
        raise TypeError(f"keys must be a list of str, got {type(keys).__name__}")
    for key in keys:
        _check_key(key, "keys")
    return keys


class Store:
    """Client of a `StoreServer`; safe to share between threads.

    `timeout` (seconds) bounds every call unless the call passes its own. `get` waits for the key
    to appear, like PyTorch's TCPStore. Arguments are checked here, with errors that name them:
    keys are str, timeouts finite seconds (longer than MAX_TIMEOUT are cut to it). The launcher
    passes its own `local_server`, so that its calls fail at once when that server's thread died.
    """

    def __init__(self, endpoint, token, timeout=DEFAULT_TIMEOUT, local_server=None):
        if not token:
            raise StoreError(f"no token for the store at {endpoint}; pass token= or set "
                             f"{TOKEN_ENV}")
        if "://" not in endpoint:
            endpoint = f"tcp://{endpoint}"
        self.endpoint, self.token = endpoint, token
        self.timeout = _check_timeout(timeout)
        # a StoreServer in this process: calls fail at once if its thread died, instead of
        # waiting out their timeout (the launcher's agent must notice, and honour signals)
        self._local_server = local_server
        self._security = store_security(_host_of(endpoint).strip("[]"))
        self._credentials = StoreCredentials(token)
        self._ctx = zmq.Context.instance()
        self._open()
        self._lock = threading.Lock()
        self._next_id = 0
        self._barrier_rounds = {}

    @classmethod
    def from_env(cls, timeout=DEFAULT_TIMEOUT):
        endpoint = os.environ.get(ENDPOINT_ENV)
        token = os.environ.get(TOKEN_ENV)
        if not endpoint or not token:
            raise StoreError(f"{ENDPOINT_ENV} and {TOKEN_ENV} are not set; start the job with "
                             f"`phalanx run` (or set them to a `phalanx store`'s endpoint/token)")
        return cls(endpoint, token, timeout)

    def _open(self):
        """A socket connected to the store, and a watch on its handshakes: a server without
        our token (or not a store at all) is reported at once rather than by a timeout."""
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, _WIRE_FRAME_BYTES)      # what an impostor may send
        if _host_of(self.endpoint).startswith("["):
            sock.setsockopt(zmq.IPV6, 1)
        self._credentials.secure_client(sock, self._security)
        address = f"inproc://phalanx-store-monitor-{os.getpid()}-{next(_monitor_ids)}"
        sock.monitor(address, _HANDSHAKE_FAILED)
        monitor = self._ctx.socket(zmq.PAIR)
        monitor.setsockopt(zmq.LINGER, 0)
        # libzmq's I/O thread blocks (every socket of the context with it) on a monitor event
        # it cannot deliver: the queue is unbounded, and `_close_watched` stops the monitor
        # before closing its reader, also when a Store is dropped without close()
        monitor.setsockopt(zmq.RCVHWM, 0)
        monitor.connect(address)
        self._sock, self._monitor = sock, monitor
        self._closer = weakref.finalize(self, _close_watched, sock, monitor)
        self._poller = zmq.Poller()
        self._poller.register(sock, zmq.POLLIN)
        self._poller.register(monitor, zmq.POLLIN)
        sock.connect(self.endpoint)

    def _reopen(self):
        """A fresh connection: ZeroMQ gives up one whose handshake failed for good (and its
        queued requests with it)."""
        self._closer()
        self._open()

    def close(self):
        with self._lock:
            self._closer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __getstate__(self):
        return {"endpoint": self.endpoint, "token": self.token, "timeout": self.timeout}

    def __setstate__(self, state):
        self.__init__(**state)

    def __repr__(self):
        return f"Store({self.endpoint!r})"

    # -- the API ----------------------------------------------------------------------------
    def set(self, key, value, timeout=None):
        self._call("set", [_check_key(key), _as_bytes(value, "value")], key, timeout)

    def get(self, key, timeout=None):
        timeout = self._timeout(timeout)
        return self._call("get", [_check_key(key), timeout], key, timeout)

    def wait(self, keys, timeout=None):
        keys = _check_keys(keys)
        timeout = self._timeout(timeout)
        self._call("wait", [keys, timeout], keys, timeout)

    def check(self, keys):
        keys = _check_keys(keys)
        return self._call("check", [keys], keys)

    def add(self, key, amount=1):
        return self._call("add", [_check_key(key), _check_int(amount, "amount")], key)

    def compare_set(self, key, expected, desired, timeout=None):
        """Set `key` to `desired` if it holds `expected` (b"" matches a missing key); returns
        the value it holds afterwards."""
        return self._call("compare_set", [_check_key(key), _as_bytes(expected, "expected value"),
                                          _as_bytes(desired, "value")], key, timeout)

    def delete(self, key):
        return self._call("delete", [_check_key(key)], key)

    delete_key = delete

    def keys(self, prefix=""):
        return self._call("keys", [_check_key(prefix, "prefix")], prefix)

    def num_keys(self):
        return len(self.keys())

    def multi_set(self, keys, values):
        if len(keys) != len(values):
            raise ValueError(f"multi_set: {len(keys)} keys but {len(values)} values")
        for key, value in zip(keys, values):
            self.set(key, value)

    def multi_get(self, keys):
        return [self.get(key) for key in _check_keys(keys)]

    def set_timeout(self, timeout):
        """The default timeout of later calls (seconds or a timedelta)."""
        self.timeout = _check_timeout(timeout)

    def ping(self, timeout=None):
        return self._call("ping", [], None, self._timeout(timeout))

    def barrier(self, world_size, name="default", timeout=None):
        """Block until `world_size` callers reached the barrier `name`; reusable.

        Callers must pass the same barriers in the same order, like any collective.
        """
        if _check_int(world_size, "world_size") < 1:
            raise ValueError(f"store barrier world_size must be >= 1, got {world_size}")
        _check_key(name, "barrier name")
        round_ = self._barrier_rounds.get(name, 0)
        self._barrier_rounds[name] = round_ + 1
        prefix = f"barrier/{name}/{round_}"
        if self.add(f"{prefix}/arrived", 1) == world_size:
            self.set(f"{prefix}/done", b"1")
        self.wait([f"{prefix}/done"], timeout)

    # -- transport --------------------------------------------------------------------------
    def _timeout(self, timeout):
        return self.timeout if timeout is None else _check_timeout(timeout)

    def _check_local_server(self, op, key):
        server = self._local_server
        if server is not None and not server.alive():
            raise StoreError(f"store {op} of key {key!r}: the store server in this process "
                             f"({self.endpoint}) stopped serving"
                             + (f" ({server.failure})" if server.failure else ""))

    def _call(self, op, args, key, timeout=None):
        timeout = self._timeout(timeout)
        with self._lock:
            self._next_id += 1
            rid = self._next_id
            body = msgpack.packb([rid, op, *args], use_bin_type=True)
            if len(body) > MAX_MESSAGE_BYTES:
                raise StoreError(f"store {op} of key {key!r}: {len(body)} bytes exceeds the "
                                 f"limit of {MAX_MESSAGE_BYTES} bytes; store a path instead")
            self._handshakes_cut = 0
            if self._drain_monitor():         # a handshake failed since the last call: ZeroMQ
                self._reopen()                # gave that connection up; try afresh
            try:
                self._sock.send_multipart(_frames(body), zmq.NOBLOCK, copy=False)
            except zmq.Again:
                raise StoreTimeout(f"store {op} of key {key!r}: {self.endpoint} has not taken "
                                   f"the requests queued for it; is the store running and "
                                   f"reachable?") from None
            # The server answers a blocking get/wait at its deadline; allow for the transit.
            deadline = time.monotonic() + timeout + (1.0 if op in ("get", "wait") else 0.0)
            while True:
                self._check_local_server(op, key)
                left = deadline - time.monotonic()
                if left <= 0:
                    cut = (" (a connection to it closed during its handshake)"
                           if self._handshakes_cut else "")
                    raise StoreTimeout(
                        f"store {op} of key {key!r} at {self.endpoint} got no answer within "
                        f"{timeout:.1f} s{cut}; is the store running (the launcher, or `phalanx "
                        f"store`) and reachable?")
                # with a server in this process, wake up now and then to see it still serves
                step = min(left, 0.1) if self._local_server is not None else left
                ready = dict(self._poller.poll(int(step * 1000) + 1))
                if self._monitor in ready and self._drain_monitor():
                    self._reopen()
                    raise StoreError(
                        f"store {op} of key {key!r}: authentication failed at "
                        f"{self.endpoint}: the server there refused our handshake or could "
                        f"not prove the store's key, so it does not hold this job's token (is "
                        f"{TOKEN_ENV} the one the store was started with?) or is not a "
                        f"phalanx store")
                if self._sock not in ready:
                    continue
                reply = self._parse_reply(self._sock.recv_multipart(), op, key)
                if reply[0] == rid:
                    break                       # earlier, timed-out requests' replies are skipped
        _, ok, result = reply
        if ok:
            return result
        if isinstance(result, dict) and "timeout" in result:
            raise StoreTimeout(f"store {op} at {self.endpoint} timed out after {timeout:.1f} s "
                               f"waiting for key(s) {result.get('timeout')!r:.300}; did every "
                               f"rank reach this point? raise the timeout if startup is slow")
        raise StoreError(f"store {op} of key {key!r} at {self.endpoint} failed: {result!s:.500}")

    def _drain_monitor(self):
        """Whether a handshake was refused since the last look (a wrong token, not a store).
        One the peer cut off by closing (a store stopping or restarting) is only counted:
        ZeroMQ reconnects and the request goes out on the next connection."""
        refused = False
        while True:
            try:
                event = parse_monitor_message(
                    self._monitor.recv_multipart(zmq.NOBLOCK))["event"]
            except zmq.Again:
                return refused
            if event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
                # a CurveZMQ server of another token hangs up too, every time
                self._handshakes_cut += 1
                refused |= self._handshakes_cut >= _CUTS_MEAN_REFUSED
            else:
                refused = True

    def _parse_reply(self, frames, op, key):
        """`[request_id, ok, result]` from an authenticated server (ZeroMQ delivers nothing
        else); a reply that does not parse is refused without showing its content."""
        try:
            reply = msgpack.unpackb(b"".join(frames), raw=False)
            if not (isinstance(reply, list) and len(reply) == 3 and isinstance(reply[1], bool)):
                raise ValueError
        except Exception:  # noqa: BLE001 - whatever the bytes, the same error
            raise StoreError(f"store at {self.endpoint} sent a malformed reply to {op} of key "
                             f"{key!r}; is it a phalanx store of the same version?") from None
        return reply
