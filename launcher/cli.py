"""The `phalanx` command: `phalanx run ...` (the launcher) and `phalanx store ...`.

Flags follow torchrun (dashes or underscores); each also reads a `PHALANX_<FLAG>` environment
variable, so `PHALANX_NPROC_PER_NODE=4 phalanx run train.py` works like `--nproc-per-node 4`.
torchrun's command lines work as they are (`python -m phalanx.distributed.run` is `phalanx
run`): its rendezvous backends c10d and static, `--master-addr/--master-port`, `--role`,
`--start-method` and `--shutdown-timeout` are understood, and its options Phalanx has no
counterpart for are refused by name (`TORCHRUN_ONLY`), never ignored.
"""
import argparse
import os
import signal
import sys
import uuid
from dataclasses import dataclass

from .agent import SignalReceived

DEFAULT_PORT = 29500
RDZV_BACKENDS = ("c10d", "static")
# torchrun options with no counterpart here: refused with their reason, not silently dropped
TORCHRUN_ONLY = {
    "run-path": "run the script in the launcher's interpreter; Phalanx always starts workers "
                "as processes of their own",
    "redirects": "log-only output; use --tee (copies to LOG_DIR and the console) and "
                 "--local-ranks-filter",
    "local-addr": "set PHALANX_ZMQ_HOST (the address workers bind) instead",
    "logs-specs": "custom log handlers: Phalanx writes LOG_DIR/attempt_K/RANK/",
    "numa-binding": "bind workers with numactl/taskset in --no-python mode",
    "signals-to-handle": "the agent forwards SIGTERM, SIGINT and SIGHUP",
    "virtual-local-rank": "set CUDA_VISIBLE_DEVICES per worker yourself",
    "event-log-handler": "Phalanx logs its events to stderr and LOG_DIR",
    "duplicate-stdout-filters": "use --tee and --local-ranks-filter",
    "duplicate-stderr-filters": "use --tee and --local-ranks-filter",
}
TORCHRUN_SWITCHES = {"run-path", "virtual-local-rank"}     # the ones that take no value


def _env(flag, default):
    return os.environ.get("PHALANX_" + flag.upper().replace("-", "_"), default)


def _add(parser, flag, help, default=None, **kwargs):
    """`--a-b` and `--a_b`, with the PHALANX_A_B fallback documented in the help."""
    names = [f"--{flag}"] + ([f"--{flag.replace('-', '_')}"] if "-" in flag else [])
    env_name = "PHALANX_" + flag.upper().replace("-", "_")
    if kwargs.get("action") == "store_true":
        default = _env(flag, "0").lower() in ("1", "true", "yes")
    else:
        default = _env(flag, default)
    shown = "" if default in (None, "", False) else f"; default {default}"
    parser.add_argument(*names, dest=flag.replace("-", "_"), default=default,
                        help=f"{help} (env {env_name}{shown})", **kwargs)


