// Element-wise ops and reductions of the GPU fit (DESIGN §3.3, §3.5, §3.9): bias + GELU(erf)
// forward and backward, smooth-L1 forward and backward, deterministic sums, the global squared
// gradient norm, AdamW with clipping, and row gathers that widen f16/bf16 features to f32.
//
// Reductions are two-stage with a fixed grid (REDUCE_BLOCKS partials, then one block), never
// atomics, so a fit is bitwise reproducible on the same device (DESIGN §3.6).
//
// Compiled by NVRTC at run time after kernels/prelude.cuh (f16_t, bf16_t, to_f32, warp_sum), with
// no CUDA headers.

// Must equal REDUCE_BLOCKS in src/cuda/elementwise.rs; the block size of every reduction
// kernel must be REDUCE_THREADS.
#define REDUCE_BLOCKS 256
#define REDUCE_THREADS 256

// Sum of one value per thread over a REDUCE_THREADS block, in a fixed order; valid in thread 0.
__device__ __forceinline__ float block_sum(float x) {
    __shared__ float warp_part[REDUCE_THREADS / 32];
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    x = warp_sum(x);
    if (lane == 0) warp_part[warp] = x;
    __syncthreads();
    float total = 0.0f;
    if (warp == 0) {
        total = lane < REDUCE_THREADS / 32 ? warp_part[lane] : 0.0f;
        total = warp_sum(total);
    }
    return total;
}

// ---------------------------------------------------------------------------------------------
// GELU with the exact erf form (candle's gelu_erf, PyTorch's default).
__device__ __forceinline__ float gelu(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }
__device__ __forceinline__ float gelu_grad(float x) {
    const float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
    const float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
    return cdf + x * pdf;
}

// pre[r, c] += bias[c] in place (kept as the pre-activation for the backward); out = gelu(pre).
// Launch: 1-D grid-stride over rows*cols.
extern "C" __global__ void bias_gelu_fwd(float* __restrict__ pre, const float* __restrict__ bias,
                                         float* __restrict__ out, int rows, int cols) {
    const size_t n = (size_t)rows * cols;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float a = pre[i] + bias[i % cols];
        pre[i] = a;
        out[i] = gelu(a);
    }
}

// din = dout * gelu'(pre). In place (din == dout) is allowed.
extern "C" __global__ void gelu_bwd(const float* dout, const float* __restrict__ pre, float* din, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        din[i] = dout[i] * gelu_grad(pre[i]);
}

// Plain GELU, forward, for tests and for callers without a bias.
extern "C" __global__ void gelu_fwd(const float* __restrict__ x, float* __restrict__ y, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) y[i] = gelu(x[i]);
}

// ---------------------------------------------------------------------------------------------
// Smooth-L1 on err = pred − target with threshold beta: 0.5·e²/β inside, |e| − β/2 outside.
// grad = grad_scale · d/dpred (grad_scale = 1/(B·V) for the mean); partials[block] = the block's
// sum of the element losses (unscaled). Launch: grid REDUCE_BLOCKS, block REDUCE_THREADS.
extern "C" __global__ void smooth_l1_fwd_bwd(const float* __restrict__ pred, const float* __restrict__ target,
                                             float* __restrict__ grad, float* __restrict__ partials, int n,
                                             float beta, float grad_scale) {
    float acc = 0.0f;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const float e = pred[i] - target[i];
        const float a = fabsf(e);
        float g;
        if (a < beta) {
            acc += 0.5f * e * e / beta;
            g = e / beta;
        } else {
            acc += a - 0.5f * beta;
            g = e > 0.0f ? 1.0f : -1.0f;
        }
        grad[i] = g * grad_scale;
    }
    const float total = block_sum(acc);
    if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

// partials[block] = Σ x over the block's grid-stride share. Launch: REDUCE_BLOCKS × REDUCE_THREADS.
extern "C" __global__ void sum_partials(const float* __restrict__ x, float* __restrict__ partials, int n) {
    float acc = 0.0f;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) acc += x[i];
    const float total = block_sum(acc);
    if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

// partials[block] = Σ x² (the clipping norm). Launch: REDUCE_BLOCKS × REDUCE_THREADS.
extern "C" __global__ void sqnorm_partials(const float* __restrict__ x, float* __restrict__ partials, int n) {
    float acc = 0.0f;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) acc += x[i] * x[i];
    const float total = block_sum(acc);
    if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

// out[0] = scale · Σ partials[0..n). Launch: one block of REDUCE_THREADS.
extern "C" __global__ void finish_sum(const float* __restrict__ partials, float* __restrict__ out, int n, float scale) {
    float acc = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) acc += partials[i];
    const float total = block_sum(acc);
    if (threadIdx.x == 0) out[0] = total * scale;
}

// ---------------------------------------------------------------------------------------------
// AdamW (candle-nn's form, decoupled weight decay on every parameter) after global-norm clipping
// as PyTorch's clip_grad_norm_: the gradient is scaled by min(1, max_norm/(‖g‖ + 1e-6)), with
// ‖g‖² read from device memory so the step needs no host round trip.
// scale_m = 1/(1 − β1^t), scale_v = 1/(1 − β2^t) are computed by the host in f64.
extern "C" __global__ void adamw_step(float* __restrict__ param, const float* __restrict__ grad, float* __restrict__ m,
                                      float* __restrict__ v, int n, const float* __restrict__ sqnorm, float max_norm,
                                      float lr, float beta1, float beta2, float eps, float weight_decay, float scale_m,
                                      float scale_v) {
    const float norm = sqrtf(sqnorm[0]);
    const float coef = fminf(1.0f, max_norm / (norm + 1e-6f));
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const float g = grad[i] * coef;
        const float mi = beta1 * m[i] + (1.0f - beta1) * g;
        const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        const float update = (mi * scale_m) / (sqrtf(vi * scale_v) + eps);
        param[i] = param[i] * (1.0f - lr * weight_decay) - lr * update;
    }
}

// ---------------------------------------------------------------------------------------------
// dst[r, :] = f32(src[idx[offset + r], :]) for r < rows: a batch of images out of the
// device-resident feature store, widened to f32 for cuBLAS. Launch: 1-D grid-stride.
template <typename T>
__device__ __forceinline__ void gather_rows_impl(const T* __restrict__ src, const int* __restrict__ idx, int offset,
                                                 int rows, long long row_len, float* __restrict__ dst) {
    const size_t n = (size_t)rows * (size_t)row_len;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const size_t r = i / (size_t)row_len;
        const size_t c = i - r * (size_t)row_len;
        dst[i] = to_f32(src[(size_t)idx[offset + r] * (size_t)row_len + c]);
    }
}

extern "C" __global__ void gather_rows_f32(const float* src, const int* idx, int offset, int rows, long long row_len,
                                           float* dst) {
    gather_rows_impl<float>(src, idx, offset, rows, row_len, dst);
}
extern "C" __global__ void gather_rows_f16(const f16_t* src, const int* idx, int offset, int rows, long long row_len,
                                           float* dst) {
    gather_rows_impl<f16_t>(src, idx, offset, rows, row_len, dst);
}
extern "C" __global__ void gather_rows_bf16(const bf16_t* src, const int* idx, int offset, int rows,
                                            long long row_len, float* dst) {
    gather_rows_impl<bf16_t>(src, idx, offset, rows, row_len, dst);
}
