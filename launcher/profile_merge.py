"""`phalanx run --profile DIR`: merge the ranks' traces into one Chrome-trace JSON.

Each rank writes DIR/rank{RANK}.trace.json (`phalanx/profiler/environment.py`), its events
under pid = its rank and a process track named "rank {RANK}". The merged DIR/trace.json holds
them all, one process track per rank, on the ranks' common wall clock: open it in
https://ui.perfetto.dev or chrome://tracing. With several nodes each launcher merges the
traces its DIR holds; on a shared file system run `python -m phalanx.launcher.profile_merge
DIR` once every node is done.
"""
import glob
import json
import os
import re
import sys

PROFILE_ENV = "PHALANX_PROFILE"          # read by `import phalanx` in every rank
MERGED_NAME = "trace.json"
_RANK_FILE = re.compile(r"rank(\d+)\.trace\.json$")


def rank_traces(directory):
    """{rank: path} of the per-rank traces in `directory`."""
    found = {}
    for path in glob.glob(os.path.join(directory, "rank*.trace.json")):
        m = _RANK_FILE.search(os.path.basename(path))
        if m:
            found[int(m.group(1))] = path
    return dict(sorted(found.items()))


def merge_traces(directory, out_name=MERGED_NAME):
    """Write DIR/`out_name` from every rank's trace; returns (its path, the ranks merged), or
    (None, []) when no rank wrote one."""
    traces = rank_traces(directory)
    if not traces:
        return None, []
    events, ranks = [], []
    for rank, path in traces.items():
        with open(path) as f:
            trace = json.load(f)
        for e in trace["traceEvents"]:
            if e.get("pid") != rank:       # a trace written by hand under another pid
                raise ValueError(f"{path}: event {e.get('name')!r} has pid {e.get('pid')}, "
                                 f"expected the rank {rank}; re-run with --profile")
        events += trace["traceEvents"]
        ranks.append(rank)
    merged = {"traceEvents": events, "displayTimeUnit": "ms",
              "otherData": {"ranks": ranks, "merged_from": list(traces.values())}}
    out = os.path.join(directory, out_name)
    tmp = f"{out}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(merged, f)
    os.replace(tmp, out)
    return out, ranks


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m phalanx.launcher.profile_merge DIR", file=sys.stderr)
        return 2
    out, ranks = merge_traces(argv[0])
    if out is None:
        print(f"no rank*.trace.json in {argv[0]}", file=sys.stderr)
        return 1
    print(f"merged the traces of rank(s) {ranks} into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