def build_parser():
    parser = argparse.ArgumentParser(prog="phalanx", allow_abbrev=False,
                                     description="Phalanx launcher and store.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run", allow_abbrev=False, help="launch a (multi-node, elastic) data-parallel job",
        description="Start --nproc-per-node workers of SCRIPT on this node, rendezvous with the "
                    "other nodes, watch exit codes and heartbeats, and restart the whole group "
                    "on a failure up to --max-restarts times.",
        epilog="Workers get RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK, "
               "GROUP_WORLD_SIZE, ROLE_NAME, ROLE_RANK, ROLE_WORLD_SIZE, RESTART_COUNT "
               "(also as TORCHELASTIC_RESTART_COUNT), TORCHELASTIC_MAX_RESTARTS, MASTER_ADDR, "
               "MASTER_PORT, PHALANX_RUN_ID, "
               "PHALANX_STORE_ENDPOINT, PHALANX_STORE_TOKEN, PHALANX_RDZV_ROUND, "
               "PHALANX_ERROR_FILE, PHALANX_HEARTBEAT_ENDPOINT and OMP_NUM_THREADS / "
               "OPENBLAS_NUM_THREADS = cores / local ranks unless already set.")
    _add(run, "nproc-per-node", "workers on this node: a number, or 'auto' (GPUs if any, else "
         "CPU cores)", "1")
    _add(run, "nnodes", "number of nodes N, or MIN:MAX for an elastic job", "1")
    _add(run, "node-rank", "this node's rank among the nodes (orders global ranks; default: "
         "arrival order)", None, type=int)
    _add(run, "rdzv-endpoint", "HOST:PORT of the rendezvous store; the agent on HOST serves it "
         f"(default: a free loopback port for one node, 127.0.0.1:{DEFAULT_PORT} otherwise)", "")
    _add(run, "rdzv-backend", "c10d: the agent on the endpoint's host serves the store and "
         "nodes may join and leave within --nnodes MIN:MAX; static: a fixed --nnodes, each node "
         "given its --node-rank (torchrun's; both go through Phalanx's authenticated store)",
         "c10d")
    _add(run, "master-addr", "host of the rendezvous store when --rdzv-endpoint is not given "
         "(torchrun's static rendezvous)", "")
    _add(run, "master-port", f"its port (default {DEFAULT_PORT})", None, type=int)
    _add(run, "rdzv-id", "job id shared by all nodes of one job", "")
    run.add_argument("--rdzv-token", "--rdzv_token", dest="rdzv_token",
                     default=_env("rdzv-token", ""),    # a secret: never shown as a default
                     help="the secret that authenticates every store request; a multi-node job "
                          "needs it (or PHALANX_STORE_TOKEN, or --rdzv-token-file), a "
                          "single-node job makes a random one. Other users can see it in `ps`: "
                          "prefer the file (env PHALANX_RDZV_TOKEN)")
    _add(run, "rdzv-token-file", "file holding the store token, readable only by you "
         "(chmod 600)", "")
    _add(run, "rdzv-conf", "KEY=VALUE,... among join_timeout, last_call_timeout, node_timeout "
         "(seconds)", "")
    _add(run, "standalone", "single-node job with its own store on a free port",
         action="store_true")
    _add(run, "max-restarts", "failure restarts of the worker group before giving up", 0, type=int)
    _add(run, "monitor-interval", "seconds between checks of the workers", 0.1, type=float)
    _add(run, "heartbeat-timeout", "declare dead a rank whose heartbeats (sent by a background "
         "thread of every worker, also while it computes) stop for this many seconds: a stopped "
         "or frozen process; 0 disables", 30.0, type=float)
    _add(run, "progress-timeout", "fail a rank whose progress counter (heartbeat.advance(), "
         "called by DDP each backward) did not move for this many seconds; 0 disables", 1800.0,
         type=float)
    run.add_argument("--grace-period", "--grace_period", "--shutdown-timeout",
                     "--shutdown_timeout", dest="grace_period", type=float,
                     default=float(_env("grace-period", 5.0)),
                     help="seconds between SIGTERM and SIGKILL when stopping workers "
                          "(torchrun's --shutdown-timeout) (env PHALANX_GRACE_PERIOD; "
                          "default 5.0)")
    _add(run, "role", "the workers' role, in their ROLE_NAME (with ROLE_RANK and "
         "ROLE_WORLD_SIZE, as torchrun sets them)", "default")
    _add(run, "start-method", "torchrun's multiprocessing start method; a script's workers are "
         "always fresh processes, there as here, so every choice runs the same",
         "spawn", choices=["spawn", "fork", "forkserver"])
    for flag in TORCHRUN_ONLY:
        switch = {"action": "store_const", "const": True} if flag in TORCHRUN_SWITCHES else {}
        run.add_argument(f"--{flag}", f"--{flag.replace('-', '_')}",
                         dest=f"torchrun_{flag.replace('-', '_')}", default=None,
                         help=argparse.SUPPRESS, **switch)
    _add(run, "log-dir", "directory for error files and tee'd logs (default: a temporary one)",
         "")
    _add(run, "tee", "copy workers' output to LOG_DIR/attempt_K/RANK/std{out,err}.log: "
         "0 none, 1 stdout, 2 stderr, 3 both", 0, type=int, choices=[0, 1, 2, 3])
    _add(run, "local-ranks-filter", "comma-separated local ranks whose output is shown on the "
         "console (default: all)", "")
    _add(run, "no-python", "run SCRIPT as an executable, not with Python", action="store_true")
    _add(run, "profile", "directory: every rank records its timeline (the whole run, or the "
         "optimizer steps PHALANX_PROFILE_STEPS=START:STOP) to DIR/rankN.trace.json, merged "
         "into DIR/trace.json for Perfetto / chrome://tracing", "")
    _add(run, "mpi", "run the job through mpiexec (restarting it from the last checkpoint on "
         "failure) instead of spawning workers itself", action="store_true")
    run.add_argument("-n", "--np", dest="np", type=int, default=int(_env("np", 0)),
                     help="number of MPI processes with --mpi (env PHALANX_NP)")
    _add(run, "mpiexec", "mpiexec to use with --mpi (default: the one next to Python, else on "
         "PATH)", "")
    run.add_argument("-m", "--module", action="store_true",
                     help="treat SCRIPT as a module name and run it like `python -m`")
    run.add_argument("script", help="the training script (or module with -m, or executable "
                     "with --no-python)")
    run.add_argument("script_args", nargs=argparse.REMAINDER, help="arguments of the script")

    store = commands.add_parser(
        "store", allow_abbrev=False, help="serve a rendezvous store on its own",
        description="Serve a key-value store for `phalanx run --rdzv-endpoint HOST:PORT` and "
                    "Store.from_env(); prints its endpoint and token.")
    store.add_argument("--host", default=_env("store-host", "127.0.0.1"),
                       help="address to bind (env PHALANX_STORE_HOST; default 127.0.0.1)")
    store.add_argument("--port", type=int, default=int(_env("store-port", DEFAULT_PORT)),
                       help=f"port to bind, 0 for a free one (env PHALANX_STORE_PORT; "
                            f"default {DEFAULT_PORT})")
    store.add_argument("--token", default=os.environ.get("PHALANX_STORE_TOKEN", ""),
                       help="auth token (env PHALANX_STORE_TOKEN; default: a random one)")
    store.add_argument("--token-file", default=_env("store-token-file", ""),
                       help="read the auth token from this file, readable only by you "
                            "(env PHALANX_STORE_TOKEN_FILE)")
    return parser


