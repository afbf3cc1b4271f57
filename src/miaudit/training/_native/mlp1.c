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
 * DP-SGD (miaudit_mlp1_train_dp, at the end): the same layouts, each step's Poisson batch of any size (rows
 * padded to a multiple of ROWS = 8, mlp1.py's DP_STEP_ROWS), per-example clipping with a margin for the bf16
 * rounding, the model's noise drawn here (gauss_math.h, the bits of gauss.c), products on AVX512-BF16 dot
 * products in both builds.
 *
 * Built with -ffp-contract=off so that results do not depend on vectorisation choices.
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "adam_math.h"
#include "gauss_math.h"

#if defined(__AMX_TILE__) && defined(__AMX_BF16__)
#define MLP1_AMX 1
#include <sys/syscall.h>
#include <unistd.h>
#elif defined(__AVX512BF16__) && defined(__AVX512BW__)
#define MLP1_AMX 0
#else
#error "mlp1.c needs a compiler targeting AMX-BF16 or AVX512-BF16 (-march=native on such a CPU)"
#endif

/* The DP-SGD steps (train_dp below) use AVX512-BF16 dot products in both builds (every CPU with AMX has them). */
#if defined(__AVX512BF16__) && defined(__AVX512BW__)
#define MLP1_DP 1
#else
#define MLP1_DP 0
#endif

int miaudit_mlp1_abi(void) { return 3; }

/* 1: the block products run on AMX tiles; 2: on AVX512-BF16 dot products. */
int miaudit_mlp1_kind(void) { return MLP1_AMX ? 1 : 2; }

/* 1 where miaudit_mlp1_train_dp is built (AVX512-BF16), else 0. */
int miaudit_mlp1_dp(void) { return MLP1_DP; }

#if MLP1_DP
/* Rows of C computed together (2 x ROWS accumulators, B's 32 columns read once per group). */
#define ROWS 8

/* C (rows x 32, float32) = A (rows x 2 pairs, bf16) . B (2 pairs x 32, bf16 pairs), as vdpbf16ps: each
 * accumulator lane holds one C element and adds, per pair p of the inner dimension, the two products of A's
 * pair (broadcast) and B's pair. A's pair (A[m][2p], A[m][2p+1]) is the 32-bit word at a + m * a_m + p * a_p
 * (row-major A: a_m the row stride, a_p 2; the batch in row pairs, as x^T: a_m 2, a_p 2D); B's pairs for
 * columns 0..15 at b + p * b_p, for columns 16..31 b_half elements on; C's row m at c + m * c_m. rows is a
 * multiple of ROWS. The pairs are added in order p = 0, 1, ... */
static inline void dot_pairs(int64_t rows, int64_t pairs, const uint16_t *a, int64_t a_m, int64_t a_p,
                             const uint16_t *b, int64_t b_half, int64_t b_p, float *c, int64_t c_m) {
    for (int64_t r0 = 0; r0 < rows; r0 += ROWS) {
        __m512 acc0[ROWS], acc1[ROWS];
        for (int r = 0; r < ROWS; r++) {
            acc0[r] = _mm512_setzero_ps();
            acc1[r] = _mm512_setzero_ps();
        }
        for (int64_t p = 0; p < pairs; p++) {
            const __m512bh b0 = (__m512bh)_mm512_loadu_si512((const void *)(b + p * b_p));
            const __m512bh b1 = (__m512bh)_mm512_loadu_si512((const void *)(b + b_half + p * b_p));
            const uint16_t *ap = a + r0 * a_m + p * a_p;
            for (int r = 0; r < ROWS; r++) {
                int32_t pair;
                memcpy(&pair, ap + r * a_m, sizeof pair);
                const __m512bh ab = (__m512bh)_mm512_set1_epi32(pair);
                acc0[r] = _mm512_dpbf16_ps(acc0[r], ab, b0);
                acc1[r] = _mm512_dpbf16_ps(acc1[r], ab, b1);
            }
        }
        for (int r = 0; r < ROWS; r++) {
            _mm512_storeu_ps(c + (r0 + r) * c_m, acc0[r]);
            _mm512_storeu_ps(c + (r0 + r) * c_m + 16, acc1[r]);
        }
    }
}

/* A 32 x 32 block of C with an inner dimension of 32 nk (16 nk pairs); B's pair rows b_stride bytes apart. */
static inline void block_pairs(int64_t nk, const uint16_t *a, int64_t a_m, int64_t a_p, const uint16_t *b,
                               int64_t b_half, int64_t b_stride, int64_t b_k, float *c, int64_t c_m) {
    (void)b_k; /* 16 pair rows: consecutive */
    dot_pairs(32, 16 * nk, a, a_m, a_p, b, b_half, b_stride / 2, c, c_m);
}

