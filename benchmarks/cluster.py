"""A cluster on one machine: N hosts, each with its own network stack, /dev/shm and hostname.

    python benchmarks/cluster.py up 3 [--name pxc] [--rate 1gbit]   # needs root
    python benchmarks/cluster.py exec h1 -- phalanx run --nnodes 2 ... train.py
    python benchmarks/cluster.py rate 10gbit                        # or 'off'
    python benchmarks/cluster.py link h2 down                       # or up
    python benchmarks/cluster.py down

Host `h<i>` is a network namespace joined to a bridge by a veth pair, with the address
`<subnet>.<i+1>/24` in a range only these namespaces use (the bridge has no address, so the hosts
reach each other and nothing else). Each host also has an *anchor*, a sleeping process that holds
the host's own mount namespace (a private tmpfs on /dev/shm, an /etc/hosts naming every host) and
UTS namespace (hostname `h<i>`); commands run on a host by entering the anchor's namespaces with
nsenter, so two processes on one host share its /dev/shm and two hosts never do. `tc tbf` on
both ends of a host's link limits its rate each way. With `pin=True` (`up --pin`) host `h<i>`
runs its processes on core i alone, as a one-core machine would, instead of sharing every core
with the other hosts.

The cluster's state (hosts, addresses, anchors) is kept in /run/phalanx-cluster/<name>.json, so
`exec`, `down` and the tests' fixture can find it from another process; `down` removes
namespaces, links, processes and files even after a crash, and `up` first clears what a killed
run of the same name left behind.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

STATE_DIR = Path("/run/phalanx-cluster")
# The hosts share one kernel, so MPI libraries that detect that (UCX by its boot id) would move
# data between them through shared memory, not the network: make them use TCP, as across real
# machines. Give this environment to every MPI job on the cluster.
MPI_OVER_NETWORK = {"UCX_TLS": "tcp,self", "FI_PROVIDER": "tcp"}


def _ip(*args, check=True):
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def _tc(*args, check=True):
    return subprocess.run(["tc", *args], check=check, capture_output=True, text=True)


@dataclass
class Host:
    name: str            # h0, h1, ... (also its hostname)
    address: str         # on the cluster's bridge
    netns: str
    veth: str            # the root-side end of its link
    anchor: int          # pid holding its mount and UTS namespaces
    cpus: str = ""       # the cores its processes run on (taskset's list), "" for any

    def command(self, args, cwd=None):
        """`args` wrapped to run on this host, in `cwd` (default: the current directory)."""
        pin = ["taskset", "-c", self.cpus] if self.cpus else []
        return ["nsenter", f"--target={self.anchor}", "--net", "--mount", "--uts",
                f"--wd={cwd or os.getcwd()}", "--", *pin, *map(str, args)]

    def popen(self, args, cwd=None, **kwargs):
        return subprocess.Popen(self.command(args, cwd), **kwargs)

    def run(self, args, cwd=None, **kwargs):
        return subprocess.run(self.command(args, cwd), **kwargs)

    def pids(self):
        """Every process on this host (in its network namespace), the anchor included."""
        out = _ip("netns", "pids", self.netns, check=False).stdout
        return [int(p) for p in out.split()]

    def set_link(self, up):
        """Cut this host off the network (or reconnect it) without touching its processes."""
        _ip("link", "set", self.veth, "up" if up else "down")

    def set_rate(self, rate):
        """Limit this host's link to `rate` (tc syntax, e.g. '1gbit') each way; None lifts it."""
        for ns, dev in ((None, self.veth), (self.netns, "eth0")):
            prefix = ["-n", ns] if ns else []
            _tc(*prefix, "qdisc", "del", "dev", dev, "root", check=False)
            if rate:
                # a burst of ~1 ms at the rate, at least 64 KB, so TCP is not starved by tiny burst
                _tc(*prefix, "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate,
                    "burst", "256kb", "latency", "100ms")


