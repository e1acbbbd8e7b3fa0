// The fused voxel readout of DESIGN §3.4 / §3.8 ("batched voxel regression"), forward and
// backward, mirroring src/model/readout.rs operand for operand:
//   maps [B, L, G*G + 1, D]  per layer the aligned local map (cell y*G + x) then the global token
//   sel  [V, L + 3]          x, y, p_1..p_L, s
//   wc   [V, D + 1]          W[v] then the bias c_v
//   out  [B, V]
// Nothing of size [B, V, L, D] is ever stored: every pass samples the four bilinear taps of every
// layer on the fly. Accumulation is f32 whatever the storage type of the maps.
//
// The file is compiled at run time by NVRTC from a string embedded in the crate, after
// kernels/prelude.cuh (f16_t, bf16_t, to_f32, warp_sum), with no CUDA headers.

// The bilinear taps of `taps()` in readout.rs: half-pixel convention ix = ((x + 1)*G - 1)/2,
// zero padding outside the map (idx = -1). The coordinate arithmetic uses the _rn intrinsics so
// that no multiply-add is contracted: the floor() must see the same value as the CPU, or a point
// exactly on a cell boundary would pick different taps.
struct Taps {
    int idx[4];
    float w[4];
    float dwdx[4];
    float dwdy[4];
};

__device__ __forceinline__ void compute_taps(float x, float y, int g, Taps& t) {
    const float gf = (float)g;
    const float ix = __fmul_rn(__fadd_rn(__fmul_rn(__fadd_rn(x, 1.0f), gf), -1.0f), 0.5f);
    const float iy = __fmul_rn(__fadd_rn(__fmul_rn(__fadd_rn(y, 1.0f), gf), -1.0f), 0.5f);
    const float x0 = floorf(ix);
    const float y0 = floorf(iy);
    const float fx = ix - x0;
    const float fy = iy - y0;
    const float half = gf * 0.5f;
    const int xi = (int)x0;
    const int yi = (int)y0;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
        const int cx = xi + (k & 1);
        const int cy = yi + (k >> 1);
        t.idx[k] = (cx >= 0 && cy >= 0 && cx < g && cy < g) ? cy * g + cx : -1;
    }
    t.w[0] = (1.0f - fx) * (1.0f - fy);
    t.w[1] = fx * (1.0f - fy);
    t.w[2] = (1.0f - fx) * fy;
    t.w[3] = fx * fy;
    t.dwdx[0] = -(1.0f - fy) * half;
    t.dwdx[1] = (1.0f - fy) * half;
    t.dwdx[2] = -fy * half;
    t.dwdx[3] = fy * half;
    t.dwdy[0] = -(1.0f - fx) * half;
    t.dwdy[1] = -fx * half;
    t.dwdy[2] = (1.0f - fx) * half;
    t.dwdy[3] = fx * half;
}

// ---------------------------------------------------------------------------------------------
// Forward. One warp per voxel, lanes stride over D, images looped inside so that W[v] and the
// voxel's taps are read once per image from L1. Launch: block = 32*warps, grid = ceil(V/warps).
template <typename T>
__device__ __forceinline__ void readout_fwd_impl(const T* __restrict__ maps, const float* __restrict__ sel,
                                                 const float* __restrict__ wc, float* __restrict__ out, int B,
                                                 int L, int G, int D, int V) {
    const int lane = threadIdx.x & 31;
    const int v = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (v >= V) return;  // warp-uniform
    const int gg = G * G;
    const int cells = gg + 1;
    const float* sv = sel + (size_t)v * (L + 3);
    const float* w = wc + (size_t)v * (D + 1);
    Taps t;
    compute_taps(sv[0], sv[1], G, t);
    const float s = sv[2 + L];
    const float inv_d = 1.0f / (float)D;
    for (int b = 0; b < B; ++b) {
        float acc = 0.0f;
        for (int d = lane; d < D; d += 32) {
            float f = 0.0f;
            for (int l = 0; l < L; ++l) {
                const T* blk = maps + ((size_t)(b * L + l) * cells) * D + d;
                float loc = 0.0f;
#pragma unroll
                for (int k = 0; k < 4; ++k)
                    if (t.idx[k] >= 0) loc += t.w[k] * to_f32(blk[(size_t)t.idx[k] * D]);
                const float glob = to_f32(blk[(size_t)gg * D]);
                f += sv[2 + l] * ((1.0f - s) * loc + s * glob);
            }
            acc += w[d] * f;
        }
        acc = warp_sum(acc);
        if (lane == 0) out[(size_t)b * V + v] = acc * inv_d + w[D];
    }
}

