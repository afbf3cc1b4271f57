/* Whole training steps of one MLP with one hidden layer (bf16 first layer on Intel AMX or on AVX512-BF16,
 * float32 output layer, Adam), for miaudit's batched engine (see miaudit/training/native.py).
 *
 * Why: a model of the seed's recipe (784-128-10) has ~1.2 MB of float32 weights and Adam state.
 * Trained alone, in one call per block of steps, it stays in the core's L2 cache, and each step is
 * a few microseconds of tile products plus one pass of Adam over cached memory. Trained as one of
 * K stacked models through PyTorch operations, every step streams all K models' state through
 * the L3 cache and pays the per-operation overhead of the framework.
 *
 * Two builds of this one file: where the compiler targets AMX-BF16 (Intel Sapphire Rapids and later) the
 * 32 x 32 block products run on AMX tiles; where it targets AVX512-BF16 without AMX (AMD Zen 4 and later,
 * Intel Cooper Lake) they run as vdpbf16ps dot products of bf16 pairs (block_32x32 below). Everything
 * else is the same code. miaudit_mlp1_kind() says which build it is.
 *
 * Arithmetic (the engine's bf16 mode): the first layer's products take bf16 inputs, weights and
 * output gradients and accumulate in float32; its weight gradient stays float32; the output layer,
 * softmax and loss are float32; Adam (as torch.optim.Adam, L2 weight decay added to the gradient)
 * updates float32 master weights and writes the bf16 copy the next forward pass reads.
 *
 * Layouts (row-major). D: input width padded to a multiple of 32, the bias input (a column of ones
 * in the pool) included; H (hidden width) and B (batch) multiples of 32; C classes.
 *   pool (n, D) bf16       records; idx (L, B) rows of each step's batch; rw (L, B) row weights
 *                          (1 / rows in the batch, 0 on padding rows); labels (L, B)
 *   P1, m1, v1 f32         first layer weights W1 (D, H; the bias is the row of the ones column) and
 *                          their Adam state, in 32 x 32 blocks, block (i, j) = W1[32i:32i+32, 32j:32j+32]
 *                          stored contiguously at ((i * H/32) + j) * 1024: Adam streams each block
 *                          in one run (the pair copy below is made from the plain (D, H) layout)
 *   W1c (D/2, H, 2) bf16   their bf16 copy in the tiles' pair layout: W1c[d/2][n][d%2] = W1[d][n]
 *   P2, m2, v2 (C*H + C)   output layer weights W2[c][n], then its biases, and Adam state
 * Scratch (per model, from the caller): x (B, D) bf16, xT (D, B) bf16 (the AVX512-BF16 build keeps x in
 * pairs of rows there instead, (B/2, D, 2)), z (B, H) f32, dl (B, C) f32,
 * dzv (B/2, H, 2) bf16, g2 (C*H + C + 17*H) f32, g1 (D*H) f32 (the first layer's weight gradient in
 * P1's block layout: the AVX512-BF16 build forms all of it before Adam, see the end of step()).
 *
 * Built with -ffp-contract=off so that results do not depend on vectorisation choices.
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "adam_math.h"

#if defined(__AMX_TILE__) && defined(__AMX_BF16__)
#define MLP1_AMX 1
#include <sys/syscall.h>
#include <unistd.h>
#elif defined(__AVX512BF16__) && defined(__AVX512BW__)
#define MLP1_AMX 0
#else
#error "mlp1.c needs a compiler targeting AMX-BF16 or AVX512-BF16 (-march=native on such a CPU)"
#endif

int miaudit_mlp1_abi(void) { return 2; }

/* 1: the block products run on AMX tiles; 2: on AVX512-BF16 dot products. */
int miaudit_mlp1_kind(void) { return MLP1_AMX ? 1 : 2; }

#if MLP1_AMX
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

/* Ask the kernel for the AMX tile state (once per process; 0 on success). */
int miaudit_mlp1_init(void) { return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 ? 0 : -1; }

