/* One Adam step over flat float32 buffers, in one pass over memory.
 *
 * Used by miaudit's batched training engine (see miaudit/training/native.py, which compiles this
 * file on first use). The arithmetic is adam_math.h's (that of torch._fused_adam_). What the step
 * adds over torch's: the gradient may be read from a bfloat16 buffer and the updated parameter
 * written to a bfloat16 copy in the same pass, so a bf16 training step touches each value once
 * instead of three times.
 *
 * Compile with -ffp-contract=off: every element then gets the same correctly rounded operations
 * whether it falls in the vectorised body or in a scalar tail, so a model's weights do not depend on
 * where its block sits in the buffer.
 */
#include "adam_math.h"

int miaudit_native_abi(void) { return 1; }

/* The loop, specialised by the compiler for each (bf16_grad, write_copy) pair it is inlined with:
 * constant flags, so each version vectorises without branches. */
static inline __attribute__((always_inline)) void adam_loop(int64_t n, float *restrict p, float *restrict m,
                                                            float *restrict v, const float *restrict g,
                                                            const uint16_t *restrict gc, uint16_t *restrict pc,
                                                            adam_t a, const int bf16_grad, const int write_copy) {
    for (int64_t i = 0; i < n; i++) {
        float pi = adam_element(p[i], bf16_grad ? bf16_to_f32(gc[i]) : g[i], m + i, v + i, a);
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
    const adam_t a = {lr / bc1, beta1, beta2, 1.0f / bc2_sqrt, eps, weight_decay};
    if (gc != NULL && pc != NULL)
        adam_loop(n, p, m, v, g, gc, pc, a, 1, 1);
    else if (gc != NULL)
        adam_loop(n, p, m, v, g, gc, pc, a, 1, 0);
    else if (pc != NULL)
        adam_loop(n, p, m, v, g, gc, pc, a, 0, 1);
    else
        adam_loop(n, p, m, v, g, gc, pc, a, 0, 0);
}

/* bf16 <- f32, round to nearest even (for copies the step does not make itself). */
void miaudit_to_bf16(int64_t n, const float *restrict src, uint16_t *restrict dst) {
    for (int64_t i = 0; i < n; i++) dst[i] = f32_to_bf16(src[i]);
}
