"""Rendezvous without a launcher, as PyTorch tutorials do it:

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", "29500"
    dist.init_process_group("gloo", rank=rank, world_size=world_size)      # init_method env://
    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:29500", rank=r, world_size=n)
    dist.init_process_group("gloo", init_method="file:///shared/job-rdzv", rank=r, world_size=n)

Rank 0 serves a phalanx `StoreServer` at MASTER_ADDR:MASTER_PORT; every rank (rank 0 too)
connects to it as a client. The store and the zmq backend authenticate every peer with the job
token, found here in this order:
1. `PHALANX_STORE_TOKEN`, when set (it must be the same on every rank);
2. on a loopback MASTER_ADDR only, a file that rank 0 writes with a fresh random token, readable
   by this user alone (mode 0600, in a 0700 directory: $XDG_RUNTIME_DIR/phalanx, else
   ~/.cache/phalanx), named by the port; the other ranks, the same user on the same host,
   read it. A stale file from an earlier job is noticed (the store rejects its token) and read
   again until rank 0 has replaced it.
Otherwise (ranks on several hosts and no token) it refuses: export PHALANX_STORE_TOKEN.

With `file://PATH` (or `store=FileStore(...)`) the ranks meet in that file instead, on one host
or on a file system the hosts share: rank 0 serves the store at MASTER_ADDR when set, else at
the address of its host name (as PyTorch's Gloo does), under PHALANX_STORE_TOKEN or a fresh
token, and leaves the endpoint and token in the file, which is private to the user.

Once the store is up, its endpoint and token are put in this process's environment
(`PHALANX_STORE_ENDPOINT`, `PHALANX_STORE_TOKEN`), exactly as `phalanx run` does, so the backends
(zmq, nccl) find it the same way; local ranks are counted from the hostnames each rank publishes.
"""
import atexit
import ipaddress
import os
import socket
import stat
import time
from urllib.parse import urlparse

from .env import Environment
from .file_store import FileStore
from .store import (ENDPOINT_ENV, TOKEN_ENV, Store, StoreError, StoreServer, StoreTimeout,
                    new_token)

_PREFIX = "phalanx_standalone"


class Rendezvous:
    """What `init_process_group` needs from a launcher-less start: the environment it would
    have found, and the store server this process serves (rank 0) to close at teardown."""

    def __init__(self, environment, server=None, token_file=None, environ=None):
        self.environment, self.server, self.token_file = environment, server, token_file
        self._environ, self._saved = environ, {}

    def publish(self, endpoint, token):
        """Put the store in the environment, where the backends look (as under `phalanx run`);
        `close` restores what was there."""
        for name, value in ((ENDPOINT_ENV, endpoint), (TOKEN_ENV, token)):
            self._saved[name] = self._environ.get(name)
            self._environ[name] = value

    def close(self):
        if self.server is not None:
            self.server.close()
            self.server = None
        _remove(self.token_file)
        self.token_file = None
        for name, value in self._saved.items():
            if value is None:
                self._environ.pop(name, None)
            else:
                self._environ[name] = value
        self._saved = {}


FILE_SCHEME = "file://"
_FILE_KEY = f"{_PREFIX}/store"      # "endpoint token" of rank 0's store, in the FileStore


def master_from(init_method, environ):
    """(host, port) from `tcp://host:port` or from MASTER_ADDR/MASTER_PORT (env://); None when
    neither names a master."""
    if init_method is not None and init_method.startswith("tcp://"):
        url = urlparse(init_method)
        if not url.hostname or not url.port:
            raise ValueError(f"init_method={init_method!r} must look like tcp://HOST:PORT")
        return url.hostname, url.port
    if init_method is not None and init_method != "env://":
        scheme = init_method.split("://", 1)[0] if "://" in init_method else init_method
        raise NotImplementedError(
            f"init_method={init_method!r}: the {scheme!r} rendezvous is not supported; use "
            f"'env://' (MASTER_ADDR/MASTER_PORT), 'tcp://HOST:PORT' or 'file://PATH'")
    addr, port = environ.get("MASTER_ADDR"), environ.get("MASTER_PORT")
    if not addr and not port:
        return None
    if not addr or not port:
        raise ValueError(f"init_method env:// needs both MASTER_ADDR and MASTER_PORT (got "
                         f"MASTER_ADDR={addr!r}, MASTER_PORT={port!r})")
    try:
        return addr.strip("[]"), int(port)
    except ValueError:
        raise ValueError(f"MASTER_PORT={port!r} is not a port number") from None