typedef struct {
    uint8_t palette_id;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

static void configure_tiles(void) {
    tile_config c;
    memset(&c, 0, sizeof c);
    c.palette_id = 1;
    for (int i = 0; i < 8; i++) {
        c.rows[i] = 16;
        c.colsb[i] = 64;
    }
    _tile_loadconfig(&c);
}

static void release_tiles(void) { _tile_release(); }

/* A 32 x 32 float32 block C = sum over nk steps of A (32 x 32 bf16, row-major) . B (32 x 32 bf16 in the
 * pair layout), on four accumulator tiles. a: A's first row; a_half: elements to its row 16;
 * a_stride: bytes per row; a_k: elements per step. b: B's first tile row; b_half: elements to its
 * column 16; b_stride: bytes per (pair) row; b_k: elements per step. c: C's first element;
 * c_half: elements to its row 16 (column 16 is 16 elements on); c_stride: bytes per row. */
static inline void block_32x32(int64_t nk, const uint16_t *a, int64_t a_half, int64_t a_stride, int64_t a_k,
                               const uint16_t *b, int64_t b_half, int64_t b_stride, int64_t b_k, float *c,
                               int64_t c_half, int64_t c_stride) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t k = 0; k < nk; k++) {
        _tile_loadd(4, a + k * a_k, a_stride);
        _tile_loadd(5, a + a_half + k * a_k, a_stride);
        _tile_loadd(6, b + k * b_k, b_stride);
        _tile_loadd(7, b + b_half + k * b_k, b_stride);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, c, c_stride);
    _tile_stored(1, c + 16, c_stride);
    _tile_stored(2, c + c_half, c_stride);
    _tile_stored(3, c + c_half + 16, c_stride);
}
#else
/* Nothing to ask the kernel for: AVX-512 state is always enabled. */
int miaudit_mlp1_init(void) { return 0; }

static void configure_tiles(void) {}

static void release_tiles(void) {}

/* Rows of C computed together (2 x ROWS accumulators, the 32 x 32 B block read once per group). */
#define ROWS 8

/* A 32 x 32 float32 block C = A (32 x 32 nk, bf16) . B (pair layout, as block_32x32's), as vdpbf16ps: each
 * accumulator lane holds one C element and adds, per pair of k, the two products of A's pair (broadcast)
 * and B's pair. A's pair (A[m][2p], A[m][2p+1]) is the 32-bit word at a + m * a_m + p * a_p (row-major A:
 * a_m the row stride, a_p 2; the batch in row pairs, as x^T: a_m 2, a_p 2D); C's row m at c + m * c_m. */
static inline void block_pairs(int64_t nk, const uint16_t *a, int64_t a_m, int64_t a_p, const uint16_t *b,
                               int64_t b_half, int64_t b_stride, int64_t b_k, float *c, int64_t c_m) {
    const int64_t bs = b_stride / 2;
    for (int r0 = 0; r0 < 32; r0 += ROWS) {
        __m512 acc0[ROWS], acc1[ROWS];
        for (int r = 0; r < ROWS; r++) {
            acc0[r] = _mm512_setzero_ps();
            acc1[r] = _mm512_setzero_ps();
        }
        for (int64_t k = 0; k < nk; k++) {
            const uint16_t *bk = b + k * b_k;
            for (int k2 = 0; k2 < 16; k2++) {
                const __m512bh b0 = (__m512bh)_mm512_loadu_si512((const void *)(bk + k2 * bs));
                const __m512bh b1 = (__m512bh)_mm512_loadu_si512((const void *)(bk + b_half + k2 * bs));
                const uint16_t *ap = a + r0 * a_m + (k * 16 + k2) * a_p;
                for (int r = 0; r < ROWS; r++) {
                    int32_t pair;
                    memcpy(&pair, ap + r * a_m, sizeof pair);
                    const __m512bh ab = (__m512bh)_mm512_set1_epi32(pair);
                    acc0[r] = _mm512_dpbf16_ps(acc0[r], ab, b0);
                    acc1[r] = _mm512_dpbf16_ps(acc1[r], ab, b1);
                }
            }
        }
        for (int r = 0; r < ROWS; r++) {
            _mm512_storeu_ps(c + (r0 + r) * c_m, acc0[r]);
            _mm512_storeu_ps(c + (r0 + r) * c_m + 16, acc1[r]);
        }
    }
}

/* The AMX build's block product (same arguments) where rows 16..31 follow rows 0..15 at the same stride, as
 * at every call here (a_half = 16 rows of A, c_half = 16 rows of C). */
static inline void block_32x32(int64_t nk, const uint16_t *a, int64_t a_half, int64_t a_stride, int64_t a_k,
                               const uint16_t *b, int64_t b_half, int64_t b_stride, int64_t b_k, float *c,
                               int64_t c_half, int64_t c_stride) {
    (void)a_half;
    (void)a_k; /* 32 elements: the k steps are consecutive pairs */
    (void)c_half;
    block_pairs(nk, a, a_stride / 2, 2, b, b_half, b_stride, b_k, c, c_stride / 4);
}
#endif

