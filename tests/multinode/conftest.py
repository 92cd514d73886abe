"""A cluster of hosts on this machine, each with its own network stack, /dev/shm and hostname
(benchmarks/cluster.py). Building one needs root: without it these tests skip, except under
CI=true, where they must run (the CI machine runs as root)."""
import importlib.util
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("phalanx_cluster", ROOT / "benchmarks" / "cluster.py")
cluster_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cluster_tool)


def _why_not():
    if os.geteuid() != 0:
        return "network-namespace hosts need root"
    for tool in ("ip", "nsenter", "unshare", "tc"):
        if subprocess.run(["which", tool], capture_output=True).returncode:
            return f"{tool} is not installed (Debian: iproute2, util-linux)"
    return None


@pytest.fixture(scope="session")
def cluster():
    why = _why_not()
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"multi-host tests must run in CI: {why}")
        pytest.skip(why)
    # a name of this run's own, so a developer's `cluster.py up` is left alone
    with cluster_tool.Cluster(3, name=f"t{secrets.token_hex(2)}", subnet="10.213.7") as c:
        yield c


class Job:
    """Commands started on the cluster's hosts, each under `timeout`, all killed at the end."""

    def __init__(self, cluster, tmp_path):
        self.cluster, self.tmp_path = cluster, tmp_path
        self.token = secrets.token_hex(16)
        self.procs = []

    def env(self, **extra):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PMI_", "PMIX_", "OMPI_", "HYDRA_", "PHALANX_"))
               and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")}
        # TMPDIR: what a killed agent leaves (its log directory) stays in pytest's tree
        env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
                   PHALANX_STORE_TOKEN=self.token, TMPDIR=str(self.tmp_path),
                   **cluster_tool.MPI_OVER_NETWORK, **extra)
        return env

    def start(self, host, args, seconds=120, **env):
        proc = self.cluster.host(host).popen(
            ["timeout", "-s", "KILL", seconds, *args], cwd=ROOT, env=self.env(**env),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.procs.append(proc)
        return proc

    def phalanx_run(self, host, *args, **kw):
        return self.start(host, [Path(sys.executable).parent / "phalanx", "run", *args], **kw)

    def finish(self, proc, timeout=150):
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out

    def close(self):
        """Kill whatever the test left running on any host (its anchor excepted)."""
        for host in self.cluster.hosts:
            for pid in host.pids():
                if pid != host.anchor:
                    try:
                        os.kill(pid, 9)
                    except ProcessLookupError:
                        pass
        for p in self.procs:
            p.communicate()


@pytest.fixture
def job(cluster, tmp_path):
    j = Job(cluster, tmp_path)
    yield j
    j.close()
