// synthmatch-synth's DSP, free of DPF: the reference synth's signal path (bridge/match/synth.py,
// training/synth.py) at any sample rate, in parts the plugin drives in real time.
//
//   harmonics()       each oscillator's f0 and its complex harmonic amplitudes after the wavetable morph,
//                     the ladder lowpass, the resonant highpass, the gain and the band limit (< Nyquist)
//   TableSet          one band-limited single cycle (2^15 samples) per oscillator by inverse FFT
//   Envelope          linear attack, exponential decay to the fixed sustain, exponential release
//   Convolver         the fixed reverb impulse response, uniformly partitioned overlap-save: zero latency
//                     because the response starts with its pre-delay (at least one partition of zeros)
//   CanonicalPeak     the limiter: the peak of the training renderer's note (16 kHz, note held
//                     note_off_s, duration_s long) for a patch and note, so the plugin divides by the
//                     same number the renderer divides by
//   resampleIr()      the 16 kHz impulse response at the host's rate (windowed sinc, gain kept)
//
// Parameters are the contract's normalised values v in [0, 1]; physical() applies its curves. Every
// buffer is allocated in an init(); nothing here allocates, locks or does I/O afterwards.
#pragma once

#include "fft.hpp"
#include "synthmatch_contract.h"

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstring>
#include <vector>

