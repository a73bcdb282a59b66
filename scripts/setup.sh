#!/usr/bin/env bash
# Set up synthmatch on a fresh Debian/Ubuntu machine: system packages, then a virtualenv in .venv.
#   bash scripts/setup.sh          runtime + training (torch)
#   bash scripts/setup.sh --dev    the same plus the test tools (pytest, mypy, TensorRT stubs, TensorRT-RTX)
# Torch: on a machine without an NVIDIA GPU the CPU build (torch==2.13.0) is installed so no multi-GB
# CUDA build is pulled; with `nvidia-smi` present the default PyPI (CUDA) build and onnxruntime-gpu are.
# Override with TORCH_SPEC, e.g. TORCH_SPEC="torch==2.13.0" bash scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="train"
[[ "${1:-}" == "--dev" ]] && extras="train,dev"

# libportaudio2: sounddevice; libsndfile1: soundfile; jackd2 + liblo-tools: real audio/MIDI/OSC peers for
# the daemon and its tests; fluidsynth + fluid-soundfont-gm: real instruments for out-of-domain evaluation.
debs=(libportaudio2 libsndfile1 jackd2 liblo-tools fluidsynth fluid-soundfont-gm)
# --dev: g++, make and dpf-source (DISTRHO Plugin Framework) build the VST3 test instrument the tests load;
# sox reads the WAVs synthmatch writes (tests/bridge/live/test_friction.py: no header warnings).
[[ "$extras" == *dev* ]] && debs+=(g++ make dpf-source sox amsynth zynaddsubfx)
missing=()
for d in "${debs[@]}"; do dpkg -s "$d" >/dev/null 2>&1 || missing+=("$d"); done
if ((${#missing[@]})); then
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  echo "setup: installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)

if command -v nvidia-smi >/dev/null 2>&1; then
  torch_spec=${TORCH_SPEC:-"torch>=2.3"}; extras="$extras,gpu"
else
  torch_spec=${TORCH_SPEC:-"torch==2.13.0"}
fi
.venv/bin/python -c "import torch" 2>/dev/null || "${pip[@]}" "$torch_spec"
"${pip[@]}" -e ".[$extras]"
# TensorRT 10's Python signatures for mypy over bridge/engines/tensorrt.py; --no-deps because its
# metadata requires the tensorrt wheels themselves, which PyPI does not carry.
[[ "$extras" == *dev* ]] && "${pip[@]}" --no-deps "tensorrt-stubs==10.13.0.35.1"
# TensorRT-RTX (PyPI): the tests build real engines with it, no GPU needed; the gpu extra installs it too.
[[ "$extras" == *dev* ]] && "${pip[@]}" "tensorrt-rtx-cu12==1.7.1.116"
[[ "$extras" == *dev* ]] && bash scripts/build_test_plugin.sh
[[ "$extras" == *dev* ]] && bash scripts/build_synth_plugin.sh  # synthmatch-synth: VST3, CLAP, LV2, JACK (docs/plugin.md)

# --dev: .venv-runtime holds synthmatch as a user gets it: the built wheel (not editable), no extras, so no
# torch, plus pytest; tests/test_installed.py runs the CLI and the torch-free tests with it. The venv is made
# afresh when pyproject.toml or Python changes, the wheel rebuilt and reinstalled when any file git lists does.
runtime_venv() {
  local venv=.venv-runtime deps_stamp src_stamp wheel
  if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    echo "setup: not a git checkout: $venv not made (tests/test_installed.py skips)"; return 0
  fi
  rt_tmp=$(mktemp -d) && trap 'rm -rf "$rt_tmp"' EXIT
  # built from a copy of the files git lists (tracked, and untracked but not ignored): an in-tree build
  # would carry modules left over in build/lib into the wheel
  git ls-files -z -co --exclude-standard >"$rt_tmp/listed"
  while IFS= read -r -d '' f; do
    if [[ -f "$f" ]]; then printf '%s\0' "$f"; fi  # a deleted file stays listed until committed
  done <"$rt_tmp/listed" >"$rt_tmp/files"
  deps_stamp=$({ "$python" --version; cat pyproject.toml; } | sha256sum)
  src_stamp=$(xargs -0 sha256sum <"$rt_tmp/files" | sha256sum)
  if [[ "$(cat "$venv/.deps-stamp" 2>/dev/null)" != "$deps_stamp" ]]; then
    rm -rf "$venv"
    "$python" -m venv "$venv"
    echo "$deps_stamp" >"$venv/.deps-stamp"
  fi
  if [[ "$(cat "$venv/.src-stamp" 2>/dev/null)" == "$src_stamp" ]]; then return 0; fi
  rm -f "$venv/.src-stamp"
  mkdir "$rt_tmp/src"
  tar --null -T "$rt_tmp/files" -cf - | tar -C "$rt_tmp/src" -xf -
  local rpip=("$venv/bin/python" -m pip -q --disable-pip-version-check)
  "${rpip[@]}" wheel --no-deps -w "$rt_tmp/dist" "$rt_tmp/src"
  wheel=$(echo "$rt_tmp"/dist/synthmatch-*.whl)
  "${rpip[@]}" uninstall -y synthmatch 2>/dev/null || true  # at the same version pip would keep the old files
  # pytest as in the dev extra; --no-compile: only what runs gets byte-compiled (saves ~40 % of the install)
  "${rpip[@]}" install --no-compile "$wheel" "pytest>=8" "pytest-rerunfailures>=14"
  echo "$src_stamp" >"$venv/.src-stamp"
  echo "setup: $venv: $(basename "$wheel") installed, no torch"
}
if [[ "$extras" == *dev* ]]; then runtime_venv; fi
echo "setup: ready ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
