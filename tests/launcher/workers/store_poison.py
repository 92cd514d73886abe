"""Sends the launcher's store what used to kill its thread — a get with an infinite or NaN
timeout, bytes and int keys — once through the client (which must refuse) and once as raw
requests on an authenticated connection (which the server must refuse), then checks the store
still serves."""
import os

import msgpack
import zmq

from phalanx.distributed.store import Store
from phalanx.distributed.zmq_auth import StoreCredentials, store_security

rank = int(os.environ["RANK"])
store = Store.from_env(timeout=30)
for call in (lambda: store.get("x", timeout=float("inf")),
             lambda: store.get("x", timeout=float("nan")),
             lambda: store.set(b"bytes-key", b"v"), lambda: store.add(7, 1)):
    try:
        call()
    except (TypeError, ValueError) as e:
        print(f"rank {rank}: client refused: {e}", flush=True)
    else:
        raise AssertionError("the client accepted a bad argument")

sock = zmq.Context.instance().socket(zmq.DEALER)
sock.setsockopt(zmq.LINGER, 0)
endpoint = os.environ["PHALANX_STORE_ENDPOINT"]
host = endpoint.split("://", 1)[1].rsplit(":", 1)[0].strip("[]")
StoreCredentials(os.environ["PHALANX_STORE_TOKEN"]).secure_client(sock, store_security(host))
sock.connect(endpoint)
for request in ([1, "get", "x", float("inf")], [2, "get", "x", float("nan")],
                [3, "set", b"bytes-key", b"v"], [4, "set", 7, b"v"], [5, "add", 8, 1]):
    sock.send(msgpack.packb(request))
    assert sock.poll(5000), f"the store did not answer {request}"
    _, ok, error = msgpack.unpackb(b"".join(sock.recv_multipart()), raw=False)
    assert not ok, request
sock.close()
store.set(f"done/{rank}", b"1")
assert all(isinstance(k, str) for k in store.keys())
store.barrier(int(os.environ["WORLD_SIZE"]), name="poisoned")
print(f"rank {rank}: the store survived", flush=True)
