"""`phalanx run --profile DIR` on a 2-rank DDP job whose script knows nothing of profiling:
each rank writes its trace, the launcher merges them into one Chrome trace with a process track
per rank, holding op forward/backward spans, optimizer steps, DataLoader waits and every
bucket's all-reduce (with its bytes) on the communication thread's own track; buckets launched
during backward overlap backward spans, and those reduced after it do not.

PHALANX_SHARED_MEMORY=0: with shared memory on one host DDP reduces every bucket when backward
ends (reducer.py), so nothing would overlap."""
import collections
import functools
import json
import os
import subprocess
import sys

import pytest

import phalanx

WORKER = os.path.join(os.path.dirname(__file__), "workers", "ddp_train.py")
MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")
STEPS = 8           # 128 samples per rank / batch 16
BUCKETS = 6         # ddp_train.py's bucket_cap_mb=0.01: one per layer, the last two together


def _run(tmp_path, *flags, **env):
    environ = dict(os.environ)
    parent = os.path.dirname(os.path.abspath(list(phalanx.__path__)[0]))
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [parent, environ.get("PYTHONPATH")]))
    environ.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", PHALANX_SHARED_MEMORY="0")
    environ.pop("PHALANX_PROFILE", None)
    environ.update(env)
    out = tmp_path / "profile"
    proc = subprocess.run(
        ["timeout", "-s", "KILL", "100", sys.executable, "-m", "phalanx.launcher", "run",
         *flags, "--profile", str(out), WORKER], env=environ, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=110)
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert "merged in" in proc.stdout, proc.stdout[-3000:]
    assert sorted(os.listdir(out)) == ["rank0.trace.json", "rank1.trace.json", "trace.json"]
    with open(out / "trace.json") as f:
        return json.load(f)


def _overlaps(a, b):
    return a["ts"] < b["ts"] + b["dur"] and b["ts"] < a["ts"] + a["dur"]


MODES = [
    pytest.param(["--standalone", "--nproc-per-node", "2"], "phalanx-zmq", id="zmq"),
    pytest.param(["--mpi", "-n", "2"], "phalanx-mpi-comm", id="mpiexec",
                 marks=pytest.mark.skipif(not os.access(MPIEXEC, os.X_OK),
                                          reason="no mpiexec next to the interpreter")),
]


@pytest.mark.timeout(150)
@pytest.mark.parametrize("flags, comm_thread", MODES)
def test_merged_trace_has_a_track_per_rank_and_overlapping_buckets(tmp_path, flags,
                                                                    comm_thread):
    trace = _run(tmp_path, *flags)
    events = trace["traceEvents"]
    processes = {e["pid"]: e["args"]["name"] for e in events
                 if e["ph"] == "M" and e["name"] == "process_name"}
    assert processes == {0: "rank 0", 1: "rank 1"}
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in events
               if e["ph"] == "M" and e["name"] == "thread_name"}
    spans = [e for e in events if e["ph"] == "X"]
    assert {(e["pid"], e["tid"]) for e in spans} <= set(threads)
    for rank in (0, 1):
        mine = [e for e in spans if e["pid"] == rank]
        names = collections.Counter(e["name"] for e in mine)
        assert names["Linear"] == 7 * STEPS and names["LinearBackward0"] == 7 * STEPS
        assert names["Optimizer.step#SGD.step"] == STEPS
        assert names["enumerate(DataLoader)#_SingleProcessIter.__next__"] == STEPS + 1
        for part in ("", ".launch", ".wait"):
            assert names["ddp.bucket_allreduce" + part] == BUCKETS * STEPS, names
        buckets = [e for e in mine if e["name"] == "ddp.bucket_allreduce"]
        assert all(e["args"]["bytes"] > 0 and e["args"]["dtype"] == "float32" for e in buckets)
        # per step: every float32 gradient and one usage flag per parameter, once
        params, tensors = 6 * (64 * 64 + 64) + 64 + 1, 14
        assert sum(e["args"]["bytes"] for e in buckets) == STEPS * 4 * (params + tensors)
        main = {e["tid"] for e in mine if e["cat"] == "backward"}
        assert len(main) == 1 and threads[(rank, main.pop())] == f"MainThread (rank {rank})"
        on_comm = [e for e in buckets if comm_thread in threads[(rank, e["tid"])]]
        assert on_comm, "no bucket was reduced on the communication thread"
        backward = [e for e in mine if e["cat"] == "backward"]
        during = [e for e in buckets if e["args"]["overlapped"]]
        after = [e for e in buckets if not e["args"]["overlapped"]]
        assert len(after) == STEPS                 # the last bucket, launched when backward ends
        assert any(_overlaps(a, b) for a in during for b in backward), \
            f"rank {rank}: no bucket all-reduce overlaps a backward span"
        assert not any(_overlaps(a, b) for a in after for b in backward)
        # an arrow from each launch to the span where its bucket was reduced
        flows = collections.defaultdict(dict)
        for e in events:
            if e["ph"] in "sf" and e["pid"] == rank:
                flows[e["id"]][e["ph"]] = e
        launches = {e["args"]["flow_out"]: e for e in mine
                    if e["name"] == "ddp.bucket_allreduce.launch"}
        assert len(flows) == len(launches) == BUCKETS * STEPS
        for run in buckets:
            arrow = flows[rank * 10**9 + run["args"]["flow_in"]]
            launch = launches[run["args"]["flow_in"]]
            assert (arrow["s"]["tid"], arrow["s"]["ts"]) == (launch["tid"], launch["ts"])
            assert (arrow["f"]["tid"], arrow["f"]["ts"]) == (run["tid"], run["ts"])


