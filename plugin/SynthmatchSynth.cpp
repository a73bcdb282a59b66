// synthmatch-synth: the project's reference synth (training/synth.py, bridge/match/synth.py) as a DPF
// instrument: VST3, CLAP, LV2 and a JACK standalone from this one source.
//
// Parameters: the contract's 16, generated into synthmatch_contract.h by plugin/gen_params.py. Each is
// the contract's normalised value v in [0, 1], exactly what the model predicts, what the bridge sends as
// MIDI CC and what host automation carries; the plugin applies the contract's curve (engine.hpp's
// physical()). A 17th, pitch_bend_range, is the bend range in semitones (the bridge's bend_range).
//
// One mono-legato voice: a note-on while a note is held moves the pitch (no new attack); released notes
// fall back to the newest still held. MIDI CC per the contract's `cc` column, 7-bit (CC n) or 14-bit
// (MSB on n, LSB on n + 32); pitch bend; CC 120/123 silence or release.
//
// Static patches render as the training renderer renders (tests/plugin/test_synth_plugin.py checks it
// at 16 kHz). Changes while a note sounds are click-free: the tables are rebuilt and cross-faded over
// kCrossfadeS, pitch, times, mix and the limiter's gain are smoothed.
//
// The limiter: the renderer divides each note by its peak where that exceeds 1; a plugin cannot know a
// note's future, but this synth's note is fully determined by (patch, note), so at a fresh note-on the
// plugin renders the canonical note once (engine.hpp CanonicalPeak, a few ms) and applies the
// renderer's exact gain from the first sample. After a change mid-note a worker thread computes the new
// gain and the audio thread glides to it.
#include "DistrhoPlugin.hpp"
#include "engine.hpp"

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

START_NAMESPACE_DISTRHO

using namespace smsynth;

static const uint32_t kBendRange = SM_NUM_PARAMS;  // the extra parameter's index
static const uint32_t kParamCount = SM_NUM_PARAMS + 1;
static const double kBendDefault = 2.0, kBendMax = 48.0;  // semitones, as the bridge's bend_range
static const double kCrossfadeS = 0.020;  // table cross-fade after a change (rebuilds at most this often)
static const double kSmoothS = 0.005;     // one-pole smoothing of pitch, times and mix
static const double kGainSmoothS = 0.020; // the limiter's gain glide
static const uint32_t kControl = 32;      // samples between control updates
static const int kGainKey = SM_NUM_PARAMS + 1;  // the 16 values and the note
static const int kTableKey = SM_P_filter2_resonance + 2;  // oscillators and filters, and the note
static const int kMaxHeld = 16;

class SynthmatchSynth : public Plugin {
public:
    SynthmatchSynth() : Plugin(kParamCount, 0, 0) {
        for (int i = 0; i < SM_NUM_PARAMS; ++i) fValue[i] = (float)SM_PARAMS[i].def;
        fValue[kBendRange] = (float)kBendDefault;
        for (int i = 0; i < 3; ++i) { fA[i].assign(kN, 0.0f); fB[i].assign(kN, 0.0f); }
        fBuilder.init();
        fPeakAudio.init();
        fPeakWorker.init();
        setup(getSampleRate());  // hosts may change it before activate(), which then sets up again
        fWorker = std::thread([this] { workerLoop(); });
    }
    ~SynthmatchSynth() override {
        fQuit.store(true);
        fWorker.join();
    }

protected:
    const char* getLabel() const override { return "synthmatch-synth"; }
    const char* getDescription() const override {
        return "The synthmatch reference synth: 3 wavetable oscillators, ladder lowpass, resonant highpass, "
               "envelope, reverb; the 16 controls the synthmatch model predicts (contract " SM_CONTRACT_HASH ")";
    }
    const char* getMaker() const override { return "synthmatch"; }
    const char* getHomePage() const override { return "https://github.com/synthmatch/synthmatch"; }
    const char* getLicense() const override { return "MIT"; }
    uint32_t getVersion() const override { return d_version(1, 0, 0); }
    int64_t getUniqueId() const override { return d_cconst('S', 'm', 's', 'y'); }