@dataclass
class RunConfig:
    """`phalanx run`'s flags, validated; what `launch.launch` consumes."""
    entrypoint: list
    nproc_per_node: int
    min_nodes: int
    max_nodes: int
    node_rank: int | None
    rdzv_host: str
    rdzv_port: int
    run_id: str
    rdzv_conf: dict
    rdzv_token: str
    rdzv_token_file: str
    max_restarts: int
    monitor_interval: float
    heartbeat_timeout: float
    progress_timeout: float
    grace_period: float
    log_dir: str
    tee: int
    local_ranks_filter: frozenset | None
    module: bool
    no_python: bool
    mpi: bool
    np: int
    mpiexec: str
    profile: str = ""                  # a directory: the ranks' traces, merged at the end
    role: str = "default"              # the workers' ROLE_NAME


def _parse_nnodes(text):
    try:
        low, _, high = str(text).partition(":")
        low, high = int(low), int(high or low)
    except ValueError:
        raise SystemExit(f"phalanx run: --nnodes must be N or MIN:MAX, got {text!r}")
    if not 1 <= low <= high:
        raise SystemExit(f"phalanx run: --nnodes needs 1 <= MIN <= MAX, got {text!r}")
    return low, high


def _parse_nproc(text):
    if text == "auto":
        gpus = os.environ.get("CUDA_VISIBLE_DEVICES")
        if gpus:
            return len([g for g in gpus.split(",") if g.strip()])
        if os.path.isdir("/proc/driver/nvidia/gpus"):
            return len(os.listdir("/proc/driver/nvidia/gpus")) or os.cpu_count()
        return os.cpu_count() or 1
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise SystemExit(f"phalanx run: --nproc-per-node must be a positive integer or 'auto', "
                         f"got {text!r}")
    return n


def _parse_conf(text):
    conf = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in ("join_timeout", "last_call_timeout", "node_timeout"):
            raise SystemExit(f"phalanx run: --rdzv-conf takes join_timeout=, last_call_timeout=, "
                             f"node_timeout= (seconds), got {item!r}")
        conf[key] = float(value)
    return conf


def _check_torchrun_options(args):
    for flag, reason in TORCHRUN_ONLY.items():
        if getattr(args, f"torchrun_{flag.replace('-', '_')}") is not None:
            raise SystemExit(f"phalanx run: torchrun's --{flag} is not supported ({reason})")
    if args.rdzv_backend not in RDZV_BACKENDS:
        raise SystemExit(f"phalanx run: --rdzv-backend {args.rdzv_backend!r} is not supported: "
                         f"Phalanx's rendezvous is its own store (c10d, or static with fixed "
                         f"--nnodes and --node-rank); etcd is not needed")