extern "C" __global__ void readout_fwd_f32(const float* maps, const float* sel, const float* wc, float* out, int B,
                                           int L, int G, int D, int V) {
    readout_fwd_impl<float>(maps, sel, wc, out, B, L, G, D, V);
}
extern "C" __global__ void readout_fwd_f16(const f16_t* maps, const float* sel, const float* wc, float* out, int B,
                                           int L, int G, int D, int V) {
    readout_fwd_impl<f16_t>(maps, sel, wc, out, B, L, G, D, V);
}
extern "C" __global__ void readout_fwd_bf16(const bf16_t* maps, const float* sel, const float* wc, float* out, int B,
                                            int L, int G, int D, int V) {
    readout_fwd_impl<bf16_t>(maps, sel, wc, out, B, L, G, D, V);
}

// ---------------------------------------------------------------------------------------------
// Backward pass 1, over voxels: d sel [V, L+3] and d wc [V, D+1], everything that belongs to one
// voxel, so each warp writes only its own rows (no atomics, deterministic). One warp per voxel,
// lanes over D; the voxel's d W row is accumulated in shared memory (D floats per warp, each
// lane touching only its own d) because D is a run-time size.
// Launch: block = 32*warps, grid = ceil(V/warps), dynamic shared memory = warps*D*4 bytes.
extern "C" __global__ void readout_bwd_voxels(const float* __restrict__ maps, const float* __restrict__ sel,
                                              const float* __restrict__ wc, const float* __restrict__ go,
                                              float* __restrict__ dsel, float* __restrict__ dwc, int B, int L, int G,
                                              int D, int V) {
    extern __shared__ float smem[];
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int v = blockIdx.x * (blockDim.x >> 5) + warp;
    if (v >= V) return;  // warp-uniform; this kernel has no block-wide barrier
    float* dw = smem + (size_t)warp * D;
    for (int d = lane; d < D; d += 32) dw[d] = 0.0f;

    const int gg = G * G;
    const int cells = gg + 1;
    const int sw = L + 3;
    const float* sv = sel + (size_t)v * sw;
    const float* w = wc + (size_t)v * (D + 1);
    Taps t;
    compute_taps(sv[0], sv[1], G, t);
    const float s = sv[2 + L];
    const float inv_d = 1.0f / (float)D;

    float dx = 0.0f, dy = 0.0f, dscale = 0.0f;
    for (int l = 0; l < L; ++l) {
        const float p = sv[2 + l];
        float dp = 0.0f;
        for (int d = lane; d < D; d += 32) {
            const float wd = w[d];
            float dwd = 0.0f;
            for (int b = 0; b < B; ++b) {
                const float gob = go[(size_t)b * V + v] * inv_d;
                const float* blk = maps + ((size_t)(b * L + l) * cells) * D + d;
                float loc = 0.0f, lx = 0.0f, ly = 0.0f;
#pragma unroll
                for (int k = 0; k < 4; ++k) {
                    if (t.idx[k] >= 0) {
                        const float m = blk[(size_t)t.idx[k] * D];
                        loc += t.w[k] * m;
                        lx += t.dwdx[k] * m;
                        ly += t.dwdy[k] * m;
                    }
                }
                const float mg = blk[(size_t)gg * D];
                const float mix = (1.0f - s) * loc + s * mg;
                dwd += gob * mix;
                dp += gob * wd * mix;
                const float gpw = gob * p * wd;
                dscale += gpw * (mg - loc);
                dx += gpw * (1.0f - s) * lx;
                dy += gpw * (1.0f - s) * ly;
            }
            dw[d] += p * dwd;
        }
        dp = warp_sum(dp);
        if (lane == 0) dsel[(size_t)v * sw + 2 + l] = dp;
    }
    dx = warp_sum(dx);
    dy = warp_sum(dy);
    dscale = warp_sum(dscale);
    float* dwv = dwc + (size_t)v * (D + 1);
    for (int d = lane; d < D; d += 32) dwv[d] = dw[d];
    if (lane == 0) {
        float dc = 0.0f;
        for (int b = 0; b < B; ++b) dc += go[(size_t)b * V + v];
        dsel[(size_t)v * sw + 0] = dx;
        dsel[(size_t)v * sw + 1] = dy;
        dsel[(size_t)v * sw + 2 + L] = dscale;
        dwv[D] = dc;
    }
}

