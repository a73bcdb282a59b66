#!/usr/bin/env bash
# Build the synthmatch test plugins (tests/plugins/smtest) as VST3 bundles into build/plugins/:
#   SMTest.vst3        the test instrument (what tests and scripts/bench_vst3.py render)
#   SMTestFx.vst3      an effect (audio in, no MIDI): the wrong kind of plugin
#   SMTestSilent.vst3  an instrument that renders silence
#   SMTestCrash.vst3   the instrument, but it kills its process at its 2nd note while $SMTEST_CRASH_ONCE names a file
#   SMTestSticky.vst3  the instrument, but its reset keeps the voice sounding (so it must be re-created per render)
# Needs g++, make and Debian's dpf-source (DISTRHO Plugin Framework; scripts/setup.sh --dev installs it).
#
# DPF is built from a private copy with two changes to its VST3 wrapper (1.6+ds-2), applied below:
#  - its MIDI-CC proxy parameters are cut from 16 channels to 1 (2,080 -> 130 hidden parameters):
#    pedalboard's VST3 host takes ~16 s to load a plugin with 2,089 parameters (0.2 s with 139);
#  - get/setParameterNormalized test `<= MidiCC_end`, which also catches the plugin's first real
#    parameter (it then reads as 0 and refuses to be set); the copy tests `<`.
# A build takes a few seconds; it is redone only when a source changed.
set -euo pipefail
cd "$(dirname "$0")/.."
src=tests/plugins/smtest
out=${1:-build/plugins}
dpf_system=${DPF_SYSTEM_PATH:-/usr/share/dpf}
if [[ ! -f "$dpf_system/Makefile.plugins.mk" ]]; then
  echo "build_test_plugin: $dpf_system/Makefile.plugins.mk not found; install Debian's dpf-source" \
       "(sudo apt-get install dpf-source) or run scripts/setup.sh --dev" >&2
  exit 2
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
dpf="$out/dpf"
vst_hpp="$dpf/distrho/src/DistrhoPluginVST.hpp"
vst3_cpp="$dpf/distrho/src/DistrhoPluginVST3.cpp"
if [[ ! -f "$dpf/.patched" ]]; then
  rm -rf "$dpf"
  cp -r "$dpf_system" "$dpf"
  sed -i 's/kVst3InternalParameterMidiCC_start + 130\*16,/kVst3InternalParameterMidiCC_start + 130,/' "$vst_hpp"
  sed -i 's/^\(\s*\)rindex <= kVst3InternalParameterMidiCC_end)$/\1rindex < kVst3InternalParameterMidiCC_end)/' "$vst3_cpp"
  # each change must have applied (another DPF version may need another patch)
  if [[ $(grep -c 'kVst3InternalParameterMidiCC_start + 130,' "$vst_hpp") != 1 ||
        $(grep -c '^\s*rindex < kVst3InternalParameterMidiCC_end)$' "$vst3_cpp") != 2 ]]; then
    echo "build_test_plugin: this DPF version ($dpf_system) does not match the expected VST3 wrapper;" \
         "see the comments in $0" >&2
    exit 2
  fi
  touch "$dpf/.patched"
fi
variants=(SMTest:0 SMTestFx:1 SMTestSilent:2 SMTestCrash:3 SMTestSticky:4)
for nv in "${variants[@]}"; do
  name=${nv%%:*} variant=${nv##*:}
  make -s -C "$src" NAME="$name" VARIANT="$variant" DPF_PATH="$dpf" DPF_TARGET_DIR="$out" \
       DPF_BUILD_DIR="$out/obj/$name" vst3 >/dev/null
  echo "build_test_plugin: $out/$name.vst3"
done
