// Device helpers shared by every kernel file. src/cuda/module.rs compiles each kernels/*.cu as
// this prelude followed by the file (with #line markers, so messages name the right file and
// line); .ci/ptx_check.sh and the CUDA emulator compile that same text. A kernel file therefore
// uses these without an #include and must not define them again.
//
// Self-contained on purpose: NVRTC compiles at run time with no CUDA headers (it does not ship
// cuda_fp16.h / cuda_bf16.h as built-ins), so the 16-bit loads convert raw bit patterns here.

#define FULL_MASK 0xffffffffu

// 16-bit storage types with the same layout as __half / __nv_bfloat16.
struct __align__(2) f16_t { unsigned short bits; };
struct __align__(2) bf16_t { unsigned short bits; };

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(f16_t h) {
    float f;
#if defined(FACTORTOPY_CUDA_EMU)
    // The CPU emulator (scripts/cuda-emu) cannot assemble PTX; its header widens the same bits
    // exactly, as cvt.f32.f16 does.
    f = __half2float(__ushort_as_half(h.bits));
#else
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h.bits));
#endif
    return f;
}
// bfloat16 is the top half of an f32, so widening is exact.
__device__ __forceinline__ float to_f32(bf16_t h) { return __uint_as_float(((unsigned)h.bits) << 16); }

// Sum of x over the 32 lanes of a warp (all lanes active), in a fixed butterfly order; every
// lane gets the total.
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(FULL_MASK, x, o);
    return x;
}
