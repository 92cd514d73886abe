"""torch.distributed's store classes, on Phalanx's store (store.py): `TCPStore` with PyTorch's
signature, `HashStore` (a store private to this process) and `PrefixStore`.

Every Phalanx store authenticates its clients with a job token. A `TCPStore` finds it the way
`init_process_group` does without a launcher (standalone.py): `PHALANX_STORE_TOKEN` when set
(the same on every process), else, on a loopback host only, a file the master writes with a
fresh token, readable by this user alone. A `TCPStore` is accepted by
`init_process_group(store=...)`.
"""
import datetime
import os
import time

from . import standalone
from .store import TOKEN_ENV, Store, StoreServer, StoreTimeout, new_token

_WORKERS_KEY = "phalanx/tcpstore/workers"
_tenants = {}     # (host, port) -> [server, token file, users]: multi_tenant masters share one


class TCPStore(Store):
    """PyTorch's TCPStore: the master (`is_master=True`) serves the store at host_name:port
    (port 0: a free one, see `.port`), every instance is a client of it. With `world_size` and
    `wait_for_workers`, the master's constructor returns once that many clients (itself
    included) have connected, as in PyTorch."""

    def __init__(self, host_name, port, world_size=None, is_master=False,
                 timeout=datetime.timedelta(seconds=300), wait_for_workers=True,
                 multi_tenant=False, master_listen_fd=None, use_libuv=True):
        if master_listen_fd is not None:
            raise NotImplementedError("TCPStore(master_listen_fd=...) is not supported: the "
                                      "master binds host_name:port itself; leave it None")
        seconds = timeout.total_seconds() if isinstance(timeout, datetime.timedelta) \
            else float(timeout)
        deadline = time.monotonic() + seconds
        given = os.environ.get(TOKEN_ENV)
        if not given and not standalone.is_loopback(host_name):
            raise RuntimeError(
                f"TCPStore({host_name!r}): not a loopback host, so the processes cannot share "
                f"a token file; export the same secret {TOKEN_ENV} in every process (e.g. "
                f"{TOKEN_ENV}=$(python -c 'import secrets; print(secrets.token_hex(16))'))")
        self._tenant = None
        if is_master:
            port = self._serve(host_name, int(port), given, multi_tenant)
        try:
            probe = standalone._connect(host_name, int(port), given, "TCPStore", os.environ,
                                        deadline)
        except BaseException:
            self._release_server()
            raise
        endpoint, token = probe.endpoint, probe.token
        probe.close()
        super().__init__(endpoint, token, timeout=seconds)
        self.host, self.port = host_name, int(port)
        try:
            self.add(_WORKERS_KEY, 1)
            if is_master and world_size is not None and wait_for_workers:
                self._wait_for_workers(int(world_size), deadline)
        except BaseException:
            self.close()
            raise

    def _serve(self, host, port, given, multi_tenant):
        """Start (or, multi-tenant, share) the server, and without a given token write the
        master's token file; returns the server's port."""
        bind = standalone.bind_address(host)
        key = (bind, port)
        if multi_tenant and port and key in _tenants:
            _tenants[key][2] += 1
        else:
            server = StoreServer(host=bind, port=port, token=given or new_token()).start()
            key = (bind, server.port)
            token_file = None if given else standalone.token_path(server.port)
            if token_file is not None:
                standalone._write_token(token_file, server.token)
            _tenants[key] = [server, token_file, 1]
        self._tenant = key
        return key[1]

    def _wait_for_workers(self, world_size, deadline):
        while self.add(_WORKERS_KEY, 0) < world_size:
            if time.monotonic() > deadline:
                raise StoreTimeout(
                    f"TCPStore at {self.host}:{self.port}: {self.add(_WORKERS_KEY, 0)} of "
                    f"{world_size} workers connected before the timeout")
            time.sleep(0.01)

    def close(self):
        super().close()
        self._release_server()

    def _release_server(self):
        """A master's share of its server: the last user closes it and its token file."""
        if self._tenant is not None:
            entry = _tenants[self._tenant]
            entry[2] -= 1
            if entry[2] == 0:
                server, token_file, _ = _tenants.pop(self._tenant)
                server.close()
                standalone._remove(token_file)
            self._tenant = None

    def __repr__(self):
        return f"TCPStore({self.host!r}, {self.port})"


class HashStore(Store):
    """A store private to this process (PyTorch's in-memory HashStore): its own server on a
    free loopback port, under a fresh token."""

    def __init__(self):
        self._server = StoreServer(host="127.0.0.1", port=0).start()
        super().__init__(self._server.endpoint, self._server.token)

    def close(self):
        super().close()
        self._server.close()

    def __repr__(self):
        return "HashStore()"


class PrefixStore:
    """Every key of `store` seen through `prefix + "/"`, as PyTorch's PrefixStore."""

    def __init__(self, prefix, store):
        self.prefix, self.underlying_store = prefix, store

    def _key(self, key):
        return f"{self.prefix}/{key}"

    def set(self, key, value):
        self.underlying_store.set(self._key(key), value)

    def get(self, key):
        return self.underlying_store.get(self._key(key))

    def add(self, key, amount=1):
        return self.underlying_store.add(self._key(key), amount)

    def compare_set(self, key, expected, desired):
        return self.underlying_store.compare_set(self._key(key), expected, desired)

    def wait(self, keys, timeout=None):
        self.underlying_store.wait([self._key(k) for k in keys], timeout)

    def check(self, keys):
        return self.underlying_store.check([self._key(k) for k in keys])

    def delete_key(self, key):
        return self.underlying_store.delete_key(self._key(key))

    def num_keys(self):
        return len(self.underlying_store.keys(self._key("")))

    def multi_set(self, keys, values):
        self.underlying_store.multi_set([self._key(k) for k in keys], values)

    def multi_get(self, keys):
        return self.underlying_store.multi_get([self._key(k) for k in keys])

    def set_timeout(self, timeout):
        self.underlying_store.set_timeout(timeout)

    def __repr__(self):
        return f"PrefixStore({self.prefix!r}, {self.underlying_store!r})"
