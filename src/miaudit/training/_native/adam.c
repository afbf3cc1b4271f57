/* One Adam step over flat float32 buffers, in one pass over memory.
 *
 * Used by miaudit's batched training engine (see miaudit/training/native.py, which compiles this
 * file on first use). The arithmetic follows torch._fused_adam_ (amsgrad off, maximize off):
 *
 *     g  = grad + weight_decay * p
 *     m  = m + (1 - beta1) * (g - m)
 *     v  = v * beta2 + g * g * (1 - beta2)
 *     p  = p - (lr / bc1) * m / (sqrt(v) * (1 / sqrt(bc2)) + eps)
 *
 * with bc1 = 1 - beta1^t and bc2 = 1 - beta2^t computed by the caller. What the fused step adds
 * over torch's: the gradient may be read from a bfloat16 buffer and the updated parameter written
 * to a bfloat16 copy in the same pass (round to nearest even, as torch's conversion), so a bf16
 * training step touches each value once instead of three times.
 *
 * Compile with -ffp-contract=off: every element then gets the same correctly rounded operations
 * whether it falls in the vectorised body or in a scalar tail, so a model's weights do not depend on
 * where its block sits in the buffer.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
    /* a NaN stays a (quiet) NaN instead of rounding up into infinity */
    return (uint16_t)(((u & 0x7FFFFFFFu) > 0x7F800000u) ? 0x7FC0u : rounded);
}

int miaudit_native_abi(void) { return 1; }

/* n values of p, m, v. The gradient comes from gc (bfloat16) if it is not NULL, else from g
 * (float32). If pc is not NULL the new parameters are also written there in bfloat16. The four
 * loops are one loop specialised by hand, so that each vectorises without branches. */
void miaudit_adam_step(int64_t n, float *restrict p, float *restrict m, float *restrict v,
                       const float *restrict g, const uint16_t *restrict gc, uint16_t *restrict pc,
                       float lr, float beta1, float beta2, float bc1, float bc2_sqrt, float eps,
                       float weight_decay) {
    const float c1 = 1.0f - beta1, c2 = 1.0f - beta2, step_size = lr / bc1, inv = 1.0f / bc2_sqrt;
    if (gc != NULL && pc != NULL) {
        for (int64_t i = 0; i < n; i++) {
            float gi = bf16_to_f32(gc[i]) + weight_decay * p[i];
            float mi = m[i] + c1 * (gi - m[i]);
            float vi = v[i] * beta2 + gi * gi * c2;
            float pi = p[i] - step_size * mi / (sqrtf(vi) * inv + eps);
            m[i] = mi;
            v[i] = vi;
            p[i] = pi;
            pc[i] = f32_to_bf16(pi);
        }
    } else if (pc != NULL) {
        for (int64_t i = 0; i < n; i++) {
            float gi = g[i] + weight_decay * p[i];
            float mi = m[i] + c1 * (gi - m[i]);
            float vi = v[i] * beta2 + gi * gi * c2;
            float pi = p[i] - step_size * mi / (sqrtf(vi) * inv + eps);
            m[i] = mi;
            v[i] = vi;
            p[i] = pi;
            pc[i] = f32_to_bf16(pi);
        }
    } else if (gc != NULL) {
        for (int64_t i = 0; i < n; i++) {
            float gi = bf16_to_f32(gc[i]) + weight_decay * p[i];
            float mi = m[i] + c1 * (gi - m[i]);
            float vi = v[i] * beta2 + gi * gi * c2;
            m[i] = mi;
            v[i] = vi;
            p[i] = p[i] - step_size * mi / (sqrtf(vi) * inv + eps);
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            float gi = g[i] + weight_decay * p[i];
            float mi = m[i] + c1 * (gi - m[i]);
            float vi = v[i] * beta2 + gi * gi * c2;
            m[i] = mi;
            v[i] = vi;
            p[i] = p[i] - step_size * mi / (sqrtf(vi) * inv + eps);
        }
    }
}

/* bf16 <- f32, round to nearest even (for copies the step does not make itself). */
void miaudit_to_bf16(int64_t n, const float *restrict src, uint16_t *restrict dst) {
    for (int64_t i = 0; i < n; i++) dst[i] = f32_to_bf16(src[i]);
}