    void initParameter(uint32_t index, Parameter& p) override {
        p.hints = kParameterIsAutomatable;
        if (index == kBendRange) {
            p.name = "pitch_bend_range";
            p.shortName = "Bend range";
            p.symbol = "pitch_bend_range";
            p.unit = "semitones";
            p.description = "Pitch-bend range in semitones (the bridge's output.midi.bend_range)";
            p.ranges.def = (float)kBendDefault;
            p.ranges.min = 0.0f;
            p.ranges.max = (float)kBendMax;
            return;
        }
        const SmParamInfo& info = SM_PARAMS[index];
        p.name = info.name;
        p.shortName = info.massive;
        p.symbol = info.name;
        p.midiCC = (uint8_t)info.cc;
        char text[512];
        std::snprintf(text, sizeof text, "%s. Normalised: %g .. %g %s on a %s curve. Massive: %s. MIDI CC %d (14-bit: LSB on %d).",
                      info.description, info.min, info.max, info.unit, info.log ? "log" : "linear", info.massive,
                      info.cc, info.cc + 32);
        p.description = text;
        p.ranges.def = (float)info.def;
        p.ranges.min = 0.0f;
        p.ranges.max = 1.0f;
    }

    float getParameterValue(uint32_t index) const override { return fValue[index]; }
    void setParameterValue(uint32_t index, float value) override {
        if (index < kParamCount) fValue[index] = value;
    }

    void activate() override {
        if (getSampleRate() != fSr) setup(getSampleRate());
        resetVoice();
    }
    void sampleRateChanged(double) override {}  // activate() follows and sets up for the new rate

    void run(const float**, float** outputs, uint32_t frames, const MidiEvent* events, uint32_t count) override {
        uint32_t pos = 0;
        for (uint32_t e = 0; e < count; ++e) {  // sample-accurate: render up to each event, then apply it
            const uint32_t at = events[e].frame < frames ? events[e].frame : frames;
            if (at > pos) { render(outputs, pos, at); pos = at; }
            if (events[e].size <= MidiEvent::kDataSize) midi(events[e].data, events[e].size);
        }
        if (pos < frames) render(outputs, pos, frames);
    }

private:
    float fValue[kParamCount];
    double fSr = 0.0;
    // the voice
    std::vector<float> fA[3], fB[3];  // current tables and the ones faded to
    TableSet fBuilder;
    PhaseReader fReader;
    double fNoteS = 60.0, fSemis[3] = {0, 0, 0};  // smoothed note (with bend) and pitch offsets, semitones
    double fTableKey[kTableKey], fXfadeStep = 0.0, fXfade = 1.0;  // fXfade 1: no fade running
    bool fTablesValid = false;
    Envelope fEnv;
    double fAttack = 0.01, fDecay = 0.1, fMix = 0.0, fGain = 1.0, fGainTarget = 1.0;
    double fSmooth = 0.0, fSmoothBlock = 0.0, fGainSmooth = 0.0;
    int fHeld[kMaxHeld], fHeldCount = 0, fNote = -1;
    double fBend = 0.0;  // -1 .. 1
    uint8_t fMsb[128], fLsb[128];
    bool fLsbFirst[128];
    Convolver fReverb;
    // the limiter: exact gain at a fresh note-on (audio thread), updates after changes (worker thread)
    CanonicalPeak fPeakAudio, fPeakWorker;
    double fGainKey[kGainKey], fSyncKey[kGainKey], fSyncGain = 1.0;
    bool fSyncValid = false;
    std::mutex fJobMutex;  // the audio thread only try_locks it
    double fJob[kGainKey];
    uint32_t fJobSeq = 0;
    bool fJobPending = false;
    uint32_t fPostSeq = 0;
    std::atomic<uint32_t> fResultSeq{0};
    std::atomic<double> fResultGain{1.0};
    std::atomic<bool> fQuit{false};
    std::thread fWorker;

    void setup(double sr) {
        if (sr <= 0.0) sr = 48000.0;
        fSr = sr;
        fReverb.init(resampleIr(sr));
        fXfadeStep = 1.0 / std::max(1.0, kCrossfadeS * sr);
        fSmooth = 1.0 - std::exp(-1.0 / (kSmoothS * sr));
        fSmoothBlock = 1.0 - std::exp(-(double)kControl / (kSmoothS * sr));
        fGainSmooth = 1.0 - std::exp(-1.0 / (kGainSmoothS * sr));
        resetVoice();
    }

    void resetVoice() {
        fEnv.reset();
        fReverb.reset();
        fHeldCount = 0;
        fNote = -1;
        fBend = 0.0;
        fTablesValid = false;
        fXfade = 1.0;
        std::memset(fMsb, 0, sizeof fMsb);
        std::memset(fLsb, 0, sizeof fLsb);
        std::memset(fLsbFirst, 0, sizeof fLsbFirst);
        fReader.reset();
    }

    double notePitch() const { return fNote + fBend * fValue[kBendRange]; }
    double param(int i) const { return fValue[i]; }

    void values(double* v) const {
        for (int i = 0; i < SM_NUM_PARAMS; ++i) v[i] = fValue[i];
    }
    void tableKey(double* key) const {
        for (int i = 0; i < kTableKey - 1; ++i) key[i] = fValue[i];
        key[kTableKey - 1] = notePitch();
    }
    void gainKey(double* key) const {
        values(key);
        key[SM_NUM_PARAMS] = notePitch();
    }

