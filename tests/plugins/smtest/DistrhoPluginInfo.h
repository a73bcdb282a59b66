// DPF build-time description of the synthmatch test plugins. One source, five variants chosen with
// -DSMTEST_VARIANT=N (see Makefile): 0 the instrument, 1 an effect (audio in, no MIDI: the wrong
// kind of plugin), 2 an instrument that renders silence, 3 the instrument that kills its process
// at its second note while the file named by $SMTEST_CRASH_ONCE exists (for worker restarts), 4 the
// instrument with a reset that keeps its voice sounding (the host must re-create it between renders).
#ifndef DISTRHO_PLUGIN_INFO_H_INCLUDED
#define DISTRHO_PLUGIN_INFO_H_INCLUDED

#ifndef SMTEST_VARIANT
#define SMTEST_VARIANT 0
#endif

#define DISTRHO_PLUGIN_BRAND "synthmatch"
#define DISTRHO_PLUGIN_HAS_UI 0
#define DISTRHO_PLUGIN_IS_RT_SAFE 1
#define DISTRHO_PLUGIN_NUM_OUTPUTS 2

#if SMTEST_VARIANT == 1
#define DISTRHO_PLUGIN_NAME "SMTestFx"
#define DISTRHO_PLUGIN_URI "urn:synthmatch:smtest-fx"
#define DISTRHO_PLUGIN_NUM_INPUTS 2
#define DISTRHO_PLUGIN_IS_SYNTH 0
#define DISTRHO_PLUGIN_WANT_MIDI_INPUT 0
#define DISTRHO_PLUGIN_VST3_CATEGORIES "Fx|Filter|Stereo"
#else
#if SMTEST_VARIANT == 2
#define DISTRHO_PLUGIN_NAME "SMTestSilent"
#define DISTRHO_PLUGIN_URI "urn:synthmatch:smtest-silent"
#elif SMTEST_VARIANT == 3
#define DISTRHO_PLUGIN_NAME "SMTestCrash"
#define DISTRHO_PLUGIN_URI "urn:synthmatch:smtest-crash"
#elif SMTEST_VARIANT == 4
#define DISTRHO_PLUGIN_NAME "SMTestSticky"
#define DISTRHO_PLUGIN_URI "urn:synthmatch:smtest-sticky"
#else
#define DISTRHO_PLUGIN_NAME "SMTest"
#define DISTRHO_PLUGIN_URI "urn:synthmatch:smtest"
#endif
#define DISTRHO_PLUGIN_NUM_INPUTS 0
#define DISTRHO_PLUGIN_IS_SYNTH 1
#define DISTRHO_PLUGIN_WANT_MIDI_INPUT 1
#define DISTRHO_PLUGIN_VST3_CATEGORIES "Instrument|Synth"
#endif

#endif
