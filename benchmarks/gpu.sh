#!/usr/bin/env bash
# Issue 3's GPU check: the parity tests with jaxseq on the GPU, then the benchmarks.
#
#     bash benchmarks/gpu.sh OUT_DIR tests     # the parity suite (at most about 5 minutes)
#     bash benchmarks/gpu.sh OUT_DIR bench     # matrix.py --quick and seed.py (about 6 minutes)
#     bash benchmarks/gpu.sh OUT_DIR peers     # peers.py at the seed's size and batch 64 (at most 5 minutes)
#     bash benchmarks/gpu.sh OUT_DIR zoo       # zoo.py (the corpus models) and convert_speed.py (at most 5 minutes)
#     bash benchmarks/gpu.sh OUT_DIR           # all four, one after the other
#
# On a machine lent for 10-minute commands, run the three parts as three calls, one after the other.
# For a machine whose JAX sees a GPU and which already has jaxseq's dependencies (jax with CUDA,
# flax, optax, torch, pytest, ...): nothing is installed, the checkout is used in place through
# PYTHONPATH. TF32 is off in both frameworks (parity_tests/conftest.py). torchseq runs on the CPU,
# so the benchmark ratios there are jaxseq on the GPU against PyTorch on that machine's CPU cores.
# Writes into OUT_DIR: log.txt (versions, devices, each step's output), tests.txt (pytest's output,
# its summary listing every failure) and the results gpu-matrix.{md,json} (or .partial.* if the
# matrix was cut short), gpu-seed.{md,json} and gpu-peers*.{md,json} (jaxseq on the GPU against
# stock Flax and a plain scan on the GPU, and torch eager and torch.compile on the CPU). Each step
# has a time limit, and a failing step does not stop the ones after it. Exit status: the number of
# steps that failed; 100 if JAX sees no GPU (ALLOW_CPU=1 runs the script anyway, to try it); 2 for
# bad arguments.
set -uo pipefail
part=${2:-all}
if [ $# -lt 1 ] || [ $# -gt 2 ] || [[ ! $part =~ ^(all|tests|bench|peers|zoo)$ ]]; then
    echo "usage: bash benchmarks/gpu.sh OUT_DIR [tests|bench|peers|zoo]" >&2
    exit 2
fi
mkdir -p "$1" && out=$(CDPATH='' cd -- "$1" && pwd) || exit 2
CDPATH='' cd -- "$(dirname "$0")/.." || exit 2
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# Test processes and benchmark workers share the GPU: each takes memory as it needs it.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
python=${PYTHON:-python3}
log="$out/log.txt"
failed=0

step() { # step SECONDS DESCRIPTION FILE COMMAND...: COMMAND under a time limit, its output in FILE too
    local limit=$1 what=$2 file=$3
    shift 3
    echo "== $what ($(date -u +%H:%M:%S), limit $limit s): $*" | tee -a "$log"
    # SIGINT first: pytest then still prints its summary of failures; SIGKILL 30 s later.
    timeout -s INT -k 30 "$limit" "$@" 2>&1 | tee "$file" | tee -a "$log"
    local status=${PIPESTATUS[0]}
    case $status in
        0) echo "== $what: done" | tee -a "$log" ;;
        124 | 137) echo "== $what: stopped at its $limit s limit" | tee -a "$log" ;;
        *) echo "== $what: exit $status" | tee -a "$log" ;;
    esac
    [ "$status" -eq 0 ] || failed=$((failed + 1))
}

run_tests() { # the parity suite, spread over 8 processes (2 threads each) where pytest-xdist is installed
    # (pyproject's addopts, which ask for xdist's 2 processes, are replaced)
    local pytest=("$python" -m pytest -q -p no:cacheprovider -o "addopts=-ra --strict-markers")
    if "$python" -c "import xdist" 2>/dev/null; then
        OMP_NUM_THREADS=2 step 270 "parity tests" "$out/tests.txt" "${pytest[@]}" -n 8
    else
        step 270 "parity tests" "$out/tests.txt" "${pytest[@]}"
    fi
}

bench() { # bench SECONDS NAME COMMAND...: a benchmark writing benchmarks/results/NAME.* (peers.py also
    # NAME-PEER.*), copied to OUT_DIR
    local limit=$1 name=$2
    shift 2
    rm -f "benchmarks/results/$name".* "benchmarks/results/$name"-*.* "$out/$name".* "$out/$name"-*.*
    step "$limit" "$name" /dev/null "$@"
    cp benchmarks/results/"$name".* benchmarks/results/"$name"-*.* "$out/" 2>/dev/null
}

run_bench() {
    bench 200 gpu-matrix "$python" benchmarks/matrix.py --quick --name gpu-matrix
    bench 150 gpu-seed "$python" benchmarks/seed.py --repeats 3 --cli-runs 1 --name gpu-seed
}

run_peers() { # 4 cells; each table rewritten after every cell, so a run cut short keeps what it measured
    bench 280 gpu-peers "$python" benchmarks/peers.py --cells seed,batch64 --repeats 3 --seconds 0.5 \
        --compile-limit 60 --name gpu-peers
}

run_zoo() { # the corpus models at batch 64 in float32, jaxseq and torch (eager, compiled) both on the GPU;
    # the table is rewritten after every cell, so a run stopped at its limit keeps what it measured
    step 230 "zoo" "$out/gpu-zoo.log" "$python" benchmarks/zoo.py --rounds 3 --steps 10 --compile-limit 20 \
        --batches 64 --dtypes float32 --torch-device cuda --out "$out/gpu-zoo.md"
    step 60 "convert speed" "$out/gpu-convert-speed.txt" "$python" benchmarks/convert_speed.py --rounds 7
}

{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    # last line: JAX's default backend, read below
    "$python" -c "import sys, jax, torch; print(sys.version); print('jax', jax.__version__, jax.devices()); \
print('torch', torch.__version__, 'threads', torch.get_num_threads()); print(jax.default_backend())"
} 2>&1 | tee "$log"
backend=$(tail -n 1 "$log")
if [ "$backend" != gpu ] && [ "${ALLOW_CPU:-0}" != 1 ]; then
    echo "gpu.sh: JAX's default backend here is '$backend', not gpu (ALLOW_CPU=1 runs anyway)" | tee -a "$log" >&2
    exit 100
fi
case $part in
    all) run_tests; run_bench; run_peers; run_zoo ;;
    tests) run_tests ;;
    bench) run_bench ;;
    peers) run_peers ;;
    zoo) run_zoo ;;
esac
echo "== finished ($(date -u +%H:%M:%S)): $failed step(s) failed" | tee -a "$log"
exit "$failed"
