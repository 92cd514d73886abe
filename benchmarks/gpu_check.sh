#!/usr/bin/env bash
# One command that proves the GPU path on a machine with an NVIDIA GPU and no network:
#
#     OUT=/some/dir WHEELS=.whl bash benchmarks/gpu_check.sh
#
# It installs what is missing from the wheels in $WHEELS (default: .whl in the repository),
# then runs, each step under its own timeout and each step's failure logged without stopping
# the next (the whole run stays under 8 minutes):
#   1. setup        nvidia-smi, versions, the wheel install                       (45 s)
#   2. gpu tests    tests/gpu: fused kernels against their references on the GPU  (60 s)
#   3. nccl         tests/gpu/test_nccl_gpu.py: the nccl backend, world size 1    (30 s)
#   4. device tests the tests parametrized on device `cuda` (pytest -k cuda) in the op
#                   table, tests/gpu_path (nn, optim, DDP) and tests/amp, against the CPU (150 s)
#   5. mpi ddp      mpirun -n 2 tests/gpu/mpi_ddp_cupy.py: 2-rank DDP and FSDP on CuPy
#                   arrays over MPI against one process on the whole batch        (45 s)
#   6. bench        benchmarks/gpu_bench.py --quick: Phalanx vs PyTorch CUDA per-op and
#                   training-step times (float32, float16 autocast), NCCL vs raw  (120 s)
#   7. breakdown    benchmarks/gpu_breakdown.py: the transformer step taken apart  (45 s)
# Logs go to $OUT (at most 8 files): setup.log, gpu_tests.log, nccl.log, device_tests.log,
# mpi_ddp.log, bench.log, gpu_bench.md (the README table), summary.txt (one line per step).
# The exit status is the number of failed steps.
#
# Preparing the wheels (on a machine with network, in the repository root; Python 3.12, x86-64):
#
#     python3 -m pip download --only-binary=:all: --python-version 3.12 --implementation cp \
#         --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#         --platform manylinux2014_x86_64 -d .whl \
#         pyzmq msgpack safetensors pytest-mpi pytest-timeout hypothesis threadpoolctl psutil \
#         tqdm ml_dtypes
#
# (~21 MB, dependencies included. The GPU machine already has Python 3.12, CuPy, NCCL, Open MPI
# with mpi4py, PyTorch CUDA and NumPy; only the packages that fail to import there are installed,
# without their dependencies, into a private folder, so nothing there is replaced.)
set -u
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
OUT="${OUT:-$REPO/gpu_check_out}"
WHEELS="${WHEELS:-$REPO/.whl}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
FAILED=0
START=$SECONDS

