// DPF build-time description of synthmatch-synth (see plugin/SynthmatchSynth.cpp).
#ifndef DISTRHO_PLUGIN_INFO_H_INCLUDED
#define DISTRHO_PLUGIN_INFO_H_INCLUDED

#define DISTRHO_PLUGIN_BRAND "synthmatch"
#define DISTRHO_PLUGIN_NAME "synthmatch-synth"
#define DISTRHO_PLUGIN_URI "urn:synthmatch:synthmatch-synth"
#define DISTRHO_PLUGIN_CLAP_ID "org.synthmatch.synthmatch-synth"
#define DISTRHO_PLUGIN_BRAND_ID Smat
#define DISTRHO_PLUGIN_UNIQUE_ID Smsy

#define DISTRHO_PLUGIN_HAS_UI 0
#define DISTRHO_PLUGIN_IS_RT_SAFE 1
#define DISTRHO_PLUGIN_IS_SYNTH 1
#define DISTRHO_PLUGIN_NUM_INPUTS 0
#define DISTRHO_PLUGIN_NUM_OUTPUTS 2
#define DISTRHO_PLUGIN_WANT_MIDI_INPUT 1
#define DISTRHO_PLUGIN_WANT_STATE 0
#define DISTRHO_PLUGIN_VST3_CATEGORIES "Instrument|Synth"
#define DISTRHO_PLUGIN_CLAP_FEATURES "instrument", "synthesizer", "mono"
#define DISTRHO_PLUGIN_LV2_CATEGORY "lv2:InstrumentPlugin"

#endif