static inline adam_t adam_scalars(int64_t t, float lr, float beta1, float beta2, float eps, float wd) {
    adam_t a;
    double bc1 = 1.0 - pow((double)beta1, (double)t), bc2 = 1.0 - pow((double)beta2, (double)t);
    a.step_size = (float)(lr / bc1);
    a.inv_bc2_sqrt = 1.0f / (float)sqrt(bc2);
    a.beta1 = beta1;
    a.beta2 = beta2;
    a.eps = eps;
    a.weight_decay = wd;
    return a;
}

/* Adam on n contiguous values (adam_math.h), in place. */
static inline void adam_run(int64_t n, float *restrict p, float *restrict m, float *restrict v,
                            const float *restrict g, adam_t a) {
    for (int64_t i = 0; i < n; i++) p[i] = adam_element(p[i], g[i], m + i, v + i, a);
}

/* bf16 copy of two weight rows (d, d + 1), n values each, in the pair layout. */
static inline void pair_rows(int64_t n, const float *restrict r0, const float *restrict r1, uint16_t *restrict out) {
    for (int64_t i = 0; i < n; i++) {
        out[2 * i] = f32_to_bf16(r0[i]);
        out[2 * i + 1] = f32_to_bf16(r1[i]);
    }
}

void miaudit_mlp1_copy_weights(int64_t D, int64_t H, const float *P1, uint16_t *W1c) {
    for (int64_t d = 0; d < D; d += 2) pair_rows(H, P1 + d * H, P1 + (d + 1) * H, W1c + d * H);
}

/* One training step. */
static void step(int64_t D, int64_t H, int64_t C, int64_t B, const uint16_t *restrict pool,
                 const int64_t *restrict idx, const float *restrict rw, const int64_t *restrict labels,
                 float *restrict P1, float *restrict m1, float *restrict v1, uint16_t *restrict W1c,
                 float *restrict P2, float *restrict m2, float *restrict v2, adam_t a, uint16_t *restrict x,
                 uint16_t *restrict xT, float *restrict z, float *restrict dl,
                 uint16_t *restrict dzv, float *restrict g2, float *restrict g1) {
    /* gather the batch (x), and its transpose (xT): one 32-bit gather takes columns d, d + 1 of 16
     * rows; its low halves are row d of xT, its high halves row d + 1 */
    for (int64_t b = 0; b < B; b++) memcpy(x + b * D, pool + idx[b] * D, (size_t)D * 2);
#if MLP1_AMX
    {
        const __m512i rows = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                                _mm512_set1_epi32((int)D * 2));
        for (int64_t b = 0; b < B; b += 16) {
            const uint16_t *base = x + b * D;
            for (int64_t d = 0; d < D; d += 2) {
                __m512i v = _mm512_i32gather_epi32(rows, (const void *)(base + d), 1);
                _mm256_storeu_si256((__m256i *)(xT + d * B + b), _mm512_cvtepi32_epi16(v));
                _mm256_storeu_si256((__m256i *)(xT + (d + 1) * B + b), _mm512_cvtepi32_epi16(_mm512_srli_epi32(v, 16)));
            }
        }
    }
