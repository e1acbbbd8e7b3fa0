// Feature preparation on the device (DESIGN §3.1), for layers that arrive in CUDA memory: the
// library's own copy of a caller's strided f32/f16/bf16 tensor, the resampling to the encoder's
// grid in the cell-major layout the trainer reads, the spatial means that stand in for a missing
// global token, and the rounding and layer units the host path applies. Each kernel computes what
// the host code computes, in the same order of operations, so the two paths agree to rounding:
//   copy_layer_*      src/ffi/tensor.rs (RawView::to_array): element (n, c, y, x) at
//                     n·s0 + c·s1 + y·s2 + x·s3, widened to f32
//   resample_cells    src/model/resample.rs (resample_cells_slice): along x, then along y, each
//                     sum starting from its first product
//   spatial_means     src/data/feature_source.rs (spatial_means): f64 sum, one division
//   finish_prepared   src/data/precision.rs (Store::write, Store::affine)
//   channel_moments,  src/data/precision.rs (Store::channel_moments): f64 sums per channel,
//   sum_moment_chunks   partial sums per block of rows added in block order
//
// Compiled by NVRTC at run time after kernels/prelude.cuh (f16_t, bf16_t, to_f32), with no CUDA
// headers.

__device__ __forceinline__ bool finite(float x) { return (__float_as_uint(x) & 0x7f800000u) != 0x7f800000u; }

// x rounded to the nearest f16 (ties to even) and widened back, as the half crate's from_f32.
__device__ __forceinline__ float round_f16(float x) {
    unsigned short h;
#if defined(FACTORTOPY_CUDA_EMU)
    h = __half_as_ushort(__float2half_rn(x));
#else
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(x));
#endif
    return to_f32(f16_t{h});
}

// x rounded to the nearest bf16 (ties to even) and widened back, as the half crate's from_f32
// (a NaN stays a NaN; finite values are checked before they get here).
__device__ __forceinline__ float round_bf16(float x) {
    const unsigned u = __float_as_uint(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return x;
    const unsigned r = u + 0x7fffu + ((u >> 16) & 1u);
    return __uint_as_float(r & 0xffff0000u);
}

// round: 0 keeps f32, 1 rounds to f16, 2 to bf16 (the precision the prepared values are kept in).
__device__ __forceinline__ float round_to(float x, int round) {
    return round == 1 ? round_f16(x) : round == 2 ? round_bf16(x) : x;
}

// ---------------------------------------------------------------------------------------------
// dst[n, c, y, x] = f32(src[n·s0 + c·s1 + y·s2 + x·s3]) over [N, C, H, W] (strides in elements,
// any sign; the host checked that every element lies in the caller's allocation), and
// first_bad[0] lowered to the flat index ((n·C + c)·H + y)·W + x of each non-finite value: the
// host sets it to ~0 (none), so it ends as the first non-finite value in row-major order, the one
// the host path's check names, whatever the strides. Launch: 1-D grid-stride.
template <typename T>
__device__ __forceinline__ void copy_layer_impl(const T* __restrict__ src, long long s0, long long s1, long long s2,
                                                long long s3, long long C, long long H, long long W, long long total,
                                                float* __restrict__ dst, unsigned long long* __restrict__ first_bad) {
    const unsigned long long none = ~0ull;
    unsigned long long first = none;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long x = i % W;
        const long long y = (i / W) % H;
        const long long c = (i / (W * H)) % C;
        const long long n = i / (W * H * C);
        const float v = to_f32(src[n * s0 + c * s1 + y * s2 + x * s3]);
        dst[i] = v;
        // A thread's i only grows, so its first non-finite value has its smallest index.
        if (!finite(v) && first == none) first = (unsigned long long)i;
    }
    // One atomic per thread that saw a bad value, none otherwise.
    if (first != none) atomicMin(first_bad, first);
}

extern "C" __global__ void copy_layer_f32(const float* src, long long s0, long long s1, long long s2, long long s3,
                                          long long C, long long H, long long W, long long total, float* dst,
                                          unsigned long long* first_bad) {
    copy_layer_impl<float>(src, s0, s1, s2, s3, C, H, W, total, dst, first_bad);
}
extern "C" __global__ void copy_layer_f16(const f16_t* src, long long s0, long long s1, long long s2, long long s3,
                                          long long C, long long H, long long W, long long total, float* dst,
                                          unsigned long long* first_bad) {
    copy_layer_impl<f16_t>(src, s0, s1, s2, s3, C, H, W, total, dst, first_bad);
}
extern "C" __global__ void copy_layer_bf16(const bf16_t* src, long long s0, long long s1, long long s2, long long s3,
                                           long long C, long long H, long long W, long long total, float* dst,
                                           unsigned long long* first_bad) {
    copy_layer_impl<bf16_t>(src, s0, s1, s2, s3, C, H, W, total, dst, first_bad);
}