    // ---- MIDI ----

    void midi(const uint8_t* d, uint32_t size) {
        const uint8_t status = d[0] & 0xF0;
        if (status == 0x90 && size >= 3 && d[2] > 0) noteOn(d[1]);
        else if ((status == 0x80 || status == 0x90) && size >= 3) noteOff(d[1]);
        else if (status == 0xE0 && size >= 3) fBend = std::max(-1.0, std::min(1.0, (((int)d[2] << 7 | d[1]) - 8192) / 8192.0));
        else if (status == 0xB0 && size >= 3) controlChange(d[1] & 0x7F, d[2] & 0x7F);
    }

    void controlChange(int cc, int value) {
        if (cc == 120) { resetVoice(); return; }  // all sound off
        if (cc == 123) { fHeldCount = 0; fEnv.noteOff(); return; }  // all notes off
        for (int i = 0; i < SM_NUM_PARAMS; ++i) {
            const int c = SM_PARAMS[i].cc;
            if (cc == c) {  // MSB: the 7-bit value, refined if its LSB arrives next (or came just before)
                fMsb[c] = (uint8_t)value;
                fValue[i] = fLsbFirst[c] ? (float)((value << 7 | fLsb[c]) / 16383.0) : (float)(value / 127.0);
                fLsbFirst[c] = false;
                return;
            }
            if (c < 32 && cc == c + 32) {  // LSB: completes the 14-bit value with the last MSB
                fLsb[c] = (uint8_t)value;
                fLsbFirst[c] = true;  // in case the MSB of the same pair comes after it
                fValue[i] = (float)((fMsb[c] << 7 | value) / 16383.0);
                return;
            }
        }
    }

    void noteOn(int note) {
        removeHeld(note);
        if (fHeldCount < kMaxHeld) fHeld[fHeldCount++] = note;
        if (fEnv.held()) { fNote = note; return; }  // legato: the pitch moves, the envelope goes on
        const bool fresh = !fEnv.active();
        fNote = note;
        if (fresh) start();
        fEnv.noteOn();
    }

    void noteOff(int note) {
        removeHeld(note);
        if (note != fNote || !fEnv.held()) return;
        if (fHeldCount > 0) fNote = fHeld[fHeldCount - 1];  // back to the newest note still held
        else fEnv.noteOff();
    }

    void removeHeld(int note) {
        int w = 0;
        for (int r = 0; r < fHeldCount; ++r)
            if (fHeld[r] != note) fHeld[w++] = fHeld[r];
        fHeldCount = w;
    }

    // a note from silence: everything at its target at once, tables built and the limiter's exact gain
    void start() {
        fReader.reset();
        double f0[3], v[SM_NUM_PARAMS];
        cdouble camp[3][kK];
        values(v);
        harmonics(v, notePitch(), fSr, f0, camp);
        fBuilder.build(camp);
        for (int j = 0; j < 3; ++j) std::copy(fBuilder.t[j].begin(), fBuilder.t[j].end(), fA[j].begin());
        tableKey(fTableKey);
        fTablesValid = true;
        fXfade = 1.0;
        fNoteS = notePitch();
        for (int j = 0; j < 3; ++j) fSemis[j] = physical(3 * j, v[3 * j]);
        updateIncrements();
        fAttack = physical(SM_P_env_attack, v[SM_P_env_attack]);
        fDecay = physical(SM_P_env_decay, v[SM_P_env_decay]);
        fEnv.setTimes(fAttack, fDecay, fSr);
        fMix = physical(SM_P_reverb_mix, v[SM_P_reverb_mix]);
        double key[kGainKey];
        gainKey(key);
        if (!(fSyncValid && std::memcmp(key, fSyncKey, sizeof key) == 0)) {
            fSyncGain = fPeakAudio.gain(v, notePitch());
            std::memcpy(fSyncKey, key, sizeof key);
            fSyncValid = true;
        }
        fGain = fGainTarget = fSyncGain;
        std::memcpy(fGainKey, key, sizeof key);
        ++fPostSeq;  // a worker result still on its way is for an older patch
    }

    void updateIncrements() {
        double inc[3];
        for (int j = 0; j < 3; ++j) inc[j] = oscHz(fNoteS, fSemis[j]) / fSr * kN;
        fReader.setIncrements(inc);  // re-anchors only when they changed
    }

    static void glide(double& x, double target, double k) {
        x += (target - x) * k;
        if (std::fabs(target - x) < 1e-6) x = target;  // arrive: the increments stop changing
    }

    // ---- control rate: smoothing, table rebuilds, the limiter's gain ----

