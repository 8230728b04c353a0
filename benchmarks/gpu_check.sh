#!/usr/bin/env bash
# The GPU check, in under 8 minutes on one GPU: the harness against a hand-written loop (bf16
# autocast, data on the device) with torch.compile off and on, then the throughput of every built-in
# method's model (harness bench) on an image and a graph data set (--quick: the image one only).
# Writes OUT (default results/gpu/):
# overhead/, overhead-compile/, bench-mnist5k/, bench-cora/ (each with its provenance.json) and
# provenance.json for the whole check (its command, git commit, seconds, and each step's exit code).
#
#   benchmarks/gpu_check.sh                                   # CUDA; refuses in one line without it
#   benchmarks/gpu_check.sh --device cpu --quick --out DIR    # the plumbing, small, on a CPU
set -uo pipefail

ARGS="$*"
DEVICE=cuda
QUICK=0
OUT=results/gpu
PY=${PYTHON:-python}
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE=${2:?--device needs a value}; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --out) OUT=${2:?--out needs a value}; shift 2 ;;
    *) echo "gpu_check.sh: error: unknown argument $1 (known: --device D, --quick, --out DIR)" >&2; exit 2 ;;
  esac
done

if [[ $DEVICE == cuda* ]]; then
  "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)"
  case $? in
    0) ;;
    3) echo "gpu_check.sh: error: --device $DEVICE, but torch sees no CUDA device (use --device cpu --quick for the plumbing)" >&2
       exit 2 ;;
    *) echo "gpu_check.sh: error: $PY cannot import torch" >&2; exit 2 ;;
  esac
fi

if [ "$QUICK" = 1 ]; then  # the smallest run that exercises every step
  EPOCHS=1; REPEATS=1; WORKLOADS=(mlp-digits); IMAGE=digits; IMAGE_METHODS=(erm logreg)
  # On a CPU the compiler's C++ build alone takes minutes: the quick check passes --compile through
  # with compilation switched off, and records so.
  [[ $DEVICE == cpu ]] && COMPILE_ENV=(TORCH_COMPILE_DISABLE=1)
else
  EPOCHS=3; REPEATS=3; WORKLOADS=(cnn-mnist5k mlp-digits); IMAGE=mnist5k; IMAGE_METHODS=('*'); GRAPH_METHODS=('*')
fi

[ -v COMPILE_ENV ] || COMPILE_ENV=(TORCH_COMPILE_DISABLE=0)
mkdir -p "$OUT"
started=$(date +%s)
declare -A STATUS
step() {  # step NAME COMMAND...: run it, keep its exit code, go on with the next step either way
  local name=$1; shift
  echo "== $name: $*"
  "$@"
  STATUS[$name]=$?
}

step overhead "$PY" benchmarks/overhead.py --device "$DEVICE" --epochs "$EPOCHS" --repeats "$REPEATS" \
  --workloads "${WORKLOADS[@]}" --out "$OUT/overhead"
step overhead-compile env "${COMPILE_ENV[@]}" "$PY" benchmarks/overhead.py --device "$DEVICE" --epochs "$EPOCHS" --repeats "$REPEATS" \
  --workloads "${WORKLOADS[@]}" --compile --out "$OUT/overhead-compile"
step "bench-$IMAGE" "$PY" -m harness.cli bench "${IMAGE_METHODS[@]}" --dataset "$IMAGE" --device "$DEVICE" \
  --epochs "$EPOCHS" --repeats "$REPEATS" --out "$OUT/bench-$IMAGE"
if [ "$QUICK" = 0 ]; then  # the same step as the one above, on a graph task
  step bench-cora "$PY" -m harness.cli bench "${GRAPH_METHODS[@]}" --dataset cora --device "$DEVICE" \
    --epochs "$EPOCHS" --repeats "$REPEATS" --out "$OUT/bench-cora"
fi

steps=""
for name in "${!STATUS[@]}"; do steps+="$name=${STATUS[$name]},"; done
"$PY" - "$OUT" "$(( $(date +%s) - started ))" "$DEVICE" "$QUICK" "$steps" "$0 $ARGS" "${COMPILE_ENV[*]}" <<'EOF'
import json, sys
from pathlib import Path

from harness.report.provenance import gather, now

out, seconds, device, quick, steps, command, compile_env = sys.argv[1:]
exit_codes = dict(item.split("=") for item in steps.strip(",").split(",") if item)
prov = gather(device=device, quick=quick == "1", seconds=int(seconds), finished_at=now(),
              steps={name: int(code) for name, code in sorted(exit_codes.items())},
              compile_step_env=compile_env or None)
prov["command"] = command
(Path(out) / "provenance.json").write_text(json.dumps(prov, indent=2, default=str) + "\n")
print(f"gpu check: {seconds} s; steps {prov['steps']}; written: {out}")
EOF

for code in "${STATUS[@]}"; do
  [ "$code" = 0 ] || exit 1
done