class Cluster:
    """`with Cluster(3) as c:` brings hosts h0..h2 up and always takes them down again."""

    def __init__(self, n=2, name="pxc", subnet="10.213.0", rate=None, pin=False):
        if not 1 <= n <= 200:
            raise ValueError(f"a cluster has 1 to 200 hosts, got {n}")
        if len(name) > 6 or not name.isalnum():
            raise ValueError(f"the cluster name must be 1-6 letters or digits (it prefixes "
                             f"interface names, which Linux limits to 15 characters), got {name!r}")
        cores = os.cpu_count() or 1
        if pin and n > cores:
            raise ValueError(f"pin=True gives each host a core of its own: {n} hosts need "
                             f"{n} cores, this machine has {cores}")
        self.n, self.name, self.subnet, self.rate, self.pin = n, name, subnet, rate, pin
        self.bridge = f"{name}-br"
        self.hosts = []
        self.state_file = STATE_DIR / f"{name}.json"

    # --- lifecycle ---------------------------------------------------------------------
    def up(self):
        if os.geteuid() != 0:
            raise PermissionError("a network-namespace cluster needs root (namespaces, veth, "
                                  "mounts); run as root or skip")
        teardown(self.name)                              # what a killed run left behind
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        hosts_file = STATE_DIR / f"{self.name}.hosts"
        hosts_file.write_text("127.0.0.1 localhost\n" + "".join(
            f"{self.subnet}.{i + 1} h{i}\n" for i in range(self.n)))
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("link", "set", self.bridge, "up")
            for i in range(self.n):
                self.hosts.append(self._add_host(i, hosts_file))
                self._save()
            if self.rate:
                for h in self.hosts:
                    h.set_rate(self.rate)
        except BaseException:
            self.down()
            raise
        return self

    def _add_host(self, i, hosts_file):
        netns, veth, address = f"{self.name}-h{i}", f"{self.name}-v{i}", f"{self.subnet}.{i + 1}"
        _ip("netns", "add", netns)
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
        _ip("link", "set", veth, "master", self.bridge, "up")
        _ip("-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", netns, "link", "set", "eth0", "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        # the anchor: its own mounts (/dev/shm, /etc/hosts) and hostname, kept alive by sleep
        script = (f"mount -t tmpfs -o size=1g tmpfs /dev/shm && "
                  f"mount --bind {hosts_file} /etc/hosts && hostname h{i} && "
                  f"echo ready && exec sleep infinity")
        anchor = subprocess.Popen(
            ["ip", "netns", "exec", netns, "unshare", "--mount", "--uts",
             "--propagation", "private", "sh", "-c", script],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        line = anchor.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"host h{i} did not start: {anchor.stderr.read().strip()}")
        # `ip netns exec` and `unshare` exec into the shell, so the pid is the anchor itself
        return Host(f"h{i}", address, netns, veth, anchor.pid, str(i) if self.pin else "")

    def down(self):
        teardown(self.name)
        self.hosts = []

    def __enter__(self):
        return self.up()

    def __exit__(self, *exc):
        self.down()

    def _save(self):
        self.state_file.write_text(json.dumps({
            "bridge": self.bridge, "hosts": [vars(h) for h in self.hosts]}))

    @classmethod
    def attach(cls, name="pxc"):
        """The cluster `name` that another process brought up."""
        state = json.loads((STATE_DIR / f"{name}.json").read_text())
        cluster = cls(len(state["hosts"]), name)
        cluster.hosts = [Host(**h) for h in state["hosts"]]
        return cluster

    def ssh_wrapper(self):
        """An executable that runs `[ssh options] HOST COMMAND` on a host of this cluster, as
        ssh would: give it to an MPI launcher (MPICH: `mpiexec -launcher ssh -launcher-exec
        PATH`; Open MPI: `--mca plm_rsh_agent PATH`)."""
        path = STATE_DIR / f"{self.name}.ssh"
        path.write_text(f"#!/bin/sh\nexec {sys.executable} {Path(__file__).resolve()} "
                        f"--name {self.name} ssh -- \"$@\"\n")
        path.chmod(0o755)
        return path

    def host(self, name):
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(f"no host {name!r} in cluster {self.name!r}: it has "
                       f"{', '.join(h.name for h in self.hosts)}")


def teardown(name):
    """Remove every trace of cluster `name`: processes, namespaces, links and files."""
    prefix = f"{name}-h"
    out = _ip("netns", "list", check=False).stdout
    namespaces = [line.split()[0] for line in out.splitlines() if line.startswith(prefix)]
    for netns in namespaces:
        pids = _ip("netns", "pids", netns, check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGCONT)      # a stopped process must die too
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 5
    for netns in namespaces:
        while _ip("netns", "pids", netns, check=False).stdout.strip() and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        _ip("netns", "del", netns, check=False)        # also deletes its veth pair
    # a namespace's veth goes with it, but asynchronously: delete what is left ourselves
    links = _ip("-o", "link", "show", check=False).stdout
    for line in links.splitlines():
        dev = line.split(":")[1].strip().split("@")[0]
        if dev.startswith(f"{name}-v"):
            _ip("link", "del", dev, check=False)
    _ip("link", "del", f"{name}-br", check=False)
    for suffix in (".json", ".hosts", ".ssh"):
        (STATE_DIR / f"{name}{suffix}").unlink(missing_ok=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--name", default="pxc", help="cluster name (default pxc)")
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="bring N hosts up")
    up.add_argument("n", type=int)
    up.add_argument("--subnet", default="10.213.0", help="first three octets (default 10.213.0)")
    up.add_argument("--rate", help="limit every link, tc syntax (e.g. 1gbit)")
    up.add_argument("--pin", action="store_true", help="host h<i> runs on core i alone")
    sub.add_parser("down", help="take everything down")
    sub.add_parser("status", help="list hosts")
    ex = sub.add_parser("exec", help="run a command on a host")
    ex.add_argument("host")
    ex.add_argument("cmd", nargs=argparse.REMAINDER)
    ssh = sub.add_parser("ssh", help="ssh's calling convention, for MPI launchers: "
                         "[options] HOST COMMAND... (see `ssh_wrapper`)")
    ssh.add_argument("args", nargs=argparse.REMAINDER)
    rate = sub.add_parser("rate", help="limit every link (or 'off')")
    rate.add_argument("rate")
    link = sub.add_parser("link", help="set a host's link up or down")
    link.add_argument("host")
    link.add_argument("state", choices=("up", "down"))
    args = p.parse_args(argv)

    if args.command == "up":
        cluster = Cluster(args.n, args.name, args.subnet, args.rate, args.pin).up()
        for h in cluster.hosts:
            print(f"{h.name}\t{h.address}\tnetns {h.netns}\tanchor {h.anchor}")
        return 0
    if args.command == "down":
        teardown(args.name)
        return 0
    cluster = Cluster.attach(args.name)
    if args.command == "status":
        for h in cluster.hosts:
            print(f"{h.name}\t{h.address}\t{len(h.pids())} processes")
    elif args.command == "exec":
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        return cluster.host(args.host).run(cmd).returncode
    elif args.command == "ssh":
        # ssh [-x] [-o opt ...] HOST COMMAND...: the command is one shell string, as over ssh
        rest = args.args[1:] if args.args[:1] == ["--"] else list(args.args)
        while rest and rest[0].startswith("-"):
            rest = rest[2:] if rest[0] in ("-o", "-p", "-l", "-i") else rest[1:]
        host, command = rest[0], " ".join(rest[1:])
        return cluster.host(host).run(["sh", "-c", command]).returncode
    elif args.command == "rate":
        for h in cluster.hosts:
            h.set_rate(None if args.rate == "off" else args.rate)
    elif args.command == "link":
        cluster.host(args.host).set_link(args.state == "up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
