#!/usr/bin/env bash
# How models/default.onnx and the model card's comparison were made, on a 2-core CPU:
#   1. render a sharded audio dataset once (the reference synth at C4; example i = f(seed 0, i));
#   2. train each model on it for the same STEPS x BATCH examples (same data order, optimiser, schedule);
#      every model's front-end views of the dataset are computed once and cached beside it;
#   3. evaluate each on the same test split and export it.
#
#   bash scripts/train_default.sh                                   # the comparison (ablation budget)
#   MODELS=ast-cqt-sal STEPS=12000 THREADS=2 PARALLEL=1 RUNS=runs/default VAL_SIZE=1024 VAL_EVERY=1000 \
#     WARMUP=300 bash scripts/train_default.sh                                       # the shipped model
#
# Runs are resumable: rerun the same command after a kill and each run continues from its last.pt.
# THREADS torch threads per run; PARALLEL runs at a time (THREADS x PARALLEL <= cores).
set -u
cd "$(dirname "$0")/.."
runs=${RUNS:-runs/compare}; out=${OUT:-out}; data=${DATA:-data/c4-audio}; count=${COUNT:-131072}
steps=${STEPS:-500}; batch=${BATCH:-64}; lr=${LR:-5e-4}; warmup=${WARMUP:-100}
models=${MODELS:-"ast-cqt-sal ast-cqt-cls ast-cqt-mse ast-mel-mse mlp-cqt-cls cnn-cqt-cls"}
threads=${THREADS:-1}; parallel=${PARALLEL:-2}; device=${DEVICE:-cpu}
val_size=${VAL_SIZE:-512}; test_size=${TEST_SIZE:-1024}; val_every=${VAL_EVERY:-250}
py=${PYTHON:-.venv/bin/python}
mkdir -p "$runs" "$out"
export OMP_NUM_THREADS=$threads

spec() {  # a run name -> its model table
  case $1 in
    ast-cqt-sal) echo '"ast-tiny-cqt"' ;;                                            # the shipped design
    ast-cqt-cls) echo '{ base = "ast-tiny-cqt", salience = false }' ;;               # no harmonic sums
    ast-cqt-mse) echo '{ base = "ast-tiny-cqt", head = "mse", salience = false }' ;;  # the paper's loss
    ast-mel-mse) echo '"ast-tiny"' ;;                                       # the paper's front-end and loss
    mlp-cqt-cls) echo '{ base = "mlp", frontend = "mel+cqt", head = "pitch-cls" }' ;;
    cnn-cqt-cls) echo '{ base = "cnn", frontend = "mel+cqt", head = "pitch-cls" }' ;;
    *) echo "\"$1\"" ;;
  esac
}

[[ -f $data/manifest.json ]] && $py -m synthmatch.bridge.cli dataset verify "$data" >/dev/null 2>&1 ||
  $py -m synthmatch.bridge.cli dataset render --count "$count" --out "$data" --store audio --workers "${WORKERS:-2}"

train() {
  local m=$1 dir=$runs/$1
  mkdir -p "$dir"
  cat > "$dir/train.toml" <<TOML
model = $(spec "$m")
data = "$data"
batch_size = $batch
steps = $steps
lr = $lr
optimizer = "adamw"
weight_decay = 0.01
warmup_steps = $warmup
schedule = "cosine"
grad_clip = 1.0
amp = "none"
val_every = $val_every
ckpt_every = 100
log_every = 25
train_seed = 0
val_size = $val_size
workers = 0
plot = true
TOML
  local resume=""; [[ -f $dir/last.pt ]] && resume="--resume"
  $py -m synthmatch.bridge.cli train --config "$dir/train.toml" --out "$dir" --device "$device" $resume > "$dir/train.log" 2>&1
  local ckpt="$dir/best.pt"; [[ -f $ckpt ]] || ckpt="$dir/last.pt"
  $py -m synthmatch.bridge.cli export --checkpoint "$ckpt" --out "$out/$m.onnx" > "$dir/export.log" 2>&1
  $py -m synthmatch.bridge.cli eval --model "$out/$m.onnx" --split test --size "$test_size" --out "$dir/eval-test" \
    > "$dir/eval.log" 2>&1
  tail -n 1 "$dir/eval.log"
}

# the views cache is computed once, by the first run that needs it; later runs read it
for m in $models; do
  while (( $(jobs -rp | wc -l) >= parallel )); do wait -n; done
  train "$m" &
done
wait
