/* DP-SGD's Gaussian noise, shared by gauss.c (which exports it) and mlp1.c (whose DP-SGD steps draw it):
 * see gauss.c for the algorithm. Static functions only: each library compiles its own copy, with the
 * same flags (-ffp-contract=off), so every copy gives the same bits.
 */
#ifndef MIAUDIT_GAUSS_MATH_H
#define MIAUDIT_GAUSS_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

/* Block of the scratch arrays: Philox outputs are computed for BLK blocks, then transformed. */
#define BLK 64

static inline float f32_from_bits(uint32_t b) {
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static inline uint32_t bits_from_f32(float f) {
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

/* cond ? a : b for cond 0 or 1, as bit operations (vectorisers if-convert it on every instruction set) */
static inline float select_f32(uint32_t cond, float a, float b) {
    const uint32_t mask = 0u - cond;
    return f32_from_bits((bits_from_f32(a) & mask) | (bits_from_f32(b) & ~mask));
}

/* -2 ln(u) for u = k / 2^24, k in [1, 2^24] (Cephes logf). */
static inline float minus_two_log(uint32_t k) {
    float u = (float)(int32_t)k * 0x1p-24f; /* k <= 2^24: exact */
    uint32_t b = bits_from_f32(u);
    int32_t e = (int32_t)((b >> 23) & 0xffu) - 126;
    float m = f32_from_bits((b & 0x807fffffu) | 0x3f000000u); /* u = m 2^e, m in [0.5, 1) */
    const uint32_t small = m < 0x1.6a09e6p-1f; /* then u = (2m) 2^(e-1): 2m in [sqrt(1/2), 1) */
    const float m2 = m + m;
    float x = select_f32(small, m2, m) - 1.0f;
    e -= (int32_t)small;
    float z = x * x;
    float y = 7.0376836292e-2f;
    y = y * x - 1.1514610310e-1f;
    y = y * x + 1.1676998740e-1f;
    y = y * x - 1.2420140846e-1f;
    y = y * x + 1.4249322787e-1f;
    y = y * x - 1.6668057665e-1f;
    y = y * x + 2.0000714765e-1f;
    y = y * x - 2.4999993993e-1f;
    y = y * x + 3.3333331174e-1f;
    y = (y * x) * z;
    float fe = (float)e;
    y = y + (-2.12194440e-4f * fe);
    y = y - (0.5f * z);
    float r = x + y;
    r = r + (0.693359375f * fe);
    return -2.0f * r;
}

/* cos and sin of 2 pi k / 2^24, k in [0, 2^24). */
static inline void cos_sin(uint32_t k, float *c_out, float *s_out) {
    uint32_t t = k + (1u << 21);
    uint32_t q = t >> 22;                                   /* nearest multiple of pi / 2: 0..4 */
    float theta = (float)((int32_t)k - (int32_t)(q << 22)) * 0x1.921fb6p-22f; /* in [-pi/4, pi/4) */
    float z = theta * theta;
    float s = -1.9515295891e-4f;
    s = s * z + 8.3321608736e-3f;
    s = s * z - 1.6666654611e-1f;
    s = ((s * z) * theta) + theta;
    float c = 2.443315711809948e-5f;
    c = c * z - 1.388731625493765e-3f;
    c = c * z + 4.166664568298827e-2f;
    c = (((c * z) * z) - (0.5f * z)) + 1.0f;
    /* rotate by q quarter turns, (cos, sin) -> (-sin, cos) per turn: q = 0: (c, s), 1: (-s, c), 2: (-c, -s),
     * 3: (s, -c); sign flips as sign-bit flips (exact, and branch-free for the vectoriser) */
    const uint32_t odd = q & 1u;
    const float cm = select_f32(odd, s, c), sm = select_f32(odd, c, s);
    *c_out = f32_from_bits(bits_from_f32(cm) ^ (((q + 1u) & 2u) << 30));
    *s_out = f32_from_bits(bits_from_f32(sm) ^ ((q & 2u) << 30));
}

/* Philox4x32-10 in place on the counter c (four 32-bit words held in 64-bit lanes: (a & LO) * M is the
 * widening 32 x 32 multiply that vectorisers recognise). */
#define LO 0xffffffffu
static inline void philox10(uint64_t c[4], uint64_t k0, uint64_t k1) {
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (c[0] & LO) * (uint64_t)PHILOX_M0, p1 = (c[2] & LO) * (uint64_t)PHILOX_M1;
        uint64_t n0 = ((p1 >> 32) ^ c[1] ^ k0) & LO, n2 = ((p0 >> 32) ^ c[3] ^ k1) & LO;
        c[0] = n0;
        c[1] = p1 & LO;
        c[2] = n2;
        c[3] = p0 & LO;
        k0 = (k0 + PHILOX_W0) & LO;
        k1 = (k1 + PHILOX_W1) & LO;
    }
}

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

/* Philox4x32-10 of the counters (j0 + b, 0, s_lo, s_hi), b < nb, into x[.][b]. The vector bodies are
 * the same integer arithmetic as philox10 (mul_epu32 multiplies the low 32 bits of each 64-bit lane):
 * compilers do not find that multiply on their own, and their 64 x 64-bit multiplies are slow. */
static inline void philox_blocks(uint64_t j0, int nb, uint32_t s_lo, uint32_t s_hi, uint32_t key0, uint32_t key1,
                                 uint32_t x[4][BLK]) {
    int b = 0;
#if defined(__AVX512F__)
    for (; b + 8 <= nb; b += 8) {
        __m512i c0 = _mm512_add_epi64(_mm512_set1_epi64((int64_t)(j0 + (uint64_t)b)),
                                      _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0));
        c0 = _mm512_and_si512(c0, _mm512_set1_epi64(LO));
        __m512i c1 = _mm512_setzero_si512(), c2 = _mm512_set1_epi64(s_lo), c3 = _mm512_set1_epi64(s_hi);
        const __m512i m0 = _mm512_set1_epi64(PHILOX_M0), m1 = _mm512_set1_epi64(PHILOX_M1), lo = _mm512_set1_epi64(LO);
        uint64_t k0 = key0, k1 = key1;
        for (int r = 0; r < 10; r++) {
            __m512i p0 = _mm512_mul_epu32(c0, m0), p1 = _mm512_mul_epu32(c2, m1);
            __m512i n0 = _mm512_xor_si512(_mm512_xor_si512(_mm512_srli_epi64(p1, 32), c1), _mm512_set1_epi64(k0));
            __m512i n2 = _mm512_xor_si512(_mm512_xor_si512(_mm512_srli_epi64(p0, 32), c3), _mm512_set1_epi64(k1));
            c0 = n0;
            c1 = _mm512_and_si512(p1, lo);
            c2 = n2;
            c3 = _mm512_and_si512(p0, lo);
            k0 = (k0 + PHILOX_W0) & LO;
            k1 = (k1 + PHILOX_W1) & LO;
        }
        _mm256_storeu_si256((__m256i *)&x[0][b], _mm512_cvtepi64_epi32(c0));
        _mm256_storeu_si256((__m256i *)&x[1][b], _mm512_cvtepi64_epi32(c1));
        _mm256_storeu_si256((__m256i *)&x[2][b], _mm512_cvtepi64_epi32(c2));
        _mm256_storeu_si256((__m256i *)&x[3][b], _mm512_cvtepi64_epi32(c3));
    }
#elif defined(__AVX2__)
    const __m256i even = _mm256_set_epi32(7, 7, 7, 7, 6, 4, 2, 0);
    for (; b + 4 <= nb; b += 4) {
        __m256i c0 = _mm256_add_epi64(_mm256_set1_epi64x((int64_t)(j0 + (uint64_t)b)), _mm256_set_epi64x(3, 2, 1, 0));
        c0 = _mm256_and_si256(c0, _mm256_set1_epi64x(LO));
        __m256i c1 = _mm256_setzero_si256(), c2 = _mm256_set1_epi64x(s_lo), c3 = _mm256_set1_epi64x(s_hi);
        const __m256i m0 = _mm256_set1_epi64x(PHILOX_M0), m1 = _mm256_set1_epi64x(PHILOX_M1);
        const __m256i lo = _mm256_set1_epi64x(LO);
        uint64_t k0 = key0, k1 = key1;
        for (int r = 0; r < 10; r++) {
            __m256i p0 = _mm256_mul_epu32(c0, m0), p1 = _mm256_mul_epu32(c2, m1);
            __m256i n0 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p1, 32), c1), _mm256_set1_epi64x(k0));
            __m256i n2 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p0, 32), c3), _mm256_set1_epi64x(k1));
            c0 = n0;
            c1 = _mm256_and_si256(p1, lo);
            c2 = n2;
            c3 = _mm256_and_si256(p0, lo);
            k0 = (k0 + PHILOX_W0) & LO;
            k1 = (k1 + PHILOX_W1) & LO;
        }
        __m256i cs[4] = {c0, c1, c2, c3};
        for (int w = 0; w < 4; w++)
            _mm_storeu_si128((__m128i *)&x[w][b], _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(cs[w], even)));
    }
