// SMTest: the synthmatch test instrument, a small deterministic subtractive voice for the VST3 tests.
//
//   oscillator (Shape: sine -> saw -> square, band-limited with polyBLEP; Tune in semitones)
//     -> 2-pole resonant lowpass (Cutoff in Hz, Resonance 0..1; trapezoidal state-variable filter)
//     -> ADSR amplitude envelope (linear Attack; exponential Decay to Sustain; exponential Release)
//     -> Gain -> the same signal on both outputs
//
// Monophonic, last note wins. Nothing random; activate() resets every state variable, and a note-on on
// an idle voice restarts the phase and the filter, so a render depends only on the patch and the MIDI.
// Variants (DistrhoPluginInfo.h): 1 an effect (filter and gain on its audio input, no MIDI), 2 silent,
// 3 crashes its process (for the worker-restart tests; see midi()), 4 keeps sounding across a reset.
#include "DistrhoPlugin.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <unistd.h>

START_NAMESPACE_DISTRHO

enum Param { kShape, kTune, kCutoff, kResonance, kAttack, kDecay, kSustain, kRelease, kGain, kParamCount };

struct ParamInfo { const char* name; const char* symbol; const char* unit; float def, min, max; uint32_t hints; };

// Host-automation names (what pedalboard and a DAW list), ranges in the plugin's own units.
static const ParamInfo kParams[kParamCount] = {
    {"Shape", "shape", "", 0.5f, 0.0f, 1.0f, 0},                    // 0 sine, 0.5 saw, 1 square
    {"Tune", "tune", "st", 0.0f, -24.0f, 24.0f, 0},                 // semitones from the played note
    {"Cutoff", "cutoff", "Hz", 2000.0f, 20.0f, 20000.0f, kParameterIsLogarithmic},
    {"Resonance", "resonance", "", 0.2f, 0.0f, 1.0f, 0},            // Q 0.5 .. 25
    {"Attack", "attack", "s", 0.005f, 0.001f, 4.0f, 0},             // linear ramp time
    {"Decay", "decay", "s", 0.3f, 0.01f, 5.0f, 0},                  // time constant towards Sustain
    {"Sustain", "sustain", "", 0.5f, 0.0f, 1.0f, 0},
    {"Release", "release", "s", 0.2f, 0.001f, 4.0f, 0},             // time constant towards 0
    {"Gain", "gain", "", 0.8f, 0.0f, 1.0f, 0},                      // linear output amplitude
};

static inline double polyblep(double t, double dt) {
    // polynomial band-limited step correction around a discontinuity at phase 0 (t in [0, 1))
    if (t < dt) { t /= dt; return t + t - t * t - 1.0; }
    if (t > 1.0 - dt) { t = (t - 1.0) / dt; return t * t + t + t + 1.0; }
    return 0.0;
}

class SMTestPlugin : public Plugin {
public:
    SMTestPlugin() : Plugin(kParamCount, 0, 0) {
        for (int i = 0; i < kParamCount; ++i) fValues[i] = kParams[i].def;
        resetState();
    }

protected:
    const char* getLabel() const override { return DISTRHO_PLUGIN_NAME; }
    const char* getDescription() const override { return "synthmatch test instrument (subtractive, mono)"; }
    const char* getMaker() const override { return "synthmatch"; }
    const char* getLicense() const override { return "MIT"; }
    uint32_t getVersion() const override { return d_version(1, 0, 0); }
    int64_t getUniqueId() const override { return d_cconst('s', 'm', 't', '0' + SMTEST_VARIANT); }

    void initParameter(uint32_t index, Parameter& p) override {
        const ParamInfo& info = kParams[index];
        p.hints = kParameterIsAutomatable | info.hints;
        p.name = info.name;
        p.symbol = info.symbol;
        p.unit = info.unit;
        p.ranges.def = info.def;
        p.ranges.min = info.min;
        p.ranges.max = info.max;
    }

    float getParameterValue(uint32_t index) const override { return fValues[index]; }
    void setParameterValue(uint32_t index, float value) override { fValues[index] = value; }

#if SMTEST_VARIANT == 4
    void activate() override {}  // a plugin bug: a reset (deactivate, activate) keeps the voice sounding
#else
    void activate() override { resetState(); }
#endif

#if DISTRHO_PLUGIN_WANT_MIDI_INPUT
    void run(const float**, float** outputs, uint32_t frames, const MidiEvent* events, uint32_t count) override {
        uint32_t pos = 0;
        for (uint32_t e = 0; e < count; ++e) {  // sample-accurate: render up to each event, then apply it
            const uint32_t at = events[e].frame < frames ? events[e].frame : frames;
            if (at > pos) { render(nullptr, outputs, pos, at); pos = at; }
            if (events[e].size <= MidiEvent::kDataSize) midi(events[e].data);
        }
        if (pos < frames) render(nullptr, outputs, pos, frames);
    }
#else
    void run(const float** inputs, float** outputs, uint32_t frames) override {
        render(inputs, outputs, 0, frames);
    }
#endif

private:
    float fValues[kParamCount];
    double fPhase, fLow, fBand, fEnv;
    int fNote;       // sounding note, -1 when none
    int fStage;      // 0 idle, 1 attack, 2 decay/sustain, 3 release
    int fNotesPlayed = 0;  // note-ons since the instance was created (not reset by activate)

