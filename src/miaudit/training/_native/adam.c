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

/* The loop, specialised by the compiler for each (bf16_grad, write_copy) pair it is inlined with:
 * constant flags, so each version vectorises without branches. */
static inline __attribute__((always_inline)) void adam_loop(
    int64_t n, float *restrict p, float *restrict m, float *restrict v, const float *restrict g,
    const uint16_t *restrict gc, uint16_t *restrict pc, float step_size, float beta1, float beta2,
    float inv_bc2_sqrt, float eps, float weight_decay, const int bf16_grad, const int write_copy) {
    const float c1 = 1.0f - beta1, c2 = 1.0f - beta2;
    for (int64_t i = 0; i < n; i++) {
        float gi = (bf16_grad ? bf16_to_f32(gc[i]) : g[i]) + weight_decay * p[i];
        float mi = m[i] + c1 * (gi - m[i]);
        float vi = v[i] * beta2 + gi * gi * c2;
        float pi = p[i] - step_size * mi / (sqrtf(vi) * inv_bc2_sqrt + eps);
        m[i] = mi;
        v[i] = vi;
        p[i] = pi;
        if (write_copy) pc[i] = f32_to_bf16(pi);
    }
}

/* n values of p, m, v. The gradient comes from gc (bfloat16) if it is not NULL, else from g
 * (float32). If pc is not NULL the new parameters are also written there in bfloat16. */
void miaudit_adam_step(int64_t n, float *restrict p, float *restrict m, float *restrict v,
                       const float *restrict g, const uint16_t *restrict gc, uint16_t *restrict pc,
                       float lr, float beta1, float beta2, float bc1, float bc2_sqrt, float eps,
                       float weight_decay) {
    const float step_size = lr / bc1, inv = 1.0f / bc2_sqrt;
    if (gc != NULL && pc != NULL)
        adam_loop(n, p, m, v, g, gc, pc, step_size, beta1, beta2, inv, eps, weight_decay, 1, 1);
    else if (gc != NULL)
        adam_loop(n, p, m, v, g, gc, pc, step_size, beta1, beta2, inv, eps, weight_decay, 1, 0);
    else if (pc != NULL)
        adam_loop(n, p, m, v, g, gc, pc, step_size, beta1, beta2, inv, eps, weight_decay, 0, 1);
    else
        adam_loop(n, p, m, v, g, gc, pc, step_size, beta1, beta2, inv, eps, weight_decay, 0, 0);
}

/* bf16 <- f32, round to nearest even (for copies the step does not make itself). */
void miaudit_to_bf16(int64_t n, const float *restrict src, uint16_t *restrict dst) {
    for (int64_t i = 0; i < n; i++) dst[i] = f32_to_bf16(src[i]);
}
