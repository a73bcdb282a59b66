// A small in-place radix-2 complex FFT (iterative, precomputed twiddles and bit reversal): DPF has none,
// and the plugin needs three sizes: 2^15 (single-cycle tables), 2P (the reverb's partitions) and 2^17
// (the limiter's canonical render). All memory is allocated in init(), never while transforming.
#pragma once

#include <cmath>
#include <complex>
#include <cstdint>
#include <vector>

namespace smsynth {

using cfloat = std::complex<float>;

class Fft {
public:
    void init(uint32_t n) {  // n a power of two
        n_ = n;
        uint32_t bits = 0;
        while ((1u << bits) < n) ++bits;
        rev_.resize(n);
        for (uint32_t i = 0; i < n; ++i) {
            uint32_t r = 0;
            for (uint32_t b = 0; b < bits; ++b) r |= ((i >> b) & 1u) << (bits - 1 - b);
            rev_[i] = r;
        }
        tw_.resize(n / 2);  // e^{-2 pi i k / n}, computed in double; twi_ its conjugates
        twi_.resize(n / 2);
        for (uint32_t k = 0; k < n / 2; ++k) {
            const double a = -2.0 * M_PI * k / n;
            tw_[k] = cfloat((float)std::cos(a), (float)std::sin(a));
            twi_[k] = std::conj(tw_[k]);
        }
    }
    uint32_t size() const { return n_; }

    // forward: X[k] = sum x[n] e^{-2 pi i k n / N}; inverse: the conjugate kernel, unnormalised
    void forward(cfloat* x) const { run(x, false); }
    void inverse(cfloat* x) const { run(x, true); }

private:
    uint32_t n_ = 0;
    std::vector<uint32_t> rev_;
    std::vector<cfloat> tw_, twi_;

    void run(cfloat* x, bool inv) const {
        const uint32_t n = n_;
        for (uint32_t i = 0; i < n; ++i)
            if (i < rev_[i]) std::swap(x[i], x[rev_[i]]);
        const cfloat* tws = inv ? twi_.data() : tw_.data();
        for (uint32_t len = 2; len <= n; len <<= 1) {
            const uint32_t half = len >> 1, step = n / len;
            for (uint32_t i = 0; i < n; i += len) {
                for (uint32_t j = 0; j < half; ++j) {
                    const cfloat w = tws[j * step];
                    cfloat& a = x[i + j];
                    cfloat& b = x[i + j + half];
                    const float br = b.real() * w.real() - b.imag() * w.imag();
                    const float bi = b.real() * w.imag() + b.imag() * w.real();
                    const cfloat t(br, bi);
                    b = a - t;
                    a = a + t;
                }
            }
        }
    }
};

}  // namespace smsynth