def config_from_args(args):
    _check_torchrun_options(args)
    min_nodes, max_nodes = _parse_nnodes(args.nnodes)
    if args.standalone and max_nodes > 1:
        raise SystemExit(f"phalanx run: --standalone is for one node, got --nnodes {args.nnodes}")
    if args.rdzv_backend == "static" and (min_nodes != max_nodes or
                                          (max_nodes > 1 and args.node_rank is None)):
        raise SystemExit(f"phalanx run: --rdzv-backend static needs a fixed --nnodes and, "
                         f"for more than one node, this node's --node-rank (got --nnodes "
                         f"{args.nnodes}, --node-rank {args.node_rank})")
    endpoint = "" if args.standalone else args.rdzv_endpoint
    if not endpoint and not args.standalone and (args.master_addr or args.master_port):
        endpoint = f"{args.master_addr or '127.0.0.1'}:{args.master_port or DEFAULT_PORT}"
    if endpoint:
        host, _, port = endpoint.rpartition(":")
        if not host or not port.isdigit():
            raise SystemExit(f"phalanx run: --rdzv-endpoint must be HOST:PORT, got {endpoint!r}")
        port = int(port)
    elif max_nodes > 1:
        host, port = "127.0.0.1", DEFAULT_PORT
    else:
        host, port = "127.0.0.1", 0           # one node: a free port, no clash between jobs
    filt = frozenset(int(r) for r in args.local_ranks_filter.split(",") if r.strip()) or None
    run_id = args.rdzv_id or (uuid.uuid4().hex[:12] if max_nodes == 1 else "default")
    return RunConfig(
        entrypoint=[args.script, *args.script_args], nproc_per_node=_parse_nproc(args.nproc_per_node),
        min_nodes=min_nodes, max_nodes=max_nodes, node_rank=args.node_rank,
        rdzv_host=host, rdzv_port=port, run_id=run_id, rdzv_conf=_parse_conf(args.rdzv_conf),
        rdzv_token=args.rdzv_token, rdzv_token_file=args.rdzv_token_file,
        max_restarts=int(args.max_restarts), monitor_interval=float(args.monitor_interval),
        heartbeat_timeout=float(args.heartbeat_timeout),
        progress_timeout=float(args.progress_timeout), grace_period=float(args.grace_period),
        log_dir=args.log_dir, tee=int(args.tee), local_ranks_filter=filt, module=args.module,
        no_python=args.no_python, mpi=args.mpi, np=args.np, mpiexec=args.mpiexec,
        profile=os.path.abspath(args.profile) if args.profile else "", role=args.role)


def install_signal_handlers():
    """The first SIGINT/SIGTERM/SIGHUP raises SignalReceived in the main thread (the agent then
    stops the workers); later ones are ignored so the shutdown is not interrupted."""
    def handler(signum, frame):
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        raise SignalReceived(signum)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


def serve_store(args):
    from ..distributed.store import StoreServer
    from .auth import TokenError, read_token_file
    token = args.token
    if not token and args.token_file:
        try:
            token = read_token_file(args.token_file)
        except TokenError as e:
            raise SystemExit(f"phalanx store: {e}") from None
    server = StoreServer(args.host, args.port, token or None)
    # a token from a file stays out of the console (and the logs that capture it)
    shown = f"$(cat {args.token_file})" if args.token_file and not args.token else server.token
    print(f"phalanx store serving at {server.endpoint}\n"
          f"export PHALANX_STORE_ENDPOINT={server.endpoint} PHALANX_STORE_TOKEN={shown}",
          flush=True)
    install_signal_handlers()
    try:
        server.serve_forever()
    except SignalReceived as e:
        return 128 + e.signum
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == "store":
        return serve_store(args)
    config = config_from_args(args)
    install_signal_handlers()
    if config.profile:
        return _profiled(config)
    return _launch(config)


def _launch(config):
    if config.mpi:
        from .mpi import launch_mpi
        return launch_mpi(config)
    from .launch import launch
    return launch(config)


def _profiled(config):
    """Workers inherit PHALANX_PROFILE (each rank records its trace); merge them at the end."""
    from .profile_merge import PROFILE_ENV, merge_traces, rank_traces
    for stale in rank_traces(config.profile).values():   # an earlier run's
        os.remove(stale)
    os.environ[PROFILE_ENV] = config.profile
    try:
        return _launch(config)
    finally:
        try:
            out, ranks = merge_traces(config.profile)
            print(f"[phalanx] profile: the traces of {len(ranks)} rank(s) are merged in {out}"
                  if out else f"[phalanx] profile: no rank wrote a trace to {config.profile}",
                  file=sys.stderr, flush=True)
        except (OSError, ValueError) as e:
            print(f"[phalanx] profile: merging the traces in {config.profile} failed: {e}",
                  file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
