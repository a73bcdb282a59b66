#!/usr/bin/env bash
# Build synthmatch-synth (plugin/: the reference synth in C++) into build/plugins/:
#   synthmatch-synth.vst3   VST3 bundle
#   synthmatch-synth.clap   CLAP plugin
#   synthmatch-synth.lv2    LV2 bundle (its .ttl files made by DPF's lv2_ttl_generator)
#   synthmatch-synth        JACK standalone (JACK is loaded at run time; no JACK headers needed)
# Needs g++, make, Debian's dpf-source (DISTRHO Plugin Framework) and a Python with numpy and synthmatch
# (the repository's .venv when present): plugin/gen_params.py writes the parameter table, the wavetable
# banks and the reverb's impulse response from configs/contract.toml and bridge/match/synth.py.
# scripts/setup.sh --dev runs this. A rebuild happens only when a source (or the contract) changed.
#
# DPF is built from a private copy (build/plugins/synth-obj/dpf) with the VST3 wrapper changes of
# scripts/build_test_plugin.sh (one MIDI channel of CC proxy parameters; `<` instead of `<=` at the end of
# the proxy range) and one more: the wrapper turns a host's CC and pitch-bend proxy values (value / 127,
# value / 16383) back into MIDI by truncation, which loses a step to float rounding; the copy rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/plugins}
dpf_system=${DPF_SYSTEM_PATH:-/usr/share/dpf}
if [[ ! -f "$dpf_system/Makefile.plugins.mk" ]]; then
  echo "build_synth_plugin: $dpf_system/Makefile.plugins.mk not found; install Debian's dpf-source" \
       "(sudo apt-get install dpf-source) or run scripts/setup.sh --dev" >&2
  exit 2
fi
python=${PYTHON:-}
if [[ -z "$python" ]]; then
  if [[ -x .venv/bin/python ]]; then python=$PWD/.venv/bin/python; else python=python3; fi
fi
if ! "$python" -c "import numpy, synthmatch.bridge.match.synth" 2>/dev/null; then
  echo "build_synth_plugin: $python cannot import numpy and synthmatch; run scripts/setup.sh" \
       "(or pip install -e . in the Python given as PYTHON=...)" >&2
  exit 2
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
obj="$out/synth-obj"
dpf="$obj/dpf"
vst_hpp="$dpf/distrho/src/DistrhoPluginVST.hpp"
vst3_cpp="$dpf/distrho/src/DistrhoPluginVST3.cpp"
if [[ ! -f "$dpf/.patched" ]]; then
  rm -rf "$dpf"
  mkdir -p "$obj"
  cp -r "$dpf_system" "$dpf"
  sed -i 's/kVst3InternalParameterMidiCC_start + 130\*16,/kVst3InternalParameterMidiCC_start + 130,/' "$vst_hpp"
  sed -i 's/^\(\s*\)rindex <= kVst3InternalParameterMidiCC_end)$/\1rindex < kVst3InternalParameterMidiCC_end)/' "$vst3_cpp"
  sed -i 's/(int)(normalized \* 127)/(int)(normalized * 127 + 0.5)/; s/(int)(normalized \* 16384)/(int)(normalized * 16383 + 0.5)/g' "$vst3_cpp"
  # each change must have applied (another DPF version may need another patch)
  if [[ $(grep -c 'kVst3InternalParameterMidiCC_start + 130,' "$vst_hpp") != 1 ||
        $(grep -c '^\s*rindex < kVst3InternalParameterMidiCC_end)$' "$vst3_cpp") != 2 ||
        $(grep -c '(int)(normalized \* 127 + 0.5)' "$vst3_cpp") != 2 ||
        $(grep -c '(int)(normalized \* 16383 + 0.5)' "$vst3_cpp") != 2 ]]; then
    echo "build_synth_plugin: this DPF version ($dpf_system) does not match the expected VST3 wrapper;" \
         "see the comments in $0" >&2
    exit 2
  fi
  touch "$dpf/.patched"
fi
make -s -C plugin PYTHON="$python" DPF_PATH="$dpf" DPF_TARGET_DIR="$out" DPF_BUILD_DIR="$obj/build" \
     GEN_DIR="$obj/gen" ${MAKEFLAGS_SYNTH:-} all >/dev/null
# the LV2 bundle's manifest.ttl and synthmatch-synth.ttl: DPF's generator asks the built library
[[ -x "$dpf/utils/lv2_ttl_generator" ]] || make -s -C "$dpf/utils/lv2-ttl-generator" >/dev/null
(cd "$out/synthmatch-synth.lv2" && "$dpf/utils/lv2_ttl_generator" ./synthmatch-synth_dsp.so >/dev/null)
for f in synthmatch-synth.vst3 synthmatch-synth.clap synthmatch-synth.lv2/manifest.ttl synthmatch-synth; do
  [[ -e "$out/$f" ]] || { echo "build_synth_plugin: $out/$f was not built" >&2; exit 1; }
  echo "build_synth_plugin: $out/$f"
done