@pytest.mark.timeout(150)
def test_profile_steps_selects_a_window_of_optimizer_steps(tmp_path):
    trace = _run(tmp_path, "--standalone", "--nproc-per-node", "2",
                 PHALANX_PROFILE_STEPS="2:5")
    for rank in (0, 1):
        spans = [e for e in trace["traceEvents"] if e["ph"] == "X" and e["pid"] == rank]
        assert sorted(e["name"] for e in spans if e["name"].startswith("ProfilerStep")) == \
            ["ProfilerStep#2", "ProfilerStep#3", "ProfilerStep#4"]
        assert sum(e["name"] == "Optimizer.step#SGD.step" for e in spans) == 3


@pytest.mark.timeout(60)
def test_the_environment_variable_profiles_a_plain_python_run(tmp_path):
    """No launcher: PHALANX_PROFILE=DIR python script.py writes rank 0's trace; a window
    beyond the run's steps writes none and says why."""
    script = tmp_path / "train.py"
    script.write_text("import phalanx as px\n"
                      "w = px.randn(3, requires_grad=True)\n"
                      "opt = px.optim.SGD([w], lr=0.1)\n"
                      "for _ in range(3):\n"
                      "    (w * w).sum().backward()\n"
                      "    opt.step()\n")
    environ = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    parent = os.path.dirname(os.path.abspath(list(phalanx.__path__)[0]))
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [parent, environ.get("PYTHONPATH")]))
    for name in ("RANK", "WORLD_SIZE", "PHALANX_PROFILE_STEPS"):
        environ.pop(name, None)
    run = functools.partial(subprocess.run, [sys.executable, str(script)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=50)
    out = run(env=dict(environ, PHALANX_PROFILE=str(tmp_path / "all")))
    assert out.returncode == 0, out.stdout
    with open(tmp_path / "all" / "rank0.trace.json") as f:
        trace = json.load(f)
    names = collections.Counter(e["name"] for e in trace["traceEvents"] if e["ph"] == "X")
    assert names["Optimizer.step#SGD.step"] == 3 and names["MulBackward0"] == 3
    assert trace["otherData"]["rank"] == 0
    out = run(env=dict(environ, PHALANX_PROFILE=str(tmp_path / "late"),
                       PHALANX_PROFILE_STEPS="5:7"))
    assert out.returncode == 0 and "made only 3 optimizer step(s); no trace written" in \
        out.stdout, out.stdout
    assert not (tmp_path / "late").exists()


def test_merge_keeps_one_track_per_rank_and_rejects_foreign_pids(tmp_path):
    from phalanx.launcher.profile_merge import main, merge_traces
    assert merge_traces(tmp_path) == (None, [])
    for rank in (1, 0):
        (tmp_path / f"rank{rank}.trace.json").write_text(json.dumps({"traceEvents": [
            {"ph": "M", "name": "process_name", "pid": rank, "args": {"name": f"rank {rank}"}},
            {"ph": "X", "name": "op", "pid": rank, "tid": 7, "ts": 1.0, "dur": 2.0}]}))
    (tmp_path / "notes.json").write_text("{}")            # not a rank trace: ignored
    assert main([str(tmp_path)]) == 0
    merged = json.loads((tmp_path / "trace.json").read_text())
    assert merged["otherData"]["ranks"] == [0, 1]
    assert [e["pid"] for e in merged["traceEvents"]] == [0, 0, 1, 1]
    (tmp_path / "rank2.trace.json").write_text(json.dumps({"traceEvents": [
        {"ph": "X", "name": "op", "pid": 0, "tid": 7, "ts": 1.0, "dur": 2.0}]}))
    with pytest.raises(ValueError, match="expected the rank 2"):
        merge_traces(tmp_path)


def test_profile_steps_are_parsed_or_refused():
    from phalanx.profiler.environment import parse_steps
    assert parse_steps("") is None and parse_steps("10:20") == (10, 20)
    assert parse_steps("5") == (0, 5) and parse_steps(":5") == (0, 5)
    for bad in ("5:5", "x", "3:1", "-1:2"):
        with pytest.raises(ValueError, match="PHALANX_PROFILE_STEPS"):
            parse_steps(bad)