#endif
    for (; b < nb; b++) {
        uint64_t c[4] = {(j0 + (uint64_t)b) & LO, 0u, s_lo, s_hi};
        philox10(c, key0, key1);
        for (int w = 0; w < 4; w++) x[w][b] = (uint32_t)c[w];
    }
}

/* out[i] = scale * (value i of step `step`), i < n. key0, key1 < 2^32; step >= 0. */
static void gauss_fill(int64_t n, float *restrict out, int64_t key0, int64_t key1, int64_t step, float scale) {
    uint32_t x[4][BLK];
    float v[4][BLK];
    const uint32_t s_lo = (uint32_t)((uint64_t)step & 0xffffffffu), s_hi = (uint32_t)((uint64_t)step >> 32);
    const int64_t n_blocks = (n + 3) / 4;
    for (int64_t j0 = 0; j0 < n_blocks; j0 += BLK) {
        int nb = (n_blocks - j0 < BLK) ? (int)(n_blocks - j0) : BLK;
        philox_blocks((uint64_t)j0, nb, s_lo, s_hi, (uint32_t)key0, (uint32_t)key1, x);
        for (int b = 0; b < nb; b++) {
            for (int h = 0; h < 2; h++) {
                float r = sqrtf(minus_two_log((x[2 * h][b] >> 8) + 1u));
                float c, s;
                cos_sin(x[2 * h + 1][b] >> 8, &c, &s);
                v[2 * h][b] = (r * c) * scale;
                v[2 * h + 1][b] = (r * s) * scale;
            }
        }
        int64_t base = 4 * j0, left = n - base;
        if (left >= 4 * (int64_t)nb) {
            for (int b = 0; b < nb; b++) {
                out[base + 4 * b] = v[0][b];
                out[base + 4 * b + 1] = v[1][b];
                out[base + 4 * b + 2] = v[2][b];
                out[base + 4 * b + 3] = v[3][b];
            }
        } else {
            for (int64_t i = 0; i < left; i++) out[base + i] = v[i & 3][i >> 2];
        }
    }
}

#endif