    void resetState() {
        fPhase = fLow = fBand = fEnv = 0.0;
        fNote = -1;
        fStage = 0;
    }

    void midi(const uint8_t* d) {
        const uint8_t status = d[0] & 0xF0;
        if (status == 0x90 && d[2] > 0) {
#if SMTEST_VARIANT == 3
            // a plugin bug, on the second note this instance plays (the first is the host's silence
            // check) while $SMTEST_CRASH_ONCE names a file: the file is removed (unless it reads
            // "always"), then the process dies
            const char* flag = std::getenv("SMTEST_CRASH_ONCE");
            if (++fNotesPlayed >= 2 && flag != nullptr && access(flag, F_OK) == 0) {
                FILE* f = std::fopen(flag, "r");
                char head[8] = {0};
                if (f != nullptr) { (void)std::fread(head, 1, 6, f); std::fclose(f); }
                if (std::string(head) != "always") unlink(flag);
                std::abort();
            }
#endif
            if (fStage == 0) { fPhase = fLow = fBand = 0.0; }
            fNote = d[1];
            fStage = 1;
        } else if ((status == 0x80 || (status == 0x90 && d[2] == 0)) && d[1] == fNote) {
            fStage = 3;
        }
    }

    double oscillator(double dt) {
        const double shape = fValues[kShape];
        const double sine = std::sin(2.0 * M_PI * fPhase);
        const double saw = 2.0 * fPhase - 1.0 - polyblep(fPhase, dt);
        double t2 = fPhase + 0.5;
        if (t2 >= 1.0) t2 -= 1.0;
        const double square = (fPhase < 0.5 ? 1.0 : -1.0) + polyblep(fPhase, dt) - polyblep(t2, dt);
        if (shape < 0.5) return (1.0 - 2.0 * shape) * sine + 2.0 * shape * saw;
        return (2.0 - 2.0 * shape) * saw + (2.0 * shape - 1.0) * square;
    }

    void render(const float** inputs, float** outputs, uint32_t start, uint32_t stop) {
        const double sr = getSampleRate();
        const double fc = std::fmin(std::fmax(fValues[kCutoff], 20.0f), 0.45 * sr);
        const double g = std::tan(M_PI * fc / sr);
        const double k = 2.0 - 1.96 * fValues[kResonance];  // damping: Q = 1/k, 0.5 .. 25
        const double a1 = 1.0 / (1.0 + g * (g + k)), a2 = g * a1, a3 = g * a2;
        const double gain = fValues[kGain];
#if DISTRHO_PLUGIN_WANT_MIDI_INPUT
        // per-sample envelope coefficients (times in s) and the phase increment (cycles per sample)
        const double decay = std::exp(-1.0 / (std::fmax(fValues[kDecay], 1e-4f) * sr));
        const double release = std::exp(-1.0 / (std::fmax(fValues[kRelease], 1e-4f) * sr));
        const double attackStep = 1.0 / (std::fmax(fValues[kAttack], 1e-4f) * sr);
        const double sustain = fValues[kSustain];
        const double dt = fNote < 0 ? 0.0 : 440.0 * std::pow(2.0, (fNote + fValues[kTune] - 69.0) / 12.0) / sr;
#endif
        for (uint32_t i = start; i < stop; ++i) {
#if DISTRHO_PLUGIN_WANT_MIDI_INPUT
            (void)inputs;
            double x = 0.0;
            if (fStage != 0) {
                x = oscillator(dt);
                fPhase += dt;
                if (fPhase >= 1.0) fPhase -= 1.0;
            }
#else
            double x = 0.5 * (inputs[0][i] + inputs[1][i]);
#endif
            // trapezoidal SVF (Simper): v1 band, v2 low
            const double v3 = x - fLow;
            const double v1 = a1 * fBand + a2 * v3;
            const double v2 = fLow + a2 * fBand + a3 * v3;
            fBand = 2.0 * v1 - fBand;
            fLow = 2.0 * v2 - fLow;
#if DISTRHO_PLUGIN_WANT_MIDI_INPUT
            if (fStage == 1) { fEnv += attackStep; if (fEnv >= 1.0) { fEnv = 1.0; fStage = 2; } }
            else if (fStage == 2) fEnv = sustain + (fEnv - sustain) * decay;
            else if (fStage == 3) { fEnv *= release; if (fEnv < 1e-7) { fEnv = 0.0; fStage = 0; fNote = -1; } }
            double y = gain * fEnv * v2 * 0.5;
#else
            double y = gain * v2;
#endif
#if SMTEST_VARIANT == 2
            y = 0.0;
#endif
            outputs[0][i] = outputs[1][i] = static_cast<float>(y);
        }
    }

    DISTRHO_DECLARE_NON_COPYABLE_WITH_LEAK_DETECTOR(SMTestPlugin)
};

Plugin* createPlugin() { return new SMTestPlugin(); }

END_NAMESPACE_DISTRHO