# Phalanx is the repository root itself: import it through a folder named `phalanx` laid out
# as pip installs it (pyproject's package-dir: phalanx.cuda is cuda_api/, ...), no build needed
PXROOT="$(mktemp -d)"
mkdir "$PXROOT/phalanx"
ln -s "$REPO"/* "$PXROOT/phalanx/"
for pair in $("$PY" -c 'import tomllib
for name, folder in tomllib.load(open("pyproject.toml", "rb"))["tool"]["setuptools"]["package-dir"].items():
    if "." in name: print(name.split(".", 1)[1] + ":" + folder)'); do
    ln -s "$REPO/${pair##*:}" "$PXROOT/phalanx/${pair%%:*}"
done
SITE="$(mktemp -d)"
export PYTHONPATH="$SITE:$PXROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1   # the machine runs as root

step() {  # step NAME SECONDS LOGFILE COMMAND...
    local name="$1" limit="$2" logfile="$3"
    shift 3
    local t0=$SECONDS
    echo "== $name (timeout ${limit}s): $*" | tee -a "$logfile"
    timeout --kill-after=10 "$limit" "$@" >> "$logfile" 2>&1
    local rc=$?
    local verdict="ok"
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then verdict="TIMEOUT"; fi
    if [ "$rc" -ne 0 ] && [ "$verdict" = "ok" ]; then verdict="FAILED"; fi
    [ "$rc" -ne 0 ] && FAILED=$((FAILED + 1))
    printf '%-12s %-8s rc=%-4s %4ss  %s\n' "$name" "$verdict" "$rc" "$((SECONDS - t0))" \
        "$(basename "$logfile")" | tee -a "$SUMMARY"
    tail -n 3 "$logfile"
}

setup() {
    nvidia-smi || echo "nvidia-smi not found"
    "$PY" --version
    # import name -> distribution name, for what Phalanx and its tests need
    local missing=""
    for pair in zmq:pyzmq msgpack:msgpack safetensors:safetensors pytest_mpi:pytest-mpi \
                pytest_timeout:pytest-timeout hypothesis:hypothesis threadpoolctl:threadpoolctl \
                psutil:psutil tqdm:tqdm ml_dtypes:ml_dtypes scipy:scipy mpi4py:mpi4py; do
        "$PY" -c "import ${pair%%:*}" 2>/dev/null || missing="$missing ${pair##*:}"
    done
    echo "missing:${missing:- nothing}"
    if [ -n "$missing" ]; then
        if [ ! -d "$WHEELS" ]; then
            echo "no wheel folder $WHEELS: prepare it as this script's header says"
            return 1
        fi
        "$PY" -m pip install -q --no-index --no-deps --no-cache-dir --find-links "$WHEELS" \
            --target "$SITE" $missing || return 1
    fi
    "$PY" - <<'EOF'
import cupy, numpy, torch
print("cupy", cupy.__version__, "numpy", numpy.__version__, "torch", torch.__version__,
      "torch cuda", torch.cuda.is_available())
print("gpu", cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(),
      "cuda runtime", cupy.cuda.runtime.runtimeGetVersion())
from cupy.cuda import nccl
print("nccl", nccl.get_version() if getattr(nccl, "available", False) else "unavailable")
import mpi4py
from mpi4py import MPI
print("mpi4py", mpi4py.__version__, MPI.Get_library_version().splitlines()[0])
import phalanx as px
print("phalanx cuda available:", px.cuda.is_available())
EOF
}

PYTEST=("$PY" -m pytest -q -rfEs -p no:cacheprovider)
export -f setup
export PY WHEELS SITE
step setup 45 "$OUT/setup.log" bash -c setup
step gpu_tests 60 "$OUT/gpu_tests.log" "${PYTEST[@]}" tests/gpu/test_fused_kernels.py
step nccl 30 "$OUT/nccl.log" "${PYTEST[@]}" tests/gpu/test_nccl_gpu.py
step device_tests 150 "$OUT/device_tests.log" "${PYTEST[@]}" --maxfail=30 -k cuda \
    tests/tensor/test_ops.py tests/gpu_path tests/amp
MPIRUN="$(command -v mpirun || command -v mpiexec || command -v "$(dirname "$PY")/mpiexec")"
if [ -n "$MPIRUN" ]; then
    MPIFLAGS=()        # Open MPI forwards only the variables named with -x; MPICH forwards all
    if "$MPIRUN" --version 2>&1 | grep -q "Open MPI"; then
        MPIFLAGS=(--oversubscribe -x PYTHONPATH -x PYTHONUNBUFFERED -x OPENBLAS_NUM_THREADS)
    fi
    step mpi_ddp 45 "$OUT/mpi_ddp.log" "$MPIRUN" "${MPIFLAGS[@]}" -n 2 \
        "$("$PY" -c 'import sys; print(sys.executable)')" tests/gpu/mpi_ddp_cupy.py
else
    echo "mpi_ddp      FAILED   no mpirun/mpiexec on PATH" | tee -a "$SUMMARY"
    FAILED=$((FAILED + 1))
fi
step bench 120 "$OUT/bench.log" "$PY" benchmarks/gpu_bench.py --quick --out "$OUT"
step breakdown 45 "$OUT/bench.log" "$PY" benchmarks/gpu_breakdown.py
rm -f "$OUT/gpu_bench.json"      # its numbers are in bench.log and gpu_bench.md: 8 files at most
echo "total $((SECONDS - START)) s, $FAILED step(s) failed" | tee -a "$SUMMARY"
rm -rf "$PXROOT" "$SITE"
exit "$FAILED"