namespace smsynth {

using cdouble = std::complex<double>;

static_assert(SM_NUM_PARAMS == 16, "the contract's parameter count changed: update plugin/engine.hpp");
static_assert((SM_TABLE_SIZE & (SM_TABLE_SIZE - 1)) == 0, "TABLE_SIZE must be a power of two");
static_assert(2 * SM_N_HARMONICS < SM_TABLE_SIZE, "the table must hold every harmonic");
// the engine reads these by name; a renamed or reordered contract fails to compile here
static_assert(SM_P_osc1_pitch == 0 && SM_P_osc2_pitch == 3 && SM_P_osc3_pitch == 6, "oscillator layout");
static_assert(SM_P_osc1_position == 1 && SM_P_osc1_gain == 2, "oscillator layout: pitch, position, gain");
static_assert(SM_P_filter1_cutoff == 9 && SM_P_filter1_resonance == 10, "filter 1 layout");
static_assert(SM_P_filter2_cutoff == 11 && SM_P_filter2_resonance == 12, "filter 2 layout");
static_assert(SM_P_env_attack == 13 && SM_P_env_decay == 14 && SM_P_reverb_mix == 15, "envelope and reverb");

static const int kN = SM_TABLE_SIZE;
static const int kK = SM_N_HARMONICS;

inline double clamp01(double v) { return v != v ? 0.5 : (v < 0.0 ? 0.0 : (v > 1.0 ? 1.0 : v)); }

// normalised -> physical through the contract's curve (NaN -> 0.5, clamped to [0, 1] first)
inline double physical(int i, double v) {
    const SmParamInfo& p = SM_PARAMS[i];
    v = clamp01(v);
    return p.log ? p.min * std::pow(p.max / p.min, v) : p.min + v * (p.max - p.min);
}

inline double noteHz(double note) { return 440.0 * std::pow(2.0, (note - 69.0) / 12.0); }

// an oscillator's fundamental: the note's frequency times 2^(offset / 12), the renderer's order of operations
inline double oscHz(double note, double semitones) { return noteHz(note) * std::pow(2.0, semitones / 12.0); }

// f0[j] (Hz) and amp[j][k - 1]: the complex amplitude of harmonic k of oscillator j, as the renderer's
// _harmonics: wavetable morph * ladder lowpass * resonant highpass * gain * headroom, 0 at or above sr / 2
inline void harmonics(const double* v, double note, double sr, double f0[3], cdouble amp[3][kK]) {
    const double fc1 = physical(SM_P_filter1_cutoff, v[SM_P_filter1_cutoff]);
    const double kfb = physical(SM_P_filter1_resonance, v[SM_P_filter1_resonance]) * SM_LADDER_MAX_FEEDBACK;
    const double fc2 = physical(SM_P_filter2_cutoff, v[SM_P_filter2_cutoff]);
    const double q = SM_HIGHPASS_Q_LO *
                     std::pow(SM_HIGHPASS_Q_HI / SM_HIGHPASS_Q_LO, physical(SM_P_filter2_resonance, v[SM_P_filter2_resonance]));
    const double fn = noteHz(note);
    for (int j = 0; j < 3; ++j) {
        const int base = 3 * j;  // pitch, position, gain
        f0[j] = fn * std::pow(2.0, physical(base, v[base]) / 12.0);  // = oscHz(note, pitch)
        const double gain = physical(base + 2, v[base + 2]) * SM_HEADROOM;
        const int S = SM_BANK_SIZE[j];
        const double pos = physical(base + 1, v[base + 1]) * (S - 1);
        const int i0 = std::min((int)std::floor(pos), S - 2);
        const double frac = pos - i0;
        const int r0 = (SM_BANK_OFFSET[j] + i0) * kK, r1 = r0 + kK;
        for (int k = 1; k <= kK; ++k) {
            const double f = (double)(float)f0[j] * k;  // the renderer's float32 frequencies
            if (!(f < sr / 2)) { amp[j][k - 1] = 0.0; continue; }
            const cdouble c = cdouble(SM_BANK_RE[r0 + k - 1], SM_BANK_IM[r0 + k - 1]) * (1.0 - frac) +
                              cdouble(SM_BANK_RE[r1 + k - 1], SM_BANK_IM[r1 + k - 1]) * frac;
            const cdouble s1(0.0, f / fc1), s2(0.0, f / fc2);
            const cdouble p1 = (1.0 + s1) * (1.0 + s1);
            const cdouble lp = (1.0 + kfb) / (p1 * p1 + kfb);
            const cdouble hp = s2 * s2 / (s2 * s2 + s2 / q + 1.0);
            amp[j][k - 1] = c * lp * hp * gain;
        }
    }
}

// the oscillators' table positions with the renderer's exact arithmetic (training/synth.py _read): in
// blocks of PHASE_BLOCK samples from the anchor, each block's start phase reduced mod N in double, the
// ramp within a block in float (float(inc) * i), the index the float phase + 0.5 truncated. Any other
// rounding picks a neighbouring sample now and then, which no ear hears but shows in the high, quiet
// bins a log-spectral distance weighs. A change of increment re-anchors at the current phase.
class PhaseReader {
public:
    void reset() { for (int j = 0; j < 3; ++j) { anchor_[j] = 0.0; inc_[j] = 0.0; } pos_ = 0; }
    void setIncrements(const double* inc) {  // table samples per output sample
        bool same = true;
        for (int j = 0; j < 3; ++j) same = same && inc[j] == inc_[j];
        if (same) return;
        for (int j = 0; j < 3; ++j) {
            anchor_[j] = std::fmod(anchor_[j] + inc_[j] * (double)pos_, (double)kN);
            inc_[j] = inc[j];
            incf_[j] = (float)inc[j];
        }
        pos_ = 0;
    }
    // this sample's three table indices, then one sample on
    inline void next(int idx[3]) {
        const int i = (int)(pos_ % SM_PHASE_BLOCK);
        if (i == 0)
            for (int j = 0; j < 3; ++j) base_[j] = (float)std::fmod(anchor_[j] + inc_[j] * (double)pos_, (double)kN) + 0.5f;
        const float fi = (float)i;
        for (int j = 0; j < 3; ++j) idx[j] = (int)(base_[j] + incf_[j] * fi) & (kN - 1);
        ++pos_;
    }

private:
    double anchor_[3] = {0, 0, 0}, inc_[3] = {0, 0, 0};
    float incf_[3] = {0, 0, 0}, base_[3] = {0, 0, 0};
    int64_t pos_ = 0;
};

// three single-cycle tables, x_j[n] = Re(sum_k amp_jk e^{2 pi i k n / N}), the renderer's irfft
class TableSet {
public:
    std::vector<float> t[3];
    void init() {
        for (auto& x : t) x.assign(kN, 0.0f);
        fft_.init(kN);
        work_.assign(kN, cfloat());
    }
    void build(const cdouble amp[3][kK]) {
        // two real tables per inverse FFT: Hermitian spectra A (real part) + i B (imaginary part)
        for (int pair = 0; pair < 2; ++pair) {
            const int ja = 2 * pair, jb = 2 * pair + 1;
            std::fill(work_.begin(), work_.end(), cfloat());
            for (int k = 1; k <= kK; ++k) {
                const cdouble a = amp[ja][k - 1] * 0.5;
                const cdouble b = jb < 3 ? amp[jb][k - 1] * 0.5 : cdouble();
                // Z[k] = A[k] + i B[k], Z[N - k] = conj(A[k]) + i conj(B[k])
                const cdouble ib(-b.imag(), b.real()), ibc(b.imag(), b.real());
                work_[k] = cfloat((float)(a.real() + ib.real()), (float)(a.imag() + ib.imag()));
                work_[kN - k] = cfloat((float)(a.real() + ibc.real()), (float)(-a.imag() + ibc.imag()));
            }
            fft_.inverse(work_.data());
            for (int n = 0; n < kN; ++n) t[ja][n] = work_[n].real();
            if (jb < 3)
                for (int n = 0; n < kN; ++n) t[jb][n] = work_[n].imag();
        }
    }

private:
    Fft fft_;
    std::vector<cfloat> work_;
};

// the amplitude envelope of one note; times in seconds, advanced one sample per next()
class Envelope {
public:
    void reset() { stage_ = kIdle; level_ = 0.0; }
    bool active() const { return stage_ != kIdle; }
    bool held() const { return stage_ == kAttack || stage_ == kDecay; }
    // start (or restart) the attack from the current level (0 when idle, as the renderer's notes)
    void noteOn() { start_ = stage_ == kIdle ? 0.0 : level_; pos_ = 0.0; stage_ = kAttack; }
    void noteOff() {
        if (!held()) return;
        rel_ = peek();  // the held level at note-off: the renderer's at_off
        e_ = 1.0;
        stage_ = kRelease;
    }
    // attack, decay: seconds (smoothed by the caller); sr: Hz. Call when any of them changes.
    void setTimes(double attack, double decay, double sr) {
        attack_ = attack;
        decay_ = decay;
        dt_ = 1.0 / sr;
        decayStep_ = std::exp(-1.0 / (decay * sr));
        releaseStep_ = std::exp(-1.0 / (SM_RELEASE_S * sr));
    }
    double next() {  // this sample's level, then one sample on
        double out = 0.0;
        switch (stage_) {
        case kIdle: return 0.0;
        case kAttack:
            if (pos_ < attack_) {
                out = start_ + (1.0 - start_) * pos_ / attack_;
                pos_ += dt_;
                break;
            }
            e_ = std::exp(-(pos_ - attack_) / decay_);  // first decay sample: exactly the renderer's
            stage_ = kDecay;
            /* fall through */
        case kDecay:
            out = SM_SUSTAIN + (1.0 - SM_SUSTAIN) * e_;
            e_ *= decayStep_;
            break;
        case kRelease:
            out = rel_ * e_;
            e_ *= releaseStep_;
            if (out < 1e-7) { stage_ = kIdle; out = 0.0; }
            break;
        }
        level_ = out;
        return out;
    }

private:
    enum Stage { kIdle, kAttack, kDecay, kRelease };
    Stage stage_ = kIdle;
    double level_ = 0.0, start_ = 0.0, pos_ = 0.0, e_ = 0.0, rel_ = 0.0;
    double attack_ = 0.01, decay_ = 0.1, dt_ = 1.0 / 48000, decayStep_ = 0.0, releaseStep_ = 0.0;
    double peek() const {
        if (stage_ == kAttack && pos_ < attack_) return start_ + (1.0 - start_) * pos_ / attack_;
        if (stage_ == kAttack) return SM_SUSTAIN + (1.0 - SM_SUSTAIN) * std::exp(-(pos_ - attack_) / decay_);
        if (stage_ == kDecay) return SM_SUSTAIN + (1.0 - SM_SUSTAIN) * e_;
        return level_;
    }
};

// the 16 kHz impulse response at rate sr: h(m / sr) band-limited to the lower Nyquist, scaled by
// 16000 / sr so that the convolution's gain (sum over more, closer taps) stays the renderer's
inline std::vector<float> resampleIr(double sr) {
    const double r = sr / SM_SAMPLE_RATE;
    if (std::fabs(r - 1.0) < 1e-12) return std::vector<float>(SM_IR, SM_IR + SM_IR_LENGTH);
    const double c = std::min(1.0, r) * 0.97;  // cutoff, in input Nyquists
    const double W = 16.0 / c;                 // half-width, input samples
    const double beta = 8.0;                   // Kaiser window
    auto i0 = [](double x) {                   // modified Bessel function of the first kind, order 0
        double s = 1.0, t = 1.0;
        for (int k = 1; k < 30; ++k) { t *= (x / (2 * k)) * (x / (2 * k)); s += t; }
        return s;
    };
    const double i0b = i0(beta);
    // the windowed sinc tabulated at 1/kOver of an input sample, read with linear interpolation
    const int kOver = 512, half = (int)std::ceil(W * kOver);
    std::vector<double> kernel(half + 2);
    for (int i = 0; i < half + 2; ++i) {
        const double x = (double)i / kOver, u = x / W;
        const double sinc = x < 1e-12 ? 1.0 : std::sin(M_PI * c * x) / (M_PI * c * x);
        kernel[i] = u >= 1.0 ? 0.0 : c * sinc * i0(beta * std::sqrt(1.0 - u * u)) / i0b;
    }
    const int L = (int)std::ceil((SM_IR_LENGTH + W) * r);
    std::vector<float> out(L, 0.0f);
    for (int m = 0; m < L; ++m) {
        const double tin = m / r;  // position in input samples
        const int lo = std::max(SM_IR_PREDELAY, (int)std::ceil(tin - W));
        const int hi = std::min(SM_IR_LENGTH - 1, (int)std::floor(tin + W));
        double acc = 0.0;
        for (int n = lo; n <= hi; ++n) {
            const double pos = std::fabs(tin - n) * kOver;
            const int k = (int)pos;
            const double f = pos - k;
            acc += SM_IR[n] * (kernel[k] + (kernel[k + 1] - kernel[k]) * f);
        }
        out[m] = (float)(acc / r);
    }
    return out;
}

// y[n] = sum_m h[m] x[n - m], uniformly partitioned (partition P, FFT 2P, overlap-save), with no added
// latency: h's first P taps are zero (the pre-delay), so the partitions of h[P:] computed one block late
// arrive on time. process() is one sample in, one out; a block's work runs when its P-th sample arrives.
class Convolver {
public:
    void init(const std::vector<float>& h) {
        int first = 0;
        while (first < (int)h.size() && h[first] == 0.0f) ++first;
        P_ = 16;
        while (P_ * 2 <= first && P_ < 1024) P_ *= 2;  // the largest power of two within the leading zeros
        const int n = (int)h.size() - P_;
        parts_ = std::max(1, (n + P_ - 1) / P_);
        B_ = P_ + 1;  // bins kept of a real signal's 2P-point spectrum
        fft_.init(2 * P_);
        work_.assign(2 * P_, cfloat());
        Hre_.assign(parts_ * B_, 0.0f); Him_.assign(parts_ * B_, 0.0f);
        for (int p = 0; p < parts_; ++p) {
            std::fill(work_.begin(), work_.end(), cfloat());
            for (int i = 0; i < P_; ++i) {
                const int m = P_ + p * P_ + i;
                if (m < (int)h.size()) work_[i] = h[m];
            }
            fft_.forward(work_.data());
            for (int b = 0; b < B_; ++b) { Hre_[p * B_ + b] = work_[b].real(); Him_[p * B_ + b] = work_[b].imag(); }
        }
        Xre_.assign(parts_ * B_, 0.0f); Xim_.assign(parts_ * B_, 0.0f);
        accRe_.assign(B_, 0.0f); accIm_.assign(B_, 0.0f);
        in_.assign(2 * P_, 0.0f);
        out_.assign(P_, 0.0f);
        reset();
    }
    void reset() {
        std::fill(Xre_.begin(), Xre_.end(), 0.0f); std::fill(Xim_.begin(), Xim_.end(), 0.0f);
        std::fill(in_.begin(), in_.end(), 0.0f); std::fill(out_.begin(), out_.end(), 0.0f);
        pos_ = 0; slot_ = 0; silent_ = parts_ + 2;
    }
    int partition() const { return P_; }
    float process(float x) {
        in_[P_ + pos_] = x;
        const float y = out_[pos_];
        if (++pos_ == P_) { block(); pos_ = 0; }
        return y;
    }

private:
    Fft fft_;
    int P_ = 16, parts_ = 1, B_ = 17, pos_ = 0, slot_ = 0, silent_ = 0;
    std::vector<cfloat> work_;
    std::vector<float> Hre_, Him_, Xre_, Xim_, accRe_, accIm_, in_, out_;