    void control() {
        if (!fEnv.active()) return;
        double v[SM_NUM_PARAMS];
        values(v);
        glide(fNoteS, notePitch(), fSmoothBlock);
        for (int j = 0; j < 3; ++j) glide(fSemis[j], physical(3 * j, v[3 * j]), fSmoothBlock);
        updateIncrements();
        glide(fAttack, physical(SM_P_env_attack, v[SM_P_env_attack]), fSmoothBlock);
        glide(fDecay, physical(SM_P_env_decay, v[SM_P_env_decay]), fSmoothBlock);
        fEnv.setTimes(fAttack, fDecay, fSr);

        double key[kGainKey];
        if (fXfade >= 1.0) {
            tableKey(key);
            if (!fTablesValid || std::memcmp(key, fTableKey, sizeof(double) * kTableKey) != 0) {
                cdouble amp[3][kK];
                double f0[3];
                harmonics(v, notePitch(), fSr, f0, amp);
                fBuilder.build(amp);
                for (int j = 0; j < 3; ++j) std::copy(fBuilder.t[j].begin(), fBuilder.t[j].end(), fB[j].begin());
                std::memcpy(fTableKey, key, sizeof(double) * kTableKey);
                fXfade = fTablesValid ? 0.0 : 1.0;
                if (!fTablesValid) for (int j = 0; j < 3; ++j) fA[j].swap(fB[j]);
                fTablesValid = true;
            }
        }
        gainKey(key);
        if (fResultSeq.load() == fPostSeq && std::memcmp(key, fGainKey, sizeof key) == 0) fGainTarget = fResultGain.load();
        if (std::memcmp(key, fGainKey, sizeof key) != 0 && fJobMutex.try_lock()) {  // never waits
            std::memcpy(fJob, key, sizeof key);
            fJobSeq = ++fPostSeq;
            fJobPending = true;
            fJobMutex.unlock();
            std::memcpy(fGainKey, key, sizeof key);
        }
    }

    void workerLoop() {
        double job[kGainKey];
        while (!fQuit.load()) {
            uint32_t seq = 0;
            {
                std::lock_guard<std::mutex> lock(fJobMutex);
                if (fJobPending) { std::memcpy(job, fJob, sizeof job); seq = fJobSeq; fJobPending = false; }
            }
            if (seq == 0) { std::this_thread::sleep_for(std::chrono::milliseconds(2)); continue; }
            const double g = fPeakWorker.gain(job, job[SM_NUM_PARAMS]);
            fResultGain.store(g);
            fResultSeq.store(seq);
            std::this_thread::sleep_for(std::chrono::milliseconds(20));  // at most ~ every 20 ms while automating
        }
    }

    // ---- audio ----

    void render(float** outputs, uint32_t start, uint32_t stop) {
        const double mixTarget = physical(SM_P_reverb_mix, fValue[SM_P_reverb_mix]);
        for (uint32_t i = start; i < stop;) {
            control();
            const uint32_t end = std::min(stop, i + kControl);
            const bool on = fEnv.active() && fTablesValid;
            const float* a[3] = {fA[0].data(), fA[1].data(), fA[2].data()};
            const float* b[3] = {fB[0].data(), fB[1].data(), fB[2].data()};
            for (; i < end; ++i) {
                double dry = 0.0;
                if (on) {
                    float x = 0.0f;
                    int idx[3];
                    fReader.next(idx);
                    if (fXfade >= 1.0) {
                        x = a[0][idx[0]] + a[1][idx[1]] + a[2][idx[2]];  // the renderer's float sum
                    } else {
                        const float w = (float)fXfade;
                        for (int j = 0; j < 3; ++j) x += a[j][idx[j]] + (b[j][idx[j]] - a[j][idx[j]]) * w;
                        fXfade += fXfadeStep;
                        if (fXfade >= 1.0) { for (int j = 0; j < 3; ++j) fA[j].swap(fB[j]); fXfade = 1.0; a[0] = fA[0].data(); a[1] = fA[1].data(); a[2] = fA[2].data(); }
                    }
                    dry = x * (float)fEnv.next();
                }
                fMix += (mixTarget - fMix) * fSmooth;
                fGain += (fGainTarget - fGain) * fGainSmooth;
                const double wet = fReverb.process((float)dry);
                const float y = (float)(((1.0 - fMix) * dry + fMix * wet) * fGain);
                outputs[0][i] = y;
                outputs[1][i] = y;
            }
        }
    }

    DISTRHO_DECLARE_NON_COPYABLE_WITH_LEAK_DETECTOR(SynthmatchSynth)
};

Plugin* createPlugin() { return new SynthmatchSynth(); }

END_NAMESPACE_DISTRHO
