"""Wiring for `phalanx run`: the store (served here or reached), the rendezvous, the worker
group and the heartbeat monitor, handed to the agent."""
import socket
import sys
import tempfile
import time

import psutil

from ..distributed.store import Store, StoreError, StoreServer, StoreTimeout
from .agent import Agent, AgentState, RestartBudget, SignalReceived
from .auth import TokenError, job_token
from .errors import tidy_log_dir
from .monitor import HeartbeatMonitor
from .rendezvous import RendezvousConfig, StoreRendezvous
from .workers import LocalWorkerGroup, WorkerSpec


def _is_local(host):
    """Whether `host` names this machine: a loopback or wildcard address, this host's name, or
    any name or address that resolves to an address of one of its interfaces (as torchrun
    decides whether to serve the store). An IPv6 address may come bracketed ("[::1]")."""
    host = host.strip("[]")
    if host in ("localhost", "0.0.0.0", "::", "*", socket.gethostname(), socket.getfqdn()):
        return True
    try:
        resolved = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    mine = {a.address.split("%")[0] for addrs in psutil.net_if_addrs().values() for a in addrs
            if a.family in (socket.AF_INET, socket.AF_INET6)}
    return any(ip.startswith("127.") or ip == "::1" or ip in mine for ip in resolved)


def _log(msg):
    print(f"[phalanx] {msg}", file=sys.stderr, flush=True)


def _token(config):
    try:
        return job_token(config.rdzv_token, config.rdzv_token_file,
                         multi_node=config.max_nodes > 1)
    except TokenError as e:
        raise SystemExit(f"phalanx run: {e}") from None


def open_store(config, token):
    """Serve the store when the endpoint is this host and its port is free; else connect."""
    server = None
    if _is_local(config.rdzv_host):
        try:
            server = StoreServer(config.rdzv_host, config.rdzv_port, token).start()
        except StoreError:
            if not config.rdzv_port:
                raise                      # a free port was asked for: a real failure
        endpoint = server.endpoint if server else f"tcp://{config.rdzv_host}:{config.rdzv_port}"
    else:
        endpoint = f"tcp://{config.rdzv_host}:{config.rdzv_port}"
    timeout = config.rdzv_conf.get("join_timeout", 600.0)
    store = Store(endpoint, token, timeout=timeout, local_server=server)
    if server is None:
        _await_store(store, timeout)
    return server, store


def _await_store(store, timeout, clock=time.monotonic):
    """Reach the store served by another agent, saying within seconds (and every 30 s after)
    when nobody answers, instead of waiting silently for the whole join timeout."""
    deadline = clock() + timeout
    said = None
    while True:
        try:
            store.ping(timeout=2.0)
        except StoreTimeout:
            now = clock()
            if now >= deadline:
                raise StoreError(f"nobody served the store at {store.endpoint} within "
                                 f"{timeout:g} s (--rdzv-conf join_timeout)") from None
            if said is None or now - said >= 30:
                _log(f"nobody serves the store at {store.endpoint} yet: the agent on that host "
                     f"serves it once started with the same --rdzv-endpoint (is it running, and "
                     f"is the address one of its interfaces?); waiting up to "
                     f"{deadline - now:.0f} s")
                said = now
            continue
        if said is not None:
            _log(f"reached the store at {store.endpoint}")
        return


def launch(config):
    """Run the job described by `config` (a cli.RunConfig); returns the process exit code."""
    token = _token(config)
    try:
        server, store = open_store(config, token)
    except SignalReceived as e:
        _log(f"{e} while reaching the store; exiting")
        return 128 + e.signum
    log_dir = config.log_dir or tempfile.mkdtemp(prefix=f"phalanx-{config.run_id}-")
    spec = WorkerSpec(
        entrypoint=config.entrypoint, nproc_per_node=config.nproc_per_node,
        module=config.module, no_python=config.no_python, run_id=config.run_id,
        log_dir=log_dir, tee=config.tee, local_ranks_filter=config.local_ranks_filter,
        heartbeat_timeout=config.heartbeat_timeout, progress_timeout=config.progress_timeout,
        grace_period=config.grace_period,
        show_host=config.max_nodes > 1,
        extra_env={"ROLE_NAME": config.role,
                   "TORCHELASTIC_MAX_RESTARTS": str(config.max_restarts)})
    watch = config.heartbeat_timeout > 0 or config.progress_timeout > 0
    monitor = (HeartbeatMonitor(token, config.heartbeat_timeout, config.progress_timeout)
               if watch and not config.no_python else None)
    conf = config.rdzv_conf
    rendezvous = StoreRendezvous(
        store, config.run_id, config.nproc_per_node,
        RendezvousConfig(min_nodes=config.min_nodes, max_nodes=config.max_nodes,
                         join_timeout=conf.get("join_timeout", 600.0),
                         last_call=conf.get("last_call_timeout", 2.0),
                         node_timeout=conf.get("node_timeout", 10.0)),
        node_rank=config.node_rank, serves_store=server is not None)
    workers = LocalWorkerGroup(spec, monitor)
    agent = Agent(workers, rendezvous, RestartBudget(config.max_restarts),
                  config.monitor_interval)
    try:
        result = agent.run()
    finally:
        workers.close()
        if monitor:
            monitor.close()
        store.close()
        if server:
            server.close()
    kept = tidy_log_dir(log_dir, bool(config.log_dir), result.state is AgentState.SUCCEEDED)
    if kept and result.state is AgentState.FAILED:
        _log(f"job failed after {result.restarts} restart(s); error files and logs are under "
             f"{log_dir}")
    return result.exit_code