    void block() {
        bool zero = true;
        for (int i = P_; i < 2 * P_ && zero; ++i) zero = in_[i] == 0.0f;
        silent_ = zero ? silent_ + 1 : 0;
        if (silent_ > parts_ + 1) {  // input and every stored spectrum silent: the output stays zero
            std::fill(out_.begin(), out_.end(), 0.0f);
            std::memmove(in_.data(), in_.data() + P_, P_ * sizeof(float));
            return;
        }
        for (int i = 0; i < 2 * P_; ++i) work_[i] = cfloat(in_[i], 0.0f);
        std::memmove(in_.data(), in_.data() + P_, P_ * sizeof(float));
        fft_.forward(work_.data());
        slot_ = slot_ == 0 ? parts_ - 1 : slot_ - 1;  // the newest spectrum; older ones follow it
        float* xr = &Xre_[slot_ * B_];
        float* xi = &Xim_[slot_ * B_];
        for (int b = 0; b < B_; ++b) { xr[b] = work_[b].real(); xi[b] = work_[b].imag(); }
        std::fill(accRe_.begin(), accRe_.end(), 0.0f); std::fill(accIm_.begin(), accIm_.end(), 0.0f);
        float* ar = accRe_.data();
        float* ai = accIm_.data();
        for (int p = 0; p < parts_; ++p) {  // spectrum of block (now - p) times partition p
            const int s = (slot_ + p) % parts_;
            const float* __restrict xr2 = &Xre_[s * B_];
            const float* __restrict xi2 = &Xim_[s * B_];
            const float* __restrict hr = &Hre_[p * B_];
            const float* __restrict hi = &Him_[p * B_];
            for (int b = 0; b < B_; ++b) {
                ar[b] += xr2[b] * hr[b] - xi2[b] * hi[b];
                ai[b] += xr2[b] * hi[b] + xi2[b] * hr[b];
            }
        }
        for (int b = 0; b < B_; ++b) work_[b] = cfloat(ar[b], ai[b]);
        for (int b = 1; b < P_; ++b) work_[2 * P_ - b] = std::conj(work_[b]);
        fft_.inverse(work_.data());
        const float scale = 1.0f / (2 * P_);
        for (int i = 0; i < P_; ++i) out_[i] = work_[P_ + i].real() * scale;  // the valid half
    }
};

// the training renderer's limiter gain, 1 / max(1, peak), for patch v and (fractional) note: its whole
// note rendered at SM_SAMPLE_RATE as it renders it (tables, nearest-sample phase accumulator, envelope,
// one FFT convolution with the impulse response, dry/wet mix) and its peak taken. Two real 2^17-point FFTs
// and a table build; the plugin calls it at a fresh note-on and (from its worker thread) after changes.
class CanonicalPeak {
public:
    void init() {
        T_ = (int)std::lround(SM_SAMPLE_RATE * SM_DURATION_S);
        nfft_ = 1;
        while (nfft_ < T_ + SM_IR_LENGTH - 1) nfft_ *= 2;
        const int M = nfft_ / 2;  // real transforms of nfft_ points through complex ones of M
        fft_.init(M);
        rtw_.resize(M + 1);
        for (int k = 0; k <= M; ++k) rtw_[k] = cfloat((float)std::cos(-M_PI * k / M), (float)std::sin(-M_PI * k / M));
        work_.assign(M + 1, cfloat());
        irF_.assign(M + 1, cfloat());
        std::vector<float> ir(nfft_, 0.0f);
        std::copy(SM_IR, SM_IR + SM_IR_LENGTH, ir.begin());
        rfft(ir.data(), irF_.data());
        x_.assign(nfft_, 0.0f);  // zero past T_: the padding of the linear convolution
        wet_.assign(nfft_, 0.0f);
        spec_.assign(nfft_ / 2 + 1, cfloat());
        tables_.init();
        held_ = 0;
        while (held_ < T_ && (float)((float)held_ / (float)SM_SAMPLE_RATE) < (float)SM_NOTE_OFF_S) ++held_;
    }
    double gain(const double* v, double note) {
        double f0[3];
        harmonics(v, note, SM_SAMPLE_RATE, f0, amp_);
        tables_.build(amp_);
        double inc[3];
        for (int j = 0; j < 3; ++j) inc[j] = f0[j] / SM_SAMPLE_RATE * kN;
        PhaseReader reader;
        reader.reset();
        reader.setIncrements(inc);
        const float *t0 = tables_.t[0].data(), *t1 = tables_.t[1].data(), *t2 = tables_.t[2].data();
        int idx[3];
        for (int n = 0; n < T_; ++n) {
            reader.next(idx);
            x_[n] = t0[idx[0]] + t1[idx[1]] + t2[idx[2]];
        }
        const double A = physical(SM_P_env_attack, v[SM_P_env_attack]);
        const double D = physical(SM_P_env_decay, v[SM_P_env_decay]);
        auto held = [&](double t) { return t < A ? t / A : SM_SUSTAIN + (1 - SM_SUSTAIN) * std::exp(-(t - A) / D); };
        const double atOff = held(SM_NOTE_OFF_S);
        for (int n = 0; n < T_; ++n) {
            const double t = n / SM_SAMPLE_RATE;
            x_[n] *= (float)(n < held_ ? held(t) : atOff * std::exp(-(t - SM_NOTE_OFF_S) / SM_RELEASE_S));
        }
        const double mix = physical(SM_P_reverb_mix, v[SM_P_reverb_mix]);
        double peak = 0.0;
        if (mix <= 0.0) {
            for (int n = 0; n < T_; ++n) peak = std::max(peak, (double)std::fabs(x_[n]));
        } else {
            rfft(x_.data(), spec_.data());
            for (int k = 0; k <= nfft_ / 2; ++k) spec_[k] *= irF_[k];
            irfft(spec_.data(), wet_.data());  // the first T_ samples: the linear convolution's
            for (int n = 0; n < T_; ++n) {
                const double y = (1.0 - mix) * x_[n] + mix * wet_[n];
                peak = std::max(peak, std::fabs(y));
            }
        }
        return 1.0 / std::max(1.0, peak);
    }

private:
    int T_ = 0, nfft_ = 0, held_ = 0;
    Fft fft_;
    std::vector<cfloat> irF_, work_, spec_, rtw_;
    std::vector<float> x_, wet_;

