#!/usr/bin/env bash
# The GPU figures and the shipped ResNet18 in one device call (see "Running on a GPU" in the
# README), most important first, each step skipped when too little of the budget is left:
#
#   1. fer2013-resnet18: `train --recipe fer2013-resnet18` on FER2013 alone on the GPU (its
#      history gives the epoch times), its final weights saved in half precision as best.pt,
#      scored by `evaluate --tta` from that file;
#   2. bench_train: trainer vs bare loop, cnn3 (flat head) and ResNet18, fp32 and bf16, eager,
#      then compiled, then cnn3 at batch 512;
#   3. bench_epoch_parts (fused optimizer steps, background checkpoint writes);
#   4. recipe_ablation with what is left (each lever out, and the defaults).
#
# Here, before the call (the call carries at most 64 MiB):
#   python ../shared/tools/gpu_pack.py data
#   mkdir -p ../aside && mv checkpoints/fer2013-* dashboard/screenshots ../aside/
# The call: run(command="bash benchmarks/gpu_train_call.sh", carry=[".gpu/data"], timeout_s=560)
# After it: mv ../aside/fer2013-* checkpoints/ && mv ../aside/screenshots dashboard/; to ship
# the run, unpack it into checkpoints/fer2013-resnet18/ (weights: cat best.pt.part-* > best.pt),
# add its exception to .gitignore and write its MODEL_CARD.md from evaluate's JSON.
# It brings back three files: best.pt in two parts (cat best.pt.part-* > best.pt) and
# results.tar.gz (the run folder's other files, every JSON and log).
#
# Knobs (environment): BUDGET_S (default 480: seconds for the whole script), DATA (default: the
# CSV rebuilt from .gpu/data), RECIPE_EPOCHS (default: the recipe's), BENCH_FACES (default:
# bench_train's), OUT (the device tool sets it). A dry run on a CPU:
#   OUT=/tmp/out DATA=builtin:600 RECIPE_EPOCHS=1 BENCH_FACES=256 BUDGET_S=600 bash benchmarks/gpu_train_call.sh
set -uo pipefail
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
budget=${BUDGET_S:-480}
began=$SECONDS
out=${OUT:?OUT must name the folder the files go to}
work=$(mktemp -d)
run=$work/fer2013-resnet18
mkdir -p "$work/logs" "$work/results"
python=$(command -v python3 || command -v python)

left() { echo $((budget - (SECONDS - began))); }
step() {  # step NAME NEEDED_S COMMAND...: run it when NEEDED_S are left, logged, timed out at what is left
  local name=$1 needed=$2; shift 2
  if [ "$(left)" -lt "$needed" ]; then
    echo "skipped $name: $(left) s left, it needs $needed" | tee -a "$work/logs/steps.txt"
    return
  fi
  local t0=$SECONDS
  timeout "$(left)" "$@" >"$work/logs/$name.log" 2>&1
  local rc=$?
  echo "$name: exit $rc, $((SECONDS - t0)) s" | tee -a "$work/logs/steps.txt"
  tail -n 4 "$work/logs/$name.log"
}

nvidia-smi >"$work/logs/nvidia-smi.txt" 2>&1
if [ -z "${DATA:-}" ]; then
  DATA=/tmp/fer2013.csv
  step unpack 30 "$python" .gpu/data/fer2013_csv.py "$DATA"
fi
epochs=${RECIPE_EPOCHS:+--epochs $RECIPE_EPOCHS}
faces=${BENCH_FACES:+--faces $BENCH_FACES}

# shellcheck disable=SC2086
step train 120 "$python" -m fer_core train --recipe fer2013-resnet18 --data "$DATA" --out "$run" $epochs
if [ -f "$run/last.pt" ]; then
  "$python" -c "import sys; from fer_core.models.checkpoint import save_half; save_half(*sys.argv[1:])" \
    "$run/last.pt" "$run/best.pt"
  step evaluate 30 "$python" -m fer_core evaluate --checkpoint "$run/best.pt" --data "$DATA" --tta \
    --json "$work/results/evaluate_fer2013-resnet18.json"
fi

# shellcheck disable=SC2086
for compiled in "" "--compile"; do
  step "bench_train_cnn3${compiled}" 40 "$python" benchmarks/bench_train.py --arch cnn3 --head flat $faces $compiled
  step "bench_train_resnet18${compiled}" 60 "$python" benchmarks/bench_train.py --arch resnet18 --repeats 2 $faces $compiled
done
# shellcheck disable=SC2086
step bench_train_cnn3_b512 30 "$python" benchmarks/bench_train.py --arch cnn3 --head flat --batch-size 512 $faces
step bench_epoch_parts 20 "$python" benchmarks/bench_epoch_parts.py
# shellcheck disable=SC2086
step recipe_ablation 90 "$python" benchmarks/recipe_ablation.py --data "$DATA" --parallel 6 \
  --root "$work/ablation" $epochs
cp benchmarks/results/*.json "$work/results/" 2>/dev/null
cp "$work"/ablation/*.log "$work/logs/" 2>/dev/null

if [ -f "$run/best.pt" ]; then
  split -b 15M -d "$run/best.pt" "$out/best.pt.part-"
fi
rm -f "$run/best.pt" "$run/last.pt"
# shellcheck disable=SC2046
(cd "$work" && tar -czf "$out/results.tar.gz" $(ls -d fer2013-resnet18 logs results 2>/dev/null))
echo "done in $((SECONDS - began)) s; brought back: $(ls "$out" | tr '\n' ' ')"
