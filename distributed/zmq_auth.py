"""Authentication of ZeroMQ connections by the job token, shared by the rendezvous store
(store.py) and the zmq backend's transport (zmq_transport.py).

A ZeroMQ security server admits a connection only after its handshake, and asks its context's
authentication hook (ZAP, RFC 27) whether the credentials shown are good: `Gatekeeper` is that
hook. Until it says yes, ZeroMQ hands over nothing the peer sent and queues none of it, so a
process without the token can neither be read nor make anyone buffer its bytes (each frame of
a handshake is bounded by the socket's MAXMSGSIZE). The credentials are HMAC-SHA256 of the
token and a label naming their use, so the token itself never travels and each use has its own:
- `Credentials`: one per rank of a zmq process group (the connection's rank comes from them);
- `StoreCredentials`: the store's, one for its server and one that every client shares.

Mechanisms: `plain` (ZeroMQ's PLAIN: the client shows a password; nothing is encrypted) or
`curve` (CurveZMQ: both ends prove their keys, every message is encrypted and authenticated, so
a captured message can be neither read nor replayed on another connection). `security_for`
chooses for rank traffic, `store_security` for the store.

Each ZeroMQ context has its own hook (`inproc://zeromq.zap.01` is per context): the store
server and each transport keep their own context and gatekeeper, so one process can host both.
This module imports only the standard library and pyzmq: the launcher imports it through the
store, and must start fast.
"""
import hashlib
import hmac
import ipaddress
import logging
import os
import threading

import zmq
import zmq.utils.z85

SECURITY_ENV = "PHALANX_ZMQ_SECURITY"
ZAP_ENDPOINT = "inproc://zeromq.zap.01"      # where libzmq asks (RFC 27)

log = logging.getLogger("phalanx.distributed")