// ---------------------------------------------------------------------------------------------
// dst[o, oy·G + ox, c] = Σ_{(y, wy) ∈ taps_y[oy]} wy · Σ_{(x, wx) ∈ taps_x[ox]} wx · src[idx[o], c, y, x]
// for the images idx[0..n_out) of src [N, C, H, W]. The taps of output index k of an axis are
// entries [start[k], start[k + 1]) of (tap index, weight); every output index has at least one.
// identity (H = W = G): a plain transpose. Launch: 1-D grid-stride over n_out·G·G·C.
extern "C" __global__ void resample_cells(const float* __restrict__ src, const int* __restrict__ idx, int n_out,
                                          int C, int H, int W, int G, const int* __restrict__ y_start,
                                          const int* __restrict__ y_index, const float* __restrict__ y_weight,
                                          const int* __restrict__ x_start, const int* __restrict__ x_index,
                                          const float* __restrict__ x_weight, int identity, float* __restrict__ dst) {
    const long long gg = (long long)G * G;
    const long long total = (long long)n_out * gg * C;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const int c = (int)(i % C);
        const long long cell = (i / C) % gg;
        const long long o = i / (C * gg);
        const int oy = (int)(cell / G), ox = (int)(cell % G);
        const float* plane = src + ((long long)idx[o] * C + c) * H * W;
        if (identity) {
            dst[i] = plane[oy * W + ox];
            continue;
        }
        float acc = 0.0f;
        for (int j = y_start[oy]; j < y_start[oy + 1]; ++j) {
            const float* row = plane + (long long)y_index[j] * W;
            int k = x_start[ox];
            float along_x = row[x_index[k]] * x_weight[k];
            for (++k; k < x_start[ox + 1]; ++k) along_x += row[x_index[k]] * x_weight[k];
            const float term = along_x * y_weight[j];
            acc = j == y_start[oy] ? term : acc + term;
        }
        dst[i] = acc;
    }
}

// dst[o, c] = mean over the H·W pixels of src[idx[o], c] (f64 sum). Launch: 1-D grid-stride
// over n_out·C.
extern "C" __global__ void spatial_means(const float* __restrict__ src, const int* __restrict__ idx, int n_out, int C,
                                         long long hw, float* __restrict__ dst) {
    const long long total = (long long)n_out * C;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const int c = (int)(i % C);
        const long long o = i / C;
        const float* plane = src + ((long long)idx[o] * C + c) * hw;
        double sum = 0.0;
        for (long long p = 0; p < hw; ++p) sum += (double)plane[p];
        dst[i] = (float)(sum / (double)hw);
    }
}

// x[r, c] = round(x[r, c]), then with affine x[r, c] = round((x[r, c] − mean[c])·k): the values
// stored in the prepared precision, then put in the layer's units. Launch: 1-D grid-stride.
extern "C" __global__ void finish_prepared(float* __restrict__ x, long long n, int C, const float* __restrict__ mean,
                                           float k, int affine, int round) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        float v = round_to(x[i], round);
        if (affine) v = round_to((v - mean[i % C]) * k, round);
        x[i] = v;
    }
}

// sums[b, c] = Σ x[r, c] and squares[b, c] = Σ x[r, c]² (f64) over the rows r of block b,
// [b·chunk, min((b + 1)·chunk, rows)), of x [rows, C]: the first pass of a layer's units
// (PreparedFeatures::normalise). Launch: one block per chunk of rows; threads stride over
// channels, so neighbouring threads read neighbouring values.
extern "C" __global__ void channel_moments(const float* __restrict__ x, long long rows, int C, long long chunk,
                                           double* __restrict__ sums, double* __restrict__ squares) {
    const long long r0 = (long long)blockIdx.x * chunk;
    const long long r1 = r0 + chunk < rows ? r0 + chunk : rows;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        double s = 0.0, q = 0.0;
        for (long long r = r0; r < r1; ++r) {
            const double v = (double)x[r * C + c];
            s += v;
            q += v * v;
        }
        sums[(long long)blockIdx.x * C + c] = s;
        squares[(long long)blockIdx.x * C + c] = q;
    }
}

// totals[c] = Σ_b sums[b, c] and totals[C + c] = Σ_b squares[b, c], summed in block order (the
// same numbers on every run). Launch: 1-D grid-stride over C.
extern "C" __global__ void sum_moment_chunks(const double* __restrict__ sums, const double* __restrict__ squares,
                                             int chunks, int C, double* __restrict__ totals) {
    for (long long c = (long long)blockIdx.x * blockDim.x + threadIdx.x; c < C; c += (long long)gridDim.x * blockDim.x) {
        double s = 0.0, q = 0.0;
        for (int b = 0; b < chunks; ++b) {
            s += sums[(long long)b * C + c];
            q += squares[(long long)b * C + c];
        }
        totals[c] = s;
        totals[C + c] = q;
    }
}