#else
    /* the AVX512-BF16 build reads the batch in pairs of rows instead of transposed: xT holds
     * xp (B/2, D, 2), xp[b/2][d] = (x[b][d], x[b+1][d]), the 32-bit pair the weight-gradient product
     * broadcasts (rows interleaved 32 values at a time: two loads, two permutes, two stores) */
    {
        static const uint16_t order[32] = {0, 32, 1, 33, 2,  34, 3,  35, 4,  36, 5,  37, 6,  38, 7,  39,
                                           8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
        const __m512i lo = _mm512_loadu_si512((const void *)order);
        const __m512i hi = _mm512_add_epi16(lo, _mm512_set1_epi16(16));
        for (int64_t b = 0; b < B; b += 2) {
            const uint16_t *r0 = x + b * D, *r1 = r0 + D;
            uint16_t *out = xT + b * D;
            for (int64_t d = 0; d < D; d += 32) {
                const __m512i v0 = _mm512_loadu_si512((const void *)(r0 + d)), v1 = _mm512_loadu_si512((const void *)(r1 + d));
                _mm512_storeu_si512((void *)(out + 2 * d), _mm512_permutex2var_epi16(v0, lo, v1));
                _mm512_storeu_si512((void *)(out + 2 * d + 32), _mm512_permutex2var_epi16(v0, hi, v1));
            }
        }
    }
#endif

    /* layer 1: z (B, H) = x (B, D) @ W1 */
    for (int64_t b = 0; b < B; b += 32)
        for (int64_t n = 0; n < H; n += 32)
            block_32x32(D / 32, x + b * D, 16 * D, D * 2, 32, W1c + n * 2, 32, H * 4, 32 * H, z + b * H + n, 16 * H, H * 4);
    for (int64_t i = 0; i < B * H; i++) z[i] = z[i] > 0.0f ? z[i] : 0.0f; /* ReLU: z is now h */

    /* layer 2, softmax, loss gradient dl = (softmax - onehot) * row weight */
    const float *W2 = P2, *b2 = P2 + C * H;
    float *da = g2 + C * H + C; /* H floats of scratch after the output-layer gradients */
    if (C <= 16) {
        /* classes in the lanes of one vector (W2 transposed and padded to 16 columns); 4 rows at a time */
        float *w2t = da + H;
        for (int64_t n = 0; n < H; n++)
            for (int64_t c = 0; c < 16; c++) w2t[n * 16 + c] = c < C ? W2[c * H + n] : 0.0f;
        const __mmask16 cm = (__mmask16)((1u << C) - 1u);
        const __m512 bias = _mm512_maskz_loadu_ps(cm, b2);
        for (int64_t b = 0; b < B; b += 4) {
            const float *h0 = z + b * H, *h1 = h0 + H, *h2 = h1 + H, *h3 = h2 + H;
            __m512 a0 = bias, a1 = bias, a2 = bias, a3 = bias;
            for (int64_t n = 0; n < H; n++) {
                const __m512 w = _mm512_loadu_ps(w2t + n * 16);
                a0 = _mm512_add_ps(a0, _mm512_mul_ps(_mm512_set1_ps(h0[n]), w));
                a1 = _mm512_add_ps(a1, _mm512_mul_ps(_mm512_set1_ps(h1[n]), w));
                a2 = _mm512_add_ps(a2, _mm512_mul_ps(_mm512_set1_ps(h2[n]), w));
                a3 = _mm512_add_ps(a3, _mm512_mul_ps(_mm512_set1_ps(h3[n]), w));
            }
            _mm512_mask_storeu_ps(dl + b * C, cm, a0);
            _mm512_mask_storeu_ps(dl + (b + 1) * C, cm, a1);
            _mm512_mask_storeu_ps(dl + (b + 2) * C, cm, a2);
            _mm512_mask_storeu_ps(dl + (b + 3) * C, cm, a3);
        }
    } else {
        for (int64_t b = 0; b < B; b++)
            for (int64_t c = 0; c < C; c++) {
                const float *h = z + b * H, *w = W2 + c * H;
                float s = b2[c];
                for (int64_t n = 0; n < H; n++) s += h[n] * w[n];
                dl[b * C + c] = s;
            }
    }
    for (int64_t b = 0; b < B; b++) {
        float *o = dl + b * C;
        float mx = -INFINITY, tot = 0.0f;
        for (int64_t c = 0; c < C; c++) mx = o[c] > mx ? o[c] : mx;
        for (int64_t c = 0; c < C; c++) {
            o[c] = expf(o[c] - mx);
            tot += o[c];
        }
        const float r = rw[b];
        for (int64_t c = 0; c < C; c++) o[c] = (o[c] / tot - (c == labels[b] ? 1.0f : 0.0f)) * r;
    }

    /* output layer gradients (before its update: da below uses the current W2) */
    memset(g2, 0, sizeof(float) * (size_t)(C * H + C));
    for (int64_t b = 0; b < B; b++) {
        const float *h = z + b * H, *o = dl + b * C;
        for (int64_t c = 0; c < C; c++) {
            float *g = g2 + c * H;
            const float oc = o[c];
            for (int64_t n = 0; n < H; n++) g[n] += oc * h[n];
            g2[C * H + c] += oc;
        }
    }
    /* da = dl @ W2, times ReLU'(z), into the bf16 pairs of rows the weight-gradient tiles read: rows b and
     * b + 1 together (da1 in the scratch after da, free once the logits are formed), each pair one 32-bit
     * word (row b in the low half), so the packing loop vectorises */
    float *da1 = da + H;
    for (int64_t b = 0; b < B; b += 2) {
        const float *h0 = z + b * H, *h1 = h0 + H, *o0 = dl + b * C, *o1 = o0 + C;
        for (int64_t n = 0; n < H; n++) {
            da[n] = 0.0f;
            da1[n] = 0.0f;
        }
        for (int64_t c = 0; c < C; c++) {
            const float oc0 = o0[c], oc1 = o1[c], *w = W2 + c * H;
            for (int64_t n = 0; n < H; n++) {
                da[n] += oc0 * w[n];
                da1[n] += oc1 * w[n];
            }
        }
        uint32_t *out = (uint32_t *)(void *)(dzv + b * H);
        for (int64_t n = 0; n < H; n++)
            out[n] = (uint32_t)f32_to_bf16(h0[n] > 0.0f ? da[n] : 0.0f) |
                     ((uint32_t)f32_to_bf16(h1[n] > 0.0f ? da1[n] : 0.0f) << 16);
    }
    adam_run(C * H + C, P2, m2, v2, g2, a);

#if MLP1_AMX
    /* layer 1 weight gradient x^T (D, B) @ dz (B, H), 32 x 32 blocks, each followed by its Adam
     * update and the new bf16 pairs, while the block is in cache (a tile product is a few hundred
     * cycles: the block's Adam state is the cost, so it is read once, right after) */
    (void)g1;
    float g[32 * 32];
    for (int64_t d = 0; d < D; d += 32) {
        for (int64_t n = 0; n < H; n += 32) {
            block_32x32(B / 32, xT + d * B, 16 * B, B * 2, 32, dzv + n * 2, 32, H * 4, 32 * H, g, 16 * 32, 32 * 4);
            const int64_t blk = ((d / 32) * (H / 32) + n / 32) * 1024;
            adam_run(1024, P1 + blk, m1 + blk, v1 + blk, g, a);
            for (int64_t r = 0; r < 32; r += 2)
                pair_rows(32, P1 + blk + r * 32, P1 + blk + (r + 1) * 32, W1c + (d + r) * H + n * 2);
        }
    }
#else
    /* layer 1 weight gradient x^T (D, B) @ dz (B, H) into g1 (P1's block layout), all blocks first, then
     * Adam over all of it and the new bf16 pairs: here the products are the cost, and alternating them
     * with Adam's stream through the state (larger than the L2 cache) slowed them by about 2x */
    for (int64_t d = 0; d < D; d += 32)
        for (int64_t n = 0; n < H; n += 32)
            block_pairs(B / 32, xT + 2 * d, 2, 2 * D, dzv + n * 2, 32, H * 4, 32 * H,
                        g1 + ((d / 32) * (H / 32) + n / 32) * 1024, 32);
    adam_run(D * H, P1, m1, v1, g1, a);
    for (int64_t d = 0; d < D; d += 32)
        for (int64_t n = 0; n < H; n += 32) {
            const int64_t blk = ((d / 32) * (H / 32) + n / 32) * 1024;
            for (int64_t r = 0; r < 32; r += 2)
                pair_rows(32, P1 + blk + r * 32, P1 + blk + (r + 1) * 32, W1c + (d + r) * H + n * 2);
        }
#endif
}

/* L steps (Adam steps t0 + 1 .. t0 + L) of one model. */
void miaudit_mlp1_train(int64_t D, int64_t H, int64_t C, int64_t B, int64_t L, const uint16_t *pool,
                        const int64_t *idx, const float *rw, const int64_t *labels, float *P1, float *m1,
                        float *v1, uint16_t *W1c, float *P2, float *m2, float *v2, int64_t t0, float lr,
                        float beta1, float beta2, float eps, float weight_decay, uint16_t *x,
                        uint16_t *xT, float *z, float *dl, uint16_t *dzv, float *g2, float *g1) {
    configure_tiles();
    for (int64_t l = 0; l < L; l++) {
        adam_t a = adam_scalars(t0 + l + 1, lr, beta1, beta2, eps, weight_decay);
        step(D, H, C, B, pool, idx + l * B, rw + l * B, labels + l * B, P1, m1, v1, W1c, P2, m2, v2, a, x, xT,
             z, dl, dzv, g2, g1);
    }
    release_tiles();
}