    // x (nfft_ real samples) -> X[0 .. nfft_ / 2]: one complex FFT of the even/odd pairs, then untangled
    void rfft(const float* x, cfloat* X) {
        const int M = nfft_ / 2;
        for (int n = 0; n < M; ++n) work_[n] = cfloat(x[2 * n], x[2 * n + 1]);
        fft_.forward(work_.data());
        for (int k = 0; k <= M; ++k) {
            const cfloat zk = work_[k % M], zc = std::conj(work_[(M - k) % M]);
            const cfloat e = (zk + zc) * 0.5f, o = (zk - zc) * cfloat(0.0f, -0.5f);
            X[k] = e + rtw_[k] * o;
        }
    }
    // X[0 .. nfft_ / 2] (a real signal's spectrum) -> x (nfft_ samples), normalised
    void irfft(const cfloat* X, float* x) {
        const int M = nfft_ / 2;
        for (int k = 0; k < M; ++k) {
            const cfloat xk = X[k], xc = std::conj(X[M - k]);
            const cfloat e = (xk + xc) * 0.5f, o = (xk - xc) * 0.5f * std::conj(rtw_[k]);
            work_[k] = e + cfloat(0.0f, 1.0f) * o;
        }
        fft_.inverse(work_.data());
        const float scale = 1.0f / M;
        for (int n = 0; n < M; ++n) { x[2 * n] = work_[n].real() * scale; x[2 * n + 1] = work_[n].imag() * scale; }
    }
    TableSet tables_;
    cdouble amp_[3][kK];
};

}  // namespace smsynth
