/* Shared by adam.c and mlp1.c: bf16 conversions and one element of an Adam step.
 *
 * Adam follows torch._fused_adam_ (amsgrad off, maximize off, L2 weight decay added to the gradient):
 *     g = grad + weight_decay * p
 *     m = m + (1 - beta1) * (g - m)
 *     v = v * beta2 + g * g * (1 - beta2)
 *     p = p - (lr / bc1) * m / (sqrt(v) * (1 / sqrt(bc2)) + eps)
 * with bc1 = 1 - beta1^t and bc2 = 1 - beta2^t for step t (from 1).
 */
#ifndef MIAUDIT_ADAM_MATH_H
#define MIAUDIT_ADAM_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Round to nearest even, as torch's conversion; a NaN stays a (quiet) NaN instead of rounding up
 * into infinity. */
static inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
    return (uint16_t)(((u & 0x7FFFFFFFu) > 0x7F800000u) ? 0x7FC0u : rounded);
}

/* The scalars of one step: step_size = lr / bc1, inv_bc2_sqrt = 1 / sqrt(bc2). */
typedef struct {
    float step_size, beta1, beta2, inv_bc2_sqrt, eps, weight_decay;
} adam_t;

/* One element: updates *m and *v, returns the new parameter. */
static inline float adam_element(float p, float grad, float *m, float *v, adam_t a) {
    float g = grad + a.weight_decay * p;
    float mi = *m + (1.0f - a.beta1) * (g - *m);
    float vi = *v * a.beta2 + g * g * (1.0f - a.beta2);
    *m = mi;
    *v = vi;
    return p - a.step_size * mi / (sqrtf(vi) * a.inv_bc2_sqrt + a.eps);
}

#endif