/* The batch in pairs of rows, xp (B/2, D, 2): xp[b/2][d] = (x[b][d], x[b+1][d]), the 32-bit pair the
 * weight-gradient product broadcasts (rows interleaved 32 values at a time: two loads, two permutes, two
 * stores). B even, D a multiple of 32. */
static inline void row_pairs(int64_t B, int64_t D, const uint16_t *restrict x, uint16_t *restrict xp) {
    static const uint16_t order[32] = {0, 32, 1, 33, 2,  34, 3,  35, 4,  36, 5,  37, 6,  38, 7,  39,
                                       8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
    const __m512i lo = _mm512_loadu_si512((const void *)order);
    const __m512i hi = _mm512_add_epi16(lo, _mm512_set1_epi16(16));
    for (int64_t b = 0; b < B; b += 2) {
        const uint16_t *r0 = x + b * D, *r1 = r0 + D;
        uint16_t *out = xp + b * D;
        for (int64_t d = 0; d < D; d += 32) {
            const __m512i v0 = _mm512_loadu_si512((const void *)(r0 + d)), v1 = _mm512_loadu_si512((const void *)(r1 + d));
            _mm512_storeu_si512((void *)(out + 2 * d), _mm512_permutex2var_epi16(v0, lo, v1));
            _mm512_storeu_si512((void *)(out + 2 * d + 32), _mm512_permutex2var_epi16(v0, hi, v1));
        }
    }
}
#endif

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

/* The bf16 pair-layout copy W1c of the first layer's weights P1 in their 32 x 32 blocks. */
static void pairs_of_blocks(int64_t D, int64_t H, const float *restrict P1, uint16_t *restrict W1c) {
    for (int64_t d = 0; d < D; d += 32)
        for (int64_t n = 0; n < H; n += 32) {
            const int64_t blk = ((d / 32) * (H / 32) + n / 32) * 1024;
            for (int64_t r = 0; r < 32; r += 2)
                pair_rows(32, P1 + blk + r * 32, P1 + blk + (r + 1) * 32, W1c + (d + r) * H + n * 2);
        }
}

void miaudit_mlp1_copy_weights(int64_t D, int64_t H, const float *P1, uint16_t *W1c) {
    for (int64_t d = 0; d < D; d += 2) pair_rows(H, P1 + d * H, P1 + (d + 1) * H, W1c + d * H);
}

/* The output layer's logits dl (B, C) = h (B, H) @ W2^T + b2, B a multiple of 4; w2t: 16 H floats of scratch. */
static void logits(int64_t B, int64_t H, int64_t C, const float *restrict z, const float *restrict P2,
                   float *restrict w2t, float *restrict dl) {
    const float *W2 = P2, *b2 = P2 + C * H;
    if (C <= 16) {
        /* classes in the lanes of one vector (W2 transposed and padded to 16 columns); 4 rows at a time */
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
}

/* The output layer's gradient, added to g2 (W2[c][n] rows, then the biases): sum over rows b of dl_b h_b. */
static void out_grad(int64_t rows, int64_t H, int64_t C, const float *restrict z, const float *restrict dl,
                     float *restrict g2) {
    for (int64_t b = 0; b < rows; b++) {
        const float *h = z + b * H, *o = dl + b * C;
        for (int64_t c = 0; c < C; c++) {
            float *g = g2 + c * H;
            const float oc = o[c];
            for (int64_t n = 0; n < H; n++) g[n] += oc * h[n];
            g2[C * H + c] += oc;
        }
    }
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
    /* the AVX512-BF16 build reads the batch in pairs of rows instead of transposed: xT holds xp (B/2, D, 2)
     * (row_pairs) */
    row_pairs(B, D, x, xT);
#endif

    /* layer 1: z (B, H) = x (B, D) @ W1 */
    for (int64_t b = 0; b < B; b += 32)
        for (int64_t n = 0; n < H; n += 32)
            block_32x32(D / 32, x + b * D, 16 * D, D * 2, 32, W1c + n * 2, 32, H * 4, 32 * H, z + b * H + n, 16 * H, H * 4);
    for (int64_t i = 0; i < B * H; i++) z[i] = z[i] > 0.0f ? z[i] : 0.0f; /* ReLU: z is now h */

    /* layer 2, softmax, loss gradient dl = (softmax - onehot) * row weight */
    const float *W2 = P2;
    float *da = g2 + C * H + C; /* H floats of scratch after the output-layer gradients */
    logits(B, H, C, z, P2, da + H, dl);
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
    out_grad(B, H, C, z, dl, g2);
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
    pairs_of_blocks(D, H, P1, W1c);
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

#if MLP1_DP
/* DP-SGD (Opacus's algorithm, miaudit/training/dp.py): each example's gradient clipped to norm C, their sum
 * plus Gaussian noise, over the expected batch size. Clipping factor min(1, C / (M ||g_b|| + 1e-6)), where
 * ||g_b||^2 = ||x_b||^2 ||dz_b||^2 + (||h_b||^2 + 1) ||dl_b||^2 is the example's float32 gradient norm
 * over both layers (the norm trick: no per-example gradients), x_b its bf16 input row (ones column
 * included: pool_sq), and M = 1 + 2^-8 the rounding margin: the first layer's weight gradient is formed
 * from x_b and the bf16 rounding of the scaled dz_b, which is at most 2^-9 larger in every element, so
 * each example's contribution as actually summed stays within C (the sensitivity the accounting assumes). */
#define CLIP_EPS 1e-6f
#define ROUND_MARGIN (1.0f + 0x1p-8f)

/* One DP-SGD step on a batch of n rows (rows idx, labels; padded with zero rows to a multiple of 8). */
static void step_dp(int64_t D, int64_t F, int64_t H, int64_t C, int64_t n, const uint16_t *restrict pool,
                    const float *restrict pool_sq, const int64_t *restrict idx, const int64_t *restrict labels,
                    float *restrict P1, float *restrict m1, float *restrict v1, uint16_t *restrict W1c,
                    float *restrict P2, float *restrict m2, float *restrict v2, adam_t a, float clip,
                    float inv_batch, float noise_scale, int64_t key0, int64_t key1, int64_t t,
                    uint16_t *restrict x, uint16_t *restrict xp, float *restrict z, float *restrict dl,
                    uint16_t *restrict dzv, float *restrict g2, float *restrict g1, float *restrict noise) {
    const int64_t B = (n + ROWS - 1) / ROWS * ROWS;
    const float *W2 = P2;
    float *da = g2 + C * H + C, *da1 = da + H;
    memset(g2, 0, sizeof(float) * (size_t)(C * H + C));
    if (n > 0) {
        for (int64_t b = 0; b < n; b++) memcpy(x + b * D, pool + idx[b] * D, (size_t)D * 2);
        memset(x + n * D, 0, (size_t)((B - n) * D) * 2);
        row_pairs(B, D, x, xp);
        /* layer 1: z (B, H) = x (B, D) @ W1, 32 columns at a time; ReLU */
        for (int64_t j = 0; j < H; j += 32) dot_pairs(B, D / 2, x, D, 2, W1c + j * 2, 32, 2 * H, z + j, H);
        for (int64_t i = 0; i < B * H; i++) z[i] = z[i] > 0.0f ? z[i] : 0.0f;
        logits(B, H, C, z, P2, da + H, dl);
        /* each example's gradient of its own loss with respect to the logits; 0 on padding rows */
        for (int64_t b = 0; b < B; b++) {
            float *o = dl + b * C;
            if (b >= n) {
                for (int64_t c = 0; c < C; c++) o[c] = 0.0f;
                continue;
            }
            float mx = -INFINITY, tot = 0.0f;
            for (int64_t c = 0; c < C; c++) mx = o[c] > mx ? o[c] : mx;
            for (int64_t c = 0; c < C; c++) {
                o[c] = expf(o[c] - mx);
                tot += o[c];
            }
            for (int64_t c = 0; c < C; c++) o[c] = o[c] / tot - (c == labels[b] ? 1.0f : 0.0f);
        }
        /* two rows at a time: dz = (dl @ W2) * ReLU'(z), the rows' norms and clipping factors (over the expected
         * batch size), dl scaled by them, dz scaled and rounded into the bf16 row pairs of the weight gradient */
        for (int64_t b = 0; b < B; b += 2) {
            const float *h[2] = {z + b * H, z + (b + 1) * H};
            float *o[2] = {dl + b * C, dl + (b + 1) * C}, *d[2] = {da, da1};
            for (int64_t j = 0; j < H; j++) {
                da[j] = 0.0f;
                da1[j] = 0.0f;
            }
            for (int64_t c = 0; c < C; c++) {
                const float oc0 = o[0][c], oc1 = o[1][c], *w = W2 + c * H;
                for (int64_t j = 0; j < H; j++) {
                    da[j] += oc0 * w[j];
                    da1[j] += oc1 * w[j];
                }
            }
            float s[2];
            for (int r = 0; r < 2; r++) {
                if (b + r >= n) {
                    s[r] = 0.0f;
                    continue;
                }
                float hn = 0.0f, dn = 0.0f, an = 0.0f;
                for (int64_t j = 0; j < H; j++) {
                    const float dj = h[r][j] > 0.0f ? d[r][j] : 0.0f;
                    d[r][j] = dj;
                    hn += h[r][j] * h[r][j];
                    an += dj * dj;
                }
                for (int64_t c = 0; c < C; c++) dn += o[r][c] * o[r][c];
                const float norm = sqrtf((hn + 1.0f) * dn + pool_sq[idx[b + r]] * an);
                const float f = clip / (norm * ROUND_MARGIN + CLIP_EPS);
                s[r] = (f < 1.0f ? f : 1.0f) * inv_batch;
                for (int64_t c = 0; c < C; c++) o[r][c] *= s[r];
            }
            uint32_t *out = (uint32_t *)(void *)(dzv + b * H);
            for (int64_t j = 0; j < H; j++)
                out[j] = (uint32_t)f32_to_bf16(s[0] * da[j]) | ((uint32_t)f32_to_bf16(s[1] * da1[j]) << 16);
        }
        /* the output layer's gradient from the scaled dl */
        out_grad(n, H, C, z, dl, g2);
        /* the first layer's weight gradient x^T (D, B) @ dz (B, H), in P1's blocks */
        for (int64_t d0 = 0; d0 < D; d0 += 32)
            for (int64_t j = 0; j < H; j += 32)
                dot_pairs(32, B / 2, xp + 2 * d0, 2, 2 * D, dzv + j * 2, 32, 2 * H,
                          g1 + ((d0 / 32) * (H / 32) + j / 32) * 1024, 32);
    } else {
        memset(g1, 0, sizeof(float) * (size_t)(D * H)); /* an empty batch: the noise alone */
    }
    if (noise_scale > 0.0f) {
        /* the model's noise for step t in miaudit.training.dp.noise_layout's order: W1 (F, H) row-major and its
         * bias (the ones column's row of P1), then W2 (H, C) row-major and its bias */
        const int64_t n1 = (F + 1) * H;
        gauss_fill(n1 + H * C + C, noise, key0, key1, t, noise_scale);
        for (int64_t d0 = 0; d0 <= F; d0++) {
            float *row = g1 + ((d0 / 32) * (H / 32)) * 1024 + (d0 % 32) * 32;
            const float *nz = noise + d0 * H;
            for (int64_t j0 = 0; j0 < H; j0 += 32)
                for (int64_t j = 0; j < 32; j++) row[(j0 / 32) * 1024 + j] += nz[j0 + j];
        }
        for (int64_t j = 0; j < H; j++)
            for (int64_t c = 0; c < C; c++) g2[c * H + j] += noise[n1 + j * C + c];
        for (int64_t c = 0; c < C; c++) g2[C * H + c] += noise[n1 + H * C + c];
    }
    adam_run(C * H + C, P2, m2, v2, g2, a);
    adam_run(D * H, P1, m1, v1, g1, a);
    pairs_of_blocks(D, H, P1, W1c);
}
#endif

/* L DP-SGD steps (Adam steps t0 + 1 .. t0 + L; noise steps t0 .. t0 + L - 1) of one model: step l trains on
 * counts[l] rows, idx[l][0 .. counts[l]). Returns 0, or -1 where this build has no DP-SGD steps. */
int miaudit_mlp1_train_dp(int64_t D, int64_t F, int64_t H, int64_t C, int64_t B, int64_t L, const uint16_t *pool,
                          const float *pool_sq, const int64_t *idx, const int64_t *counts, const int64_t *labels,
                          float *P1, float *m1, float *v1, uint16_t *W1c, float *P2, float *m2, float *v2, int64_t t0,
                          float lr, float beta1, float beta2, float eps, float weight_decay, float max_grad_norm,
                          float inv_batch, float noise_scale, int64_t key0, int64_t key1, uint16_t *x, uint16_t *xT,
                          float *z, float *dl, uint16_t *dzv, float *g2, float *g1, float *noise) {
#if MLP1_DP
    for (int64_t l = 0; l < L; l++) {
        adam_t a = adam_scalars(t0 + l + 1, lr, beta1, beta2, eps, weight_decay);
        step_dp(D, F, H, C, counts[l], pool, pool_sq, idx + l * B, labels + l * B, P1, m1, v1, W1c, P2, m2, v2, a,
                max_grad_norm, inv_batch, noise_scale, key0, key1, t0 + l, x, xT, z, dl, dzv, g2, g1, noise);
    }
    return 0;
#else
    (void)D, (void)F, (void)H, (void)C, (void)B, (void)L, (void)pool, (void)pool_sq, (void)idx, (void)counts;
    (void)labels, (void)P1, (void)m1, (void)v1, (void)W1c, (void)P2, (void)m2, (void)v2, (void)t0, (void)lr;
    (void)beta1, (void)beta2, (void)eps, (void)weight_decay, (void)max_grad_norm, (void)inv_batch;
    (void)noise_scale, (void)key0, (void)key1, (void)x, (void)xT, (void)z, (void)dl, (void)dzv, (void)g2, (void)g1;
    (void)noise;
    return -1;
#endif
}