// ---------------------------------------------------------------------------------------------
// Backward pass 2, over images: d maps [B, L, G*G+1, D]. One block per (32-wide d tile, layer,
// image) owns that slice of d maps in shared memory, so nothing is written by two blocks and no
// global atomics are needed. Inside the block each local cell is owned by one warp (cell % warps)
// and each d by one lane, and voxels are visited in a fixed order (chunks of 32, taps k-major,
// lanes ascending), so the sums are bitwise deterministic. Each lane evaluates the taps of one
// voxel of the chunk; a ballot finds the taps that land in the warp's cells and the warp applies
// them one by one with shuffles. The global token, which every voxel touches, is split over
// warps by chunk (chunk % warps) and the per-warp partials are summed in warp order at the end.
// Launch: block = 32*warps, grid = (ceil(D/32), L, B),
// dynamic shared memory = (G*G + warps) * 32 * 4 bytes. Every element of d maps is written.
extern "C" __global__ void readout_bwd_maps(const float* __restrict__ sel, const float* __restrict__ wc,
                                            const float* __restrict__ go, float* __restrict__ dmaps, int B, int L,
                                            int G, int D, int V) {
    extern __shared__ float smem[];
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int nw = blockDim.x >> 5;
    const int d = blockIdx.x * 32 + lane;
    const int l = blockIdx.y;
    const int b = blockIdx.z;
    const bool dvalid = d < D;
    const int gg = G * G;
    const int cells = gg + 1;
    const int sw = L + 3;
    const float inv_d = 1.0f / (float)D;
    float* acc_local = smem;               // [gg][32]
    float* acc_global = smem + gg * 32;    // [nw][32]

    for (int i = threadIdx.x; i < gg * 32; i += blockDim.x) acc_local[i] = 0.0f;
    __syncthreads();

    float accg = 0.0f;
    const int chunks = (V + 31) / 32;
    for (int j = 0; j < chunks; ++j) {
        const int v = j * 32 + lane;
        int cell[4] = {-1, -1, -1, -1};
        float cf[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        float cg = 0.0f;
        if (v < V) {
            const float* sv = sel + (size_t)v * sw;
            Taps t;
            compute_taps(sv[0], sv[1], G, t);
            const float s = sv[2 + L];
            const float base = go[(size_t)b * V + v] * inv_d * sv[2 + l];
            cg = base * s;
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                cell[k] = t.idx[k];
                cf[k] = base * (1.0f - s) * t.w[k];
            }
        }
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            unsigned mask = __ballot_sync(FULL_MASK, cell[k] >= 0 && (cell[k] % nw) == warp);
            while (mask) {
                const int src = __ffs(mask) - 1;
                mask &= mask - 1;
                const int c = __shfl_sync(FULL_MASK, cell[k], src);
                const float f = __shfl_sync(FULL_MASK, cf[k], src);
                if (dvalid) acc_local[c * 32 + lane] += f * wc[(size_t)(j * 32 + src) * (D + 1) + d];
            }
        }
        if (j % nw == warp) {
            const int n = min(32, V - j * 32);
            for (int src = 0; src < 32; ++src) {
                const float f = __shfl_sync(FULL_MASK, cg, src);
                if (src < n && dvalid) accg += f * wc[(size_t)(j * 32 + src) * (D + 1) + d];
            }
        }
    }
    acc_global[warp * 32 + lane] = accg;
    __syncthreads();

    float* out = dmaps + ((size_t)(b * L + l) * cells) * D;
    for (int i = threadIdx.x; i < gg * 32; i += blockDim.x) {
        const int dd = blockIdx.x * 32 + (i & 31);
        if (dd < D) out[(size_t)(i >> 5) * D + dd] = acc_local[i];
    }
    if (warp == 0 && dvalid) {
        float sum = 0.0f;
        for (int w = 0; w < nw; ++w) sum += acc_global[w * 32 + lane];
        out[(size_t)gg * D + d] = sum;
    }
}
