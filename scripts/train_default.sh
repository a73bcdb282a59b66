#!/usr/bin/env bash
# How models/default.onnx and the model card's comparison were made: AST candidates and the paper's
# MLP and CNN baselines trained side by side on one GPU with the same budget (STEPS x BATCH examples,
# same data seed, same optimiser), each evaluated on the same test split and exported.
#
#   STEPS=6000 BATCH=256 TIME_LIMIT=420 bash scripts/train_default.sh runs/default out/
#
# TIME_LIMIT (s) stops a run that is slower than planned; its last.pt/best.pt still count, and the
# step it reached is in its metrics.jsonl, so an unequal budget is visible, never hidden.
set -u
runs=${1:-runs/default}; out=${2:-out}
steps=${STEPS:-6000}; batch=${BATCH:-256}; limit=${TIME_LIMIT:-420}; lr=${LR:-3e-4}
models=${MODELS:-"ast-tiny ast-small mlp cnn"}; device=${DEVICE:-cuda}
val_size=${VAL_SIZE:-1024}; test_size=${TEST_SIZE:-2048}
py=${PYTHON:-python3}
mkdir -p "$runs" "$out"
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}

spec() {  # a preset name, or an inline variant of one
  case $1 in
    ast-tiny-s8) echo '{ base = "ast-tiny", stride = [16, 8] }' ;;  # 4 x 48 = 192 tokens
    *) echo "\"$1\"" ;;
  esac
}

for m in $models; do
  mkdir -p "$runs/$m"
  cat > "$runs/$m/train.toml" <<TOML
model = $(spec "$m")
batch_size = $batch
steps = $steps
lr = $lr
optimizer = "adamw"
weight_decay = 0.01
warmup_steps = 300
schedule = "cosine"
grad_clip = 1.0
amp = "bf16"
val_every = 1000
ckpt_every = 500
log_every = 100
train_seed = 0
val_size = $val_size
workers = 0
plot = true
TOML
  timeout "$limit" $py -m bridge.cli train --config "$runs/$m/train.toml" --out "$runs/$m" --device "$device" \
    > "$runs/$m/train.log" 2>&1 &
done
wait

for m in $models; do
  ckpt="$runs/$m/best.pt"; [[ -f $ckpt ]] || ckpt="$runs/$m/last.pt"
  $py -m bridge.cli eval --checkpoint "$ckpt" --split test --size "$test_size" --out "$runs/$m/eval-test" \
    --device "$device" > "$runs/$m/eval.log" 2>&1 &
done
wait
for m in $models; do
  ckpt="$runs/$m/best.pt"; [[ -f $ckpt ]] || ckpt="$runs/$m/last.pt"
  $py -m bridge.cli export --checkpoint "$ckpt" --out "$out/$m.onnx" > "$runs/$m/export.log" 2>&1 &
done
wait
for m in $models; do
  tail -n 2 "$runs/$m/train.log" "$runs/$m/eval.log" "$runs/$m/export.log"
done
