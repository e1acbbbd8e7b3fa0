// The selector heads of DESIGN §3.3 ("selector softmax"), forward and backward, together with
// the warm-up regulariser of §3.5. Operands use the packed layout of the fused readout's `sel`:
//   raw  [V, L + 3]  MLP outputs: space (2), layer logits (L), scale (1)
//   sel  [V, L + 3]  tanh(space), softmax(layer), sigmoid(scale)
// Keeping raw in the same layout lets the three last MLP layers write straight into it (one
// column offset each) and the backward hand d raw straight back to them.
//
// R = mean_v Σ_l p·log(p + 1e-8)/log L + mean_v (s − 0.5)²   (entropy term only when L ≥ 2),
// as src/model/loss.rs. The forward writes each voxel's term; the mean is a deterministic
// reduction done by elementwise.cu.
//
// Compiled by NVRTC at run time after kernels/prelude.cuh, with no CUDA headers.

// One thread per voxel: L is small (tens) and the rows are short, so a per-voxel loop beats any
// cross-thread scheme. Launch: block 256, grid ceil(V/256).
extern "C" __global__ void heads_fwd(const float* __restrict__ raw, float* __restrict__ sel,
                                     float* __restrict__ reg, int V, int L) {
    const int v = blockIdx.x * blockDim.x + threadIdx.x;
    if (v >= V) return;
    const int sw = L + 3;
    const float* r = raw + (size_t)v * sw;
    float* o = sel + (size_t)v * sw;
    o[0] = tanhf(r[0]);
    o[1] = tanhf(r[1]);

    float mx = r[2];
    for (int l = 1; l < L; ++l) mx = fmaxf(mx, r[2 + l]);
    float z = 0.0f;
    for (int l = 0; l < L; ++l) z += expf(r[2 + l] - mx);
    const float inv_z = 1.0f / z;
    float negent = 0.0f;
    for (int l = 0; l < L; ++l) {
        const float p = expf(r[2 + l] - mx) * inv_z;
        o[2 + l] = p;
        negent += p * logf(p + 1e-8f);
    }
    const float s = 1.0f / (1.0f + expf(-r[2 + L]));
    o[2 + L] = s;
    const float spread = (s - 0.5f) * (s - 0.5f);
    reg[v] = (L >= 2 ? negent / logf((float)L) : 0.0f) + spread;
}

// d raw from d sel (the readout's gradient, already scaled for the mean loss) plus reg_weight
// times the gradient of R. reg_weight = λ·max(0, 1 − step/T) is passed by the host per step;
// with reg_weight = 0 this is the plain backward of the heads.
// Launch: block 256, grid ceil(V/256).
extern "C" __global__ void heads_bwd(const float* __restrict__ sel, const float* __restrict__ dsel,
                                     float* __restrict__ draw, int V, int L, float reg_weight) {
    const int v = blockIdx.x * blockDim.x + threadIdx.x;
    if (v >= V) return;
    const int sw = L + 3;
    const float* o = sel + (size_t)v * sw;
    const float* g = dsel + (size_t)v * sw;
    float* dr = draw + (size_t)v * sw;

    dr[0] = g[0] * (1.0f - o[0] * o[0]);
    dr[1] = g[1] * (1.0f - o[1] * o[1]);

    // d/dp [p·log(p + ε)] = log(p + ε) + p/(p + ε), scaled by the mean over V and 1/log L.
    const float ent_scale = L >= 2 ? reg_weight / (logf((float)L) * (float)V) : 0.0f;
    float dot = 0.0f;
    for (int l = 0; l < L; ++l) {
        const float p = o[2 + l];
        const float gp = g[2 + l] + ent_scale * (logf(p + 1e-8f) + p / (p + 1e-8f));
        dot += p * gp;
    }
    // Softmax backward: p_l·(g_l − Σ_k p_k g_k). g_l is recomputed rather than stored: L is
    // run-time and a local array would spill.
    for (int l = 0; l < L; ++l) {
        const float p = o[2 + l];
        const float gp = g[2 + l] + ent_scale * (logf(p + 1e-8f) + p / (p + 1e-8f));
        dr[2 + l] = p * (gp - dot);
    }
    const float s = o[2 + L];
    const float gs = g[2 + L] + reg_weight * 2.0f * (s - 0.5f) / (float)V;
    dr[2 + L] = gs * s * (1.0f - s);
}