def rank_and_size(rank, world_size, environ):
    """PyTorch's rule: the arguments, else RANK / WORLD_SIZE from the environment."""
    def pick(given, name):
        if given not in (None, -1):
            return int(given)
        value = environ.get(name)
        if value is None:
            raise ValueError(f"init_process_group without a launcher needs {name.lower()}: "
                             f"pass {name.lower()}= or set {name}")
        return int(value)
    r, n = pick(rank, "RANK"), pick(world_size, "WORLD_SIZE")
    if n < 1 or not 0 <= r < n:
        raise ValueError(f"rank={r}, world_size={n}: expected world_size >= 1 and "
                         f"0 <= rank < world_size")
    return r, n


def is_loopback(host):
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
        except OSError:
            return False


def address_of(host):
    """The IP address `host` names, IPv4 or IPv6 (a name is resolved, IPv4 first, as
    `socket.gethostbyname` does, which knows no IPv6)."""
    host = host.strip("[]")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError as e:
        raise ValueError(f"cannot resolve the master's host name {host!r} ({e}); set "
                         f"MASTER_ADDR (or the host given) to an address of the master's "
                         f"host") from None
    found.sort(key=lambda info: info[0] != socket.AF_INET)
    return found[0][4][0]


def bind_address(host):
    """Where a master named `host` serves the store: the loopback address it names, else every
    interface (every IPv6 one too for an IPv6 address)."""
    if is_loopback(host):
        return address_of(host)
    return "::" if ":" in host else "0.0.0.0"


def endpoint_of(host, port):
    """`tcp://host:port`, an IPv6 address in brackets."""
    host = host.strip("[]")
    return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"


def token_dir(environ=None):
    environ = os.environ if environ is None else environ
    runtime = environ.get("XDG_RUNTIME_DIR")
    base = runtime if runtime and os.path.isdir(runtime) else \
        os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "phalanx")


def token_path(port, environ=None):
    return os.path.join(token_dir(environ), f"store-token-{port}")


