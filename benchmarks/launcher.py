"""Launcher timings, `phalanx run` against `torchrun`, each doing the same work:

  startup  — from starting the launcher to every rank having created its process group and
             passed one barrier (Phalanx: `init_process_group()` on the zmq backend;
             torchrun: gloo), on 2 and 4 ranks;
  restart  — from the moment rank 1 dies (exit 1 after the first barrier) to the restarted
             group's first completed step (an all-reduce), with `--max-restarts 1`.

    python benchmarks/launcher.py [--repeats 3]

Both launchers use their default monitor interval. Prints medians and phalanx/torchrun ratios;
the goals are startup ≤ 0.5× torchrun's and restart ≤ 3 s.
"""
import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

WORKER = {
    "phalanx": '''
import os, sys, time
import numpy as np
import phalanx.distributed as dist
dist.init_process_group()
dist.barrier()
{body}
''',
    "torchrun": '''
import os, sys, time
import torch
import torch.distributed as dist
dist.init_process_group("gloo")
dist.barrier()
{body}
''',
}

BODY = {
    "startup": '''
print(f"BARRIER {time.time():.6f}", flush=True)
dist.destroy_process_group()
''',
    "restart": '''
restart = int(os.environ.get("RESTART_COUNT", os.environ.get("TORCHELASTIC_RESTART_COUNT", 0)))
if restart == 0:
    if dist.get_rank() == 1:
        print(f"DEATH {time.time():.6f}", flush=True)
        os._exit(1)
    time.sleep(60)                              # the launcher stops us
x = {ones}
dist.all_reduce(x)
if dist.get_rank() == 0:
    print(f"FIRST_STEP {time.time():.6f}", flush=True)
dist.destroy_process_group()
''',
}
ONES = {"phalanx": "__import__('phalanx').ones(1000)", "torchrun": "torch.ones(1000)"}


def command(tool, nproc, script, restarts):
    if tool == "phalanx":
        return [sys.executable, "-m", "phalanx.launcher", "run", "--nproc-per-node", str(nproc),
                "--max-restarts", str(restarts), script]
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    return [torchrun, "--standalone", "--nproc-per-node", str(nproc), "--max-restarts",
            str(restarts), script]


def run_once(tool, kind, nproc, workdir):
    script = os.path.join(workdir, f"{tool}_{kind}.py")
    with open(script, "w") as f:
        f.write(WORKER[tool].replace("{body}", BODY[kind].replace("{ones}", ONES[tool])))
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    start = time.time()
    proc = subprocess.Popen(command(tool, nproc, script, 1 if kind == "restart" else 0), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        stdout, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)          # the launcher and all its workers
        stdout, _ = proc.communicate()
        print(f"{tool} {kind} on {nproc} ranks hung for 90 s; counted as failed", flush=True)
    stamps = {key: [float(v) for v in re.findall(rf"{key} (\d+\.\d+)", stdout)]
              for key in ("BARRIER", "DEATH", "FIRST_STEP")}
    if kind == "startup":
        if proc.returncode or len(stamps["BARRIER"]) != nproc:
            print(f"{tool} startup run failed:\n{stdout[-2000:]}", flush=True)
            return None
        return max(stamps["BARRIER"]) - start
    # (torchrun's restarted gloo group sometimes fails on exit or connect; the stamps decide)
    if not stamps["DEATH"] or not stamps["FIRST_STEP"]:
        return None
    return stamps["FIRST_STEP"][0] - stamps["DEATH"][0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for kind, nproc in (("startup", 2), ("startup", 4), ("restart", 2)):
            medians = {}
            for tool in ("phalanx", "torchrun"):
                times = [run_once(tool, kind, nproc, workdir) for _ in range(args.repeats)]
                ok = [t for t in times if t is not None]
                if len(ok) < len(times):
                    print(f"{tool} {kind} on {nproc} ranks: {len(times) - len(ok)} of "
                          f"{len(times)} runs failed", flush=True)
                medians[tool] = statistics.median(ok) if ok else float("nan")
            rows.append((kind, nproc, medians["phalanx"], medians["torchrun"]))
    print(f"median of {args.repeats} runs, {os.cpu_count()} cores; seconds")
    print(f"{'measure':>9} {'ranks':>5} {'phalanx':>9} {'torchrun':>9} {'ratio':>7}")
    for kind, nproc, ours, theirs in rows:
        print(f"{kind:>9} {nproc:>5} {ours:9.3f} {theirs:9.3f} {ours / theirs:7.2f}")


if __name__ == "__main__":
    main()