def is_loopback(host):
    """Whether `host` is a loopback IP address (names are not resolved)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def security_for(host):
    """`plain` where the ranks talk over loopback, `curve` where bytes cross a network."""
    chosen = os.environ.get(SECURITY_ENV, "").lower()
    if chosen:
        if chosen not in ("plain", "curve"):
            raise ValueError(f"{SECURITY_ENV}={chosen!r}: choose 'plain' (authenticated "
                             f"handshake) or 'curve' (authenticated and encrypted)")
    else:
        chosen = "plain" if is_loopback(host) else "curve"
    if chosen == "curve" and not zmq.has("curve"):
        raise RuntimeError(f"ranks on different hosts encrypt their traffic with CurveZMQ, but "
                           f"this libzmq ({zmq.zmq_version()}) was built without it; install "
                           f"pyzmq from its wheels (pip install --force-reinstall pyzmq), or, "
                           f"on a network only this job's hosts can reach, set "
                           f"{SECURITY_ENV}=plain")
    return chosen


def store_security(host):
    """`curve` wherever libzmq has it, on loopback too; else `security_for(host)`.

    Client and server must choose the same mechanism, each from the address it sees, and a
    store is named by many (a wildcard bind reached over 127.0.0.1, `localhost`, a host name),
    so the store does not choose by address. CURVE also proves the server to the client: a
    process squatting the store's port (on a shared host) cannot pose as the store nor learn
    a credential, as it could from a PLAIN client. The store's few small messages make the
    encryption's cost negligible. PHALANX_ZMQ_SECURITY (rank traffic's override) does not apply,
    except on a libzmq without CurveZMQ."""
    return "curve" if zmq.has("curve") else security_for(host)


def _derive(token, label):
    if not token:
        raise ValueError("authenticating ZeroMQ connections needs the job's store token; start "
                         "the job with `phalanx run` (or set PHALANX_STORE_TOKEN)")
    key = token.encode() if isinstance(token, str) else bytes(token)
    return hmac.new(key, label.encode(), hashlib.sha256).digest()


def _curve_pair(secret):
    """(public, secret) CurveZMQ keys, Z85-encoded, of a 32-byte secret."""
    secret = zmq.utils.z85.encode(secret)
    return zmq.curve_public(secret), secret


class Credentials:
    """Every rank's secret for one group, derived from the job token: HMAC-SHA256(token,
    group prefix, rank). Each rank can compute all of them, a process without the token none;
    a new group (a restart, a re-init, a subgroup) has new ones."""

    def __init__(self, token, prefix, size):
        if not token:
            raise ValueError("the zmq backend needs the job's store token to authenticate its "
                             "connections; start the job with `phalanx run` (or set "
                             "PHALANX_STORE_TOKEN)")
        self.secrets = [_derive(token, f"phalanx-zmq/{prefix}/{r}") for r in range(size)]
        self._curve = None

    def password(self, rank):
        return self.secrets[rank].hex().encode()

    def curve_pair(self, rank):
        """(public, secret) CurveZMQ keys of `rank`, Z85-encoded."""
        return _curve_pair(self.secrets[rank])

    def rank_of(self, mechanism, credentials):
        """The rank these handshake credentials prove, or None."""
        if mechanism == b"PLAIN" and len(credentials) == 2:
            user, password = credentials
            try:
                rank = int(user)
            except ValueError:
                return None
            if 0 <= rank < len(self.secrets) and hmac.compare_digest(password,
                                                                     self.password(rank)):
                return rank
        elif mechanism == b"CURVE" and len(credentials) == 1:
            if self._curve is None:
                self._curve = {zmq.utils.z85.decode(self.curve_pair(r)[0]): r
                               for r in range(len(self.secrets))}
            return self._curve.get(credentials[0])
        return None

    def admit(self, mechanism, credentials):
        """The User-Id of a connection with these credentials (its rank), or None."""
        rank = self.rank_of(mechanism, credentials)
        return None if rank is None else str(rank).encode()


class StoreCredentials:
    """A job service's credentials, derived from the job token: the server's CurveZMQ
    keypair (a client checks it talks to the job's server), and one client credential that
    every process of the job shares (they are equally trusted: each holds the token).
    `service`: "store" (the rendezvous store) or "heartbeat" (the agent's heartbeat monitor),
    each with keys of its own."""

    USER = b"store-client"

    def __init__(self, token, service="store"):
        self._password = _derive(token, f"phalanx-{service}/plain").hex().encode()
        self._server = _curve_pair(_derive(token, f"phalanx-{service}/curve-server"))
        self._client = _curve_pair(_derive(token, f"phalanx-{service}/curve-client"))
        self._client_public = zmq.utils.z85.decode(self._client[0])

    def admit(self, mechanism, credentials):
        """`USER` if these handshake credentials are a client's of this store, else None."""
        if mechanism == b"PLAIN" and len(credentials) == 2:
            ok = credentials[0] == self.USER and hmac.compare_digest(credentials[1],
                                                                     self._password)
        elif mechanism == b"CURVE" and len(credentials) == 1:
            ok = hmac.compare_digest(credentials[0], self._client_public)
        else:
            ok = False
        return self.USER if ok else None

    def secure_server(self, sock, security):
        if security == "plain":
            sock.setsockopt(zmq.PLAIN_SERVER, 1)
        else:
            sock.setsockopt(zmq.CURVE_PUBLICKEY, self._server[0])
            sock.setsockopt(zmq.CURVE_SECRETKEY, self._server[1])
            sock.setsockopt(zmq.CURVE_SERVER, 1)

    def secure_client(self, sock, security):
        if security == "plain":
            sock.setsockopt(zmq.PLAIN_USERNAME, self.USER)
            sock.setsockopt(zmq.PLAIN_PASSWORD, self._password)
        else:
            sock.setsockopt(zmq.CURVE_PUBLICKEY, self._client[0])
            sock.setsockopt(zmq.CURVE_SECRETKEY, self._client[1])
            sock.setsockopt(zmq.CURVE_SERVERKEY, self._server[0])


class Gatekeeper(threading.Thread):
    """Answers libzmq's authentication requests (ZAP) for one context: a connection is admitted
    only if `admit(mechanism, credentials)` names it (a User-Id, which ZeroMQ attaches to its
    every frame), else refused during the handshake. Construct it before the context's server
    sockets bind, so that none of them ever runs without it. It ends when the context is
    terminated."""

    def __init__(self, ctx, admit, where):
        super().__init__(name=f"phalanx-zmq-auth-{where}", daemon=True)
        self._sock = ctx.socket(zmq.REP)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.bind(ZAP_ENDPOINT)
        self._admit, self.where = admit, where
        self.refused = 0

    def run(self):
        sock = self._sock
        while True:
            try:
                request = sock.recv_multipart()
            except zmq.ContextTerminated:
                break
            version, request_id, _domain, address, _identity, mechanism, *creds = request + \
                [b""] * max(0, 6 - len(request))
            try:
                user = self._admit(mechanism, creds)
            except Exception:  # noqa: BLE001 - credentials we cannot even read are refused
                user = None
            if user is None:
                self.refused += 1
                if self.refused <= 3 or self.refused in (10, 100, 1000, 10000):
                    log.warning("%s: refused a %s connection from %s (%d so far): its "
                                "credentials are not this job's (a process without the job "
                                "token?)", self.where,
                                mechanism.decode(errors="replace") or "malformed",
                                address.decode(errors="replace"), self.refused)
                reply = [b"1.0", request_id, b"400", b"not this job's credentials", b"", b""]
            else:
                reply = [b"1.0", request_id, b"200", b"OK", user, b""]
            try:
                sock.send_multipart(reply)
            except zmq.ContextTerminated:
                break
        sock.close(0)
