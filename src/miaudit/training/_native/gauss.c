/* Gaussian noise for DP-SGD: Philox4x32-10 counters, Box-Muller, float32 arithmetic only.
 *
 * Used by miaudit's DP-SGD (see miaudit/training/noise.py, which states the algorithm and holds the
 * same computation in numpy for machines without a C compiler, and miaudit/training/native.py, which
 * compiles this file on first use).
 *
 * Value i of step `step` of the stream keyed (key0, key1) is a pure function of (key, step, i): block
 * j = i / 4 is Philox4x32-10 of the counter (j, 0, step mod 2^32, step / 2^32) under the key; its
 * words (x0, x1) and (x2, x3) give two pairs of normals by Box-Muller, with
 *   u = ((x0 >> 8) + 1) / 2^24 in (0, 1],   R = sqrt(-2 ln u),
 *   angle = 2 pi (x1 >> 8) / 2^24,          values R cos(angle), R sin(angle),
 * each multiplied by `scale`. ln, sin and cos are Cephes's float polynomials (logf, sinf, cosf on
 * [-pi/4, pi/4], the angle reduced exactly by its quadrant), written out so that every operation is a
 * correctly rounded float32 addition, multiplication or square root. Compiled with -ffp-contract=off
 * (no fused multiply-adds), each value is then the same bit for bit on every CPU, in the vectorised
 * body or the scalar tail, and equal to noise.py's numpy version.
 */
#include <stdint.h>

#include "gauss_math.h"

int miaudit_gauss_abi(void) { return 1; }

/* The four words of one block, for tests against Random123's known answers. */
void miaudit_philox4x32_10(int64_t c0, int64_t c1, int64_t c2, int64_t c3, int64_t key0, int64_t key1,
                           int64_t *out) {
    uint64_t c[4] = {(uint64_t)c0 & LO, (uint64_t)c1 & LO, (uint64_t)c2 & LO, (uint64_t)c3 & LO};
    philox10(c, (uint64_t)key0 & LO, (uint64_t)key1 & LO);
    for (int w = 0; w < 4; w++) out[w] = (int64_t)c[w];
}

/* out[i] = scale * (value i of step `step`), i < n. key0, key1 < 2^32; step >= 0. */
void miaudit_gauss_fill(int64_t n, float *restrict out, int64_t key0, int64_t key1, int64_t step, float scale) {
    gauss_fill(n, out, key0, key1, step, scale);
}