def _write_token(path, token):
    """Atomically replace `path` with `token`, readable by this user only."""
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    _check_private(directory, is_dir=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, token.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _read_token(path):
    """The token in `path`, or None while it is not there; refuses a file another user could
    have written or can read."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    try:
        info = os.fstat(fd)
        if info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise PermissionError(
                f"the store token file {path} is not private to this user (owner uid "
                f"{info.st_uid}, mode {stat.filemode(info.st_mode)}); remove it, or export "
                f"{TOKEN_ENV} on every rank")
        return os.read(fd, 4096).decode().strip() or None
    finally:
        os.close(fd)


def _check_private(directory, is_dir):
    info = os.stat(directory)
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise PermissionError(
            f"{directory} (for the store token file) is not private to this user (owner uid "
            f"{info.st_uid}, mode {stat.filemode(info.st_mode)}); fix it or export "
            f"{TOKEN_ENV} on every rank")


def _remove(path):
    if path:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def start(init_method, rank, world_size, timeout, environ=None):
    """Serve (rank 0) and join the store; returns a `Rendezvous`."""
    environ = os.environ if environ is None else environ
    host, port = master_from(init_method, environ)
    rank, size = rank_and_size(rank, world_size, environ)
    given = environ.get(TOKEN_ENV)
    loopback = is_loopback(host)
    if not given and not loopback:
        raise RuntimeError(
            f"init_process_group: MASTER_ADDR={host} is not a loopback address, so the ranks "
            f"cannot share a token file; export the same secret {TOKEN_ENV} on every rank "
            f"(e.g. {TOKEN_ENV}=$(python -c 'import secrets; print(secrets.token_hex(16))')) "
            f"so that each rank can authenticate the others")
    server = token_file = None
    deadline = time.monotonic() + timeout
    if rank == 0:
        token = given or new_token()
        try:
            server = StoreServer(host=bind_address(host), port=port, token=token).start()
        except StoreError as e:
            raise RuntimeError(f"rank 0 cannot serve the rendezvous store at {host}:{port} "
                               f"({e}); is MASTER_PORT in use by another job?") from None
        if not given:
            token_file = token_path(port, environ)
            _write_token(token_file, token)
            atexit.register(_remove, token_file)
    try:
        store = _connect(host, port, given, f"rank {rank}", environ, deadline)
        rendezvous = _join(store, rank, size, "standalone", deadline, environ)
    except BaseException:
        if server is not None:
            server.close()
        _remove(token_file)
        raise
    store.close()
    rendezvous.server, rendezvous.token_file = server, token_file
    return rendezvous


def from_store(store, rank, world_size, timeout, environ=None):
    """`init_process_group(store=...)`: the ranks meet in a phalanx `Store` the caller made."""
    environ = os.environ if environ is None else environ
    if isinstance(store, FileStore):
        return from_file(store, rank, world_size, timeout, environ)
    if not hasattr(store, "endpoint") or not getattr(store, "token", None):
        raise TypeError(f"init_process_group(store=...) needs a phalanx.distributed.Store "
                        f"(TCPStore) with a token, got {type(store).__name__}")
    if rank in (None, -1) or world_size in (None, -1):
        raise ValueError("init_process_group(store=...) needs rank= and world_size=, as in "
                         "PyTorch")
    rank, size = rank_and_size(rank, world_size, environ)
    return _join(store, rank, size, "store", time.monotonic() + timeout, environ)


def from_file(where, rank, world_size, timeout, environ=None):
    """`init_method="file://PATH"` or `store=FileStore(...)`: rank 0 serves the job's store and
    leaves its endpoint and token in the file; the others read them there."""
    environ = os.environ if environ is None else environ
    rank, size = rank_and_size(rank, world_size, environ)
    deadline = time.monotonic() + timeout
    if isinstance(where, FileStore):
        files = where
    else:
        path = where[len(FILE_SCHEME):]
        if not path:
            raise ValueError(f"init_method={where!r} must name a file, e.g. "
                             f"file:///shared/job-rendezvous")
        files = FileStore(path, size)
    server = None
    try:
        if rank == 0:
            host = environ.get("MASTER_ADDR") or socket.gethostname()
            server = StoreServer(host=address_of(host), port=0,
                                 token=environ.get(TOKEN_ENV) or new_token()).start()
            files.set(_FILE_KEY, f"{server.endpoint} {server.token}")
        store = _connect_through(files, f"rank {rank}", deadline)
        rendezvous = _join(store, rank, size, "file", deadline, environ)
        store.close()
    except BaseException:
        if server is not None:
            server.close()
        raise
    finally:
        if files is not where:
            files.close()       # the last of the ranks removes the file
    rendezvous.server = server
    return rendezvous


def _connect_through(files, who, deadline):
    """A client of the store named in the FileStore `files`; an older job's entry (its store
    gone, or under another token) is read again until rank 0 has replaced it."""
    last = None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError(
                f"{who}: no rendezvous store answered through {files.path} within the timeout "
                f"({last or 'rank 0 has not written it'}); is rank 0 running with the same "
                f"file, and can this host reach its host name (or MASTER_ADDR)?")
        try:
            endpoint, token = files.get(_FILE_KEY, timeout=left).decode().split(" ")
        except StoreTimeout:
            continue
        store, why = _answering(endpoint, token, left)
        if store is not None:
            return store
        last = f"{endpoint}: {why}"


def _join(store, rank, size, source, deadline, environ):
    local_rank, local_size = _local_ranks(store, rank, size, deadline)
    environment = Environment(rank, size, local_rank, local_size, source=source,
                              under_mpi=False, store_endpoint=store.endpoint)
    rendezvous = Rendezvous(environment, environ=environ)
    rendezvous.publish(store.endpoint, store.token)
    return rendezvous


def _connect(host, port, token, who, environ, deadline):
    """A client of the store that answered a ping under our token; with a token file, read the
    file until it holds the token of the server that is up (an older job's file is replaced by
    rank 0 as it starts)."""
    endpoint = endpoint_of(host, port)
    last = None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            where = f"the token file {token_path(port, environ)}" if not token else TOKEN_ENV
            raise RuntimeError(
                f"{who}: the rendezvous store at {host}:{port} did not accept us within "
                f"the timeout ({last or 'no token yet'}); is rank 0 running with the same "
                f"MASTER_ADDR/MASTER_PORT, and does {where} hold its token?")
        current = token or _read_token(token_path(port, environ))
        if current is None:
            time.sleep(0.05)
            continue
        store, last = _answering(endpoint, current, left)   # not up yet, or a stale token
        if store is not None:
            return store


def _answering(endpoint, token, left):
    """(a client of the store at `endpoint`, None) if it answers a ping under `token`, else
    (None, why not), after a short pause before the caller tries again."""
    store = Store(endpoint, token, timeout=max(min(left, 300.0), 0.1))
    try:
        store.ping(timeout=min(2.0, max(left, 0.1)))
        return store, None
    except StoreError as e:
        store.close()
        time.sleep(0.1)
        return None, str(e)


def _local_ranks(store, rank, size, deadline):
    """This rank's index among the ranks on its host, and how many those are."""
    store.set(f"{_PREFIX}/host/{rank}", socket.gethostname().encode())
    keys = [f"{_PREFIX}/host/{r}" for r in range(size)]
    store.wait(keys, timeout=max(deadline - time.monotonic(), 0.1))
    hosts = [store.get(k).decode() for k in keys]
    mine = hosts[rank]
    same = [r for r, h in enumerate(hosts) if h == mine]
    return same.index(rank), len(same)
