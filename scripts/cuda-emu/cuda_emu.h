// factortopy's CUDA execution model for the CPU.
//
// With this header force-included (g++ -include cuda_emu.h), a CUDA kernel source such as
// kernels/*.cu compiles with the system g++ (C++20) into a shared object that the emulated driver
// (libcuda from driver.cpp) loads and launches. The emulated NVRTC (nvrtc.cpp) does exactly that
// with the source string a program hands it, so the emulator always runs the kernel text the
// crate embeds.
//
// What it models, and how:
//   - Every CUDA thread of a block is a fiber with its own stack (a guard page below it). The
//     scheduler runs each runnable fiber until it reaches a block barrier, a warp collective or
//     its end, then the next one: threads interleave only at those points, which is exactly where
//     CUDA promises anything about the order of memory operations between threads. The order in
//     which fibers (and blocks) are resumed is forward, reverse or seeded random
//     (FACTORTOPY_CUDA_EMU_ORDER), so code that is only right in one order fails in another.
//   - __syncthreads() is a real barrier of the block's non-exited threads.
//   - __shfl*_sync, __ballot_sync, __any/__all_sync, __match_any_sync and __syncwarp are real
//     exchanges among the lanes of a warp (32 consecutive linear thread ids): every lane named by
//     the mask must arrive; the call fails the launch when the mask omits the calling lane, names a
//     lane that does not exist or has exited, or when lanes of one mask disagree on the operation.
//     Reading a lane outside the mask gives all-ones bits (NaN for floats), as undefined as on a GPU.
//   - Blocks of a grid run in parallel on the driver's worker threads (one block per worker at a
//     time, its fibers all on that worker).
//   - __shared__ variables are thread_local to the worker, so each block has its own; `extern
//     __shared__` arrays are all aliases of one dynamic shared buffer (set up when the module is
//     linked). Both are filled with all-ones bytes (NaN) before each block, so reading shared
//     memory nobody wrote gives NaN instead of a lucky zero, and writes past the dynamic size the
//     launch asked for are caught by a canary.
//   - Floating point is IEEE single/double with no contraction of a*b+c into an FMA (compiled
//     with -ffp-contract=off), so the __f*_rn intrinsics are exact and results are those of an
//     unfused evaluation. f16/bf16 conversions round to nearest even.
//
// Not modelled (only a real GPU shows them): speed, the memory hierarchy and its limits beyond
// the dynamic shared size, true concurrency between the threads of a block (fibers interleave only
// at synchronisation points), the GPU's FMA contraction and fast-math approximations, inline PTX
// (a kernel needs one `#if defined(FACTORTOPY_CUDA_EMU)` around any asm), PTX/ptxas limits.
#ifndef FACTORTOPY_CUDA_EMU_H
#define FACTORTOPY_CUDA_EMU_H

#define FACTORTOPY_CUDA_EMU 1
#define __CUDACC__ 1
#define __CUDACC_RTC__ 1

#include "cuda_emu_abi.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <tuple>
#include <type_traits>
#include <utility>

// ---------------------------------------------------------------------------------------------
// Qualifiers and launch attributes.
#define __global__
#define __device__
#define __host__
#define __noinline__ __attribute__((noinline))
#define __forceinline__ inline __attribute__((always_inline))
#define __restrict__ __restrict
#define __align__(n) alignas(n)
#define __launch_bounds__(...)
#define __grid_constant__
#define __constant__
#define __managed__
// Block-scope thread_local is implicitly static, so `__shared__ float x[8];` is one array per
// worker thread (= per block), and `extern __shared__ float s[];` declares an extern thread-local
// array that the module's link step aliases to the dynamic shared buffer.
#define __shared__ thread_local

// ---------------------------------------------------------------------------------------------
// Vector types.
struct uint3 { unsigned x, y, z; };
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};
#define CUDA_EMU_VEC2(T, N, A) struct alignas(A) N { T x, y; }; \
    static inline N make_##N(T x, T y) { return N{x, y}; }
#define CUDA_EMU_VEC3(T, N) struct N { T x, y, z; }; \
    static inline N make_##N(T x, T y, T z) { return N{x, y, z}; }
#define CUDA_EMU_VEC4(T, N, A) struct alignas(A) N { T x, y, z, w; }; \
    static inline N make_##N(T x, T y, T z, T w) { return N{x, y, z, w}; }
CUDA_EMU_VEC2(int, int2, 8)
CUDA_EMU_VEC3(int, int3)
CUDA_EMU_VEC4(int, int4, 16)
CUDA_EMU_VEC2(unsigned, uint2, 8)
CUDA_EMU_VEC4(unsigned, uint4, 16)
CUDA_EMU_VEC2(float, float2, 8)
CUDA_EMU_VEC3(float, float3)
CUDA_EMU_VEC4(float, float4, 16)
CUDA_EMU_VEC2(double, double2, 16)
CUDA_EMU_VEC2(long long, longlong2, 16)
CUDA_EMU_VEC2(unsigned long long, ulonglong2, 16)
CUDA_EMU_VEC2(short, short2, 4)
CUDA_EMU_VEC2(unsigned short, ushort2, 4)
CUDA_EMU_VEC4(signed char, char4, 4)
CUDA_EMU_VEC4(unsigned char, uchar4, 4)
static inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return uint3{x, y, z}; }

constexpr int warpSize = 32;

// ---------------------------------------------------------------------------------------------
// The runtime: fibers, the block scheduler, barriers and warp collectives.
#pragma GCC visibility push(hidden)
namespace cuda_emu {

enum : int { RUNNABLE = 0, AT_BARRIER = 1, AT_WARP = 2, EXITED = 3 };
enum : int { OP_SHFL_IDX, OP_SHFL_UP, OP_SHFL_DOWN, OP_SHFL_XOR, OP_BALLOT, OP_ANY, OP_ALL, OP_SYNCWARP, OP_MATCH_ANY };

struct Fiber {
    void* sp;   // saved context; null until the fiber first runs
    int stack;  // the fiber stack it runs on, -1 before it starts
    uint3 tid;
    unsigned linear;
    int state;
    // The warp collective this lane waits in.
    int op;
    unsigned mask;
    int arg;
    int width;
    unsigned long long value;
    unsigned long long result;
    const char* opname;
    int bar_pred;
};

struct LaunchState;

struct Block {
    LaunchState* S;
    Fiber* f;
    unsigned n;
    unsigned alive;
    unsigned at_barrier;
    int bar_result;
    uint3 bid;
    uint3 bdim;
    uint3 gdim;
    unsigned nwarps;
    unsigned exists[32];   // per warp: lanes that exist (32 per warp but the last)
    unsigned exited[32];   // per warp: lanes that have returned
    unsigned waiting[32];  // per warp: lanes waiting in a collective
    void* sched_sp;
    unsigned pos;          // position in the current pass of the scheduler (UINT_MAX: before the first)
    Fiber* exiting;        // a fiber that has just returned; the scheduler frees its stack
    bool failed;
    char msg[1536];
    unsigned long long rng;
};

// Everything the runtime keeps per worker thread, behind the one thread_local pointer.
struct Rt {
    Fiber* cur;
    Block blk;
    Fiber* fibers;
    unsigned fibers_cap;
    char* stacks;
    unsigned stacks_n;
    int* free_stacks;
    unsigned n_free;
    unsigned* perm;
    unsigned char* tls_lo;
    size_t tls_size;
    int tls_state;  // 0 unknown, 1 known, -1 not found
    int order;
    bool in_block;
};

// (Not initial-exec: that would put the module's whole TLS segment, dynamic shared buffer
// included, into the static TLS area, which is too small for it.)
extern thread_local Rt* g_rt;

inline Rt& rt() { return *g_rt; }

[[noreturn]] void fail_and_leave(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void block_current(Rt& r);
unsigned long long complete_collective(Block& b, unsigned w, int op, unsigned mask, unsigned lane, const char* name);
[[noreturn]] void collective_misuse(int op, const char* name, unsigned mask, int width);

inline const char* lane_state_name(int s) {
    switch (s) {
        case RUNNABLE: return "running";
        case AT_BARRIER: return "waiting in __syncthreads";
        case AT_WARP: return "waiting in a warp collective";
        default: return "exited";
    }
}

inline bool bad_width(int op, int width) {
    return (op == OP_SHFL_IDX || op == OP_SHFL_UP || op == OP_SHFL_DOWN || op == OP_SHFL_XOR) &&
           (width < 1 || width > 32 || (width & (width - 1)));
}

// A warp collective: record this lane's part; the last lane named by the mask to arrive does the
// exchange for all of them, everyone else waits until then.
inline unsigned long long collective(int op, const char* name, unsigned mask, unsigned long long value, int arg,
                                     int width) {
    Rt& r = rt();
    Block& b = r.blk;
    Fiber* me = r.cur;
    const unsigned lane = me->linear & 31u, w = me->linear >> 5;
    if (__builtin_expect(!((mask >> lane) & 1u) || (mask & ~b.exists[w]) || (mask & b.exited[w]) || bad_width(op, width), 0))
        collective_misuse(op, name, mask, width);
    me->op = op;
    me->opname = name;
    me->mask = mask;
    me->value = value;
    me->arg = arg;
    me->width = width;
    me->state = AT_WARP;
    b.waiting[w] |= 1u << lane;
    if ((b.waiting[w] & mask) == mask) return complete_collective(b, w, op, mask, lane, name);
    block_current(r);
    return me->result;
}

inline int barrier(int pred) {
    Rt& r = rt();
    Block& b = r.blk;
    r.cur->state = AT_BARRIER;
    r.cur->bar_pred = pred;
    if (++b.at_barrier == b.alive) {
        int count = 0;
        for (unsigned i = 0; i < b.n; ++i)
            if (b.f[i].state == AT_BARRIER) {
                count += b.f[i].bar_pred != 0;
                b.f[i].state = RUNNABLE;
            }
        b.at_barrier = 0;
        b.bar_result = count;
        return count;
    }
    block_current(r);
    return b.bar_result;
}

template <class T>
inline unsigned long long to_bits(T v) {
    static_assert(sizeof(T) <= 8, "warp exchanges move at most 8 bytes");
    unsigned long long u = 0;
    memcpy(&u, &v, sizeof(T));
    return u;
}
template <class T>
inline T from_bits(unsigned long long u) {
    T v;
    memcpy(&v, &u, sizeof(T));
    return v;
}

// ---- f16 / bf16 bit conversions (round to nearest even), bit-identical to the `half` crate.
inline unsigned short f32_to_f16_rn(float f) {
    unsigned x;
    memcpy(&x, &f, 4);
    const unsigned sign = x & 0x80000000u, exp = x & 0x7F800000u, man = x & 0x007FFFFFu;
    const unsigned hs = sign >> 16;
    if (exp == 0x7F800000u) return (unsigned short)(hs | 0x7C00u | (man ? 0x0200u : 0u) | (man >> 13));
    const int half_exp = (int)(exp >> 23) - 127 + 15;
    if (half_exp >= 0x1F) return (unsigned short)(hs | 0x7C00u);
    if (half_exp <= 0) {
        if (14 - half_exp > 24) return (unsigned short)hs;
        const unsigned m = man | 0x00800000u;
        unsigned hm = m >> (14 - half_exp);
        const unsigned round_bit = 1u << (13 - half_exp);
        if ((m & round_bit) && (m & (3u * round_bit - 1u))) ++hm;
        return (unsigned short)(hs | hm);
    }
    const unsigned h = hs | ((unsigned)half_exp << 10) | (man >> 13);
    const unsigned round_bit = 0x00001000u;
    return (unsigned short)(((man & round_bit) && (man & (3u * round_bit - 1u))) ? h + 1 : h);
}
inline float f16_to_f32(unsigned short h) {
    const unsigned sign = ((unsigned)h & 0x8000u) << 16, exp = ((unsigned)h >> 10) & 0x1Fu;
    unsigned man = (unsigned)h & 0x3FFu, x;
    if (exp == 0x1F) {
        x = sign | 0x7F800000u | (man << 13);
    } else if (exp == 0) {
        if (man == 0) {
            x = sign;
        } else {
            int e = -1;
            do {
                ++e;
                man <<= 1;
            } while (!(man & 0x400u));
            x = sign | ((unsigned)(127 - 15 - e) << 23) | ((man & 0x3FFu) << 13);
        }
    } else {
        x = sign | ((exp + 112u) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}
inline unsigned short f32_to_bf16_rn(float f) {
    unsigned x;
    memcpy(&x, &f, 4);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return (unsigned short)((x >> 16) | 0x0040u);
    const unsigned round_bit = 0x00008000u;
    return (unsigned short)(((x & round_bit) && (x & (3u * round_bit - 1u))) ? (x >> 16) + 1 : (x >> 16));
}
inline float bf16_to_f32(unsigned short h) {
    const unsigned x = (unsigned)h << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

// ---- Launch.
struct LaunchState {
    cuda_emu_launch* L;
    void (*invoke)(const void*);
    const void* ctx;
    unsigned nblocks;
    unsigned* block_order;  // index -> linear block id, or null for the identity
    std::atomic<int> failed;
    std::atomic<int> reported;
};

void run_block(void* arg, unsigned index);
void report(LaunchState* S, int status, const char* msg);

template <class T>
inline T load_param(void* p) {
    T v;
    memcpy((void*)&v, p, sizeof(T));
    return v;
}

template <class K, class Tup>
struct Invoker {
    K k;
    Tup args;
    static void call(const void* self) {
        const Invoker* s = static_cast<const Invoker*>(self);
        std::apply(s->k, s->args);
    }
};

template <class T>
inline bool check_pointer_param(cuda_emu_launch* L, int i, const T& v) {
    if constexpr (std::is_pointer_v<T>) {
        if (v != nullptr && !L->svc->is_device_range((const void*)v, 0)) {
            snprintf(L->message, sizeof L->message,
                     "kernel %s: argument %d is the pointer %p, which is not in any device allocation (a host pointer or "
                     "a freed buffer would fault on a GPU)",
                     L->kernel, i, (const void*)v);
            L->status = 700;  // CUDA_ERROR_ILLEGAL_ADDRESS
            return false;
        }
    }
    return true;
}

int prepare_launch(LaunchState& S);
void finish_launch(LaunchState& S);

template <class... A, size_t... I>
inline int launch_impl(cuda_emu_launch* L, void (*k)(A...), std::index_sequence<I...>) {
    using Tup = std::tuple<std::remove_cv_t<A>...>;
    using Inv = Invoker<void (*)(A...), Tup>;
    Inv inv{k, Tup{load_param<std::remove_cv_t<A>>(L->params[I])...}};
    bool ok = true;
    ((ok = ok && check_pointer_param(L, (int)I, std::get<I>(inv.args))), ...);
    if (!ok) return L->status;
    LaunchState S;
    S.L = L;
    S.invoke = &Inv::call;
    S.ctx = &inv;
    S.block_order = nullptr;
    S.failed.store(0);
    S.reported.store(0);
    if (prepare_launch(S) != 0) return L->status;
    L->svc->parallel_for(S.nblocks, &run_block, &S);
    finish_launch(S);
    return L->status;
}

template <class... A>
inline int launch(cuda_emu_launch* L, void (*k)(A...)) {
    if (L->abi != CUDA_EMU_ABI) {
        snprintf(L->message, sizeof L->message, "module ABI %d, driver ABI %d", CUDA_EMU_ABI, L->abi);
        return L->status = 222;  // CUDA_ERROR_UNSUPPORTED_PTX_VERSION
    }
    return launch_impl(L, k, std::index_sequence_for<A...>{});
}

template <class... A>
inline int param_sizes(void (*)(A...), size_t* sizes, int cap) {
    const size_t s[] = {sizeof(A)..., 0};
    for (int i = 0; i < (int)sizeof...(A) && i < cap; ++i) sizes[i] = s[i];
    return (int)sizeof...(A);
}

}  // namespace cuda_emu
#pragma GCC visibility pop

// ---------------------------------------------------------------------------------------------
// Built-in variables.
#define threadIdx (static_cast<const uint3&>(::cuda_emu::g_rt->cur->tid))
#define blockIdx (static_cast<const uint3&>(::cuda_emu::g_rt->blk.bid))
#define blockDim (static_cast<const uint3&>(::cuda_emu::g_rt->blk.bdim))
#define gridDim (static_cast<const uint3&>(::cuda_emu::g_rt->blk.gdim))

// ---------------------------------------------------------------------------------------------
// Synchronisation and warp intrinsics.
static inline void __syncthreads() { ::cuda_emu::barrier(0); }
static inline int __syncthreads_count(int p) { return ::cuda_emu::barrier(p); }
static inline int __syncthreads_and(int p) {
    const int c = ::cuda_emu::barrier(p != 0);
    return c == (int)::cuda_emu::g_rt->blk.alive;
}
static inline int __syncthreads_or(int p) { return ::cuda_emu::barrier(p != 0) > 0; }
static inline void __syncwarp(unsigned mask = 0xffffffffu) {
    ::cuda_emu::collective(::cuda_emu::OP_SYNCWARP, "__syncwarp", mask, 0, 0, 32);
}
template <class T>
static inline T __shfl_sync(unsigned mask, T var, int src, int width = 32) {
    return ::cuda_emu::from_bits<T>(
        ::cuda_emu::collective(::cuda_emu::OP_SHFL_IDX, "__shfl_sync", mask, ::cuda_emu::to_bits(var), src, width));
}
template <class T>
static inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32) {
    return ::cuda_emu::from_bits<T>(::cuda_emu::collective(::cuda_emu::OP_SHFL_UP, "__shfl_up_sync", mask,
                                                           ::cuda_emu::to_bits(var), (int)delta, width));
}
template <class T>
static inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32) {
    return ::cuda_emu::from_bits<T>(::cuda_emu::collective(::cuda_emu::OP_SHFL_DOWN, "__shfl_down_sync", mask,
                                                           ::cuda_emu::to_bits(var), (int)delta, width));
}
template <class T>
static inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32) {
    return ::cuda_emu::from_bits<T>(::cuda_emu::collective(::cuda_emu::OP_SHFL_XOR, "__shfl_xor_sync", mask,
                                                           ::cuda_emu::to_bits(var), lane_mask, width));
}
static inline unsigned __ballot_sync(unsigned mask, int pred) {
    return (unsigned)::cuda_emu::collective(::cuda_emu::OP_BALLOT, "__ballot_sync", mask, pred != 0, 0, 32);
}
static inline int __any_sync(unsigned mask, int pred) {
    return (int)::cuda_emu::collective(::cuda_emu::OP_ANY, "__any_sync", mask, pred != 0, 0, 32);
}
static inline int __all_sync(unsigned mask, int pred) {
    return (int)::cuda_emu::collective(::cuda_emu::OP_ALL, "__all_sync", mask, pred != 0, 0, 32);
}
template <class T>
static inline unsigned __match_any_sync(unsigned mask, T value) {
    return (unsigned)::cuda_emu::collective(::cuda_emu::OP_MATCH_ANY, "__match_any_sync", mask,
                                            ::cuda_emu::to_bits(value), 0, 32);
}
// The lanes of the caller's warp that have not exited (on a GPU: those converged with it).
static inline unsigned __activemask() {
    const auto& b = ::cuda_emu::g_rt->blk;
    const unsigned w = ::cuda_emu::g_rt->cur->linear >> 5;
    return b.exists[w] & ~b.exited[w];
}
static inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
static inline void __threadfence_block() { std::atomic_signal_fence(std::memory_order_seq_cst); }
static inline void __threadfence_system() { std::atomic_thread_fence(std::memory_order_seq_cst); }
static inline void __nanosleep(unsigned) {}
[[noreturn]] static inline void __trap() { ::cuda_emu::fail_and_leave("__trap() called"); }
[[noreturn]] static inline void __brkpt() { ::cuda_emu::fail_and_leave("__brkpt() called"); }
#if defined(__x86_64__)
static inline long long clock64() { return (long long)__builtin_ia32_rdtsc(); }
#else
static inline long long clock64() { return 0; }
#endif

// ---------------------------------------------------------------------------------------------
// Integer and bit intrinsics.
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
static inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
static inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
static inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
static inline double min(double a, double b) { return fmin(a, b); }
static inline double max(double a, double b) { return fmax(a, b); }
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
static inline int __clzll(long long x) { return x ? __builtin_clzll((unsigned long long)x) : 64; }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline int __ffsll(long long x) { return __builtin_ffsll(x); }
static inline unsigned __brev(unsigned x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0F0F0F0Fu) | ((x & 0x0F0F0F0Fu) << 4);
    return __builtin_bswap32(x);
}
static inline int __mulhi(int a, int b) { return (int)(((long long)a * b) >> 32); }
static inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
static inline float __int_as_float(int x) { return ::cuda_emu::from_bits<float>((unsigned)x); }
static inline int __float_as_int(float x) { return (int)(unsigned)::cuda_emu::to_bits(x); }
static inline float __uint_as_float(unsigned x) { return ::cuda_emu::from_bits<float>(x); }
static inline unsigned __float_as_uint(float x) { return (unsigned)::cuda_emu::to_bits(x); }
static inline double __longlong_as_double(long long x) { return ::cuda_emu::from_bits<double>((unsigned long long)x); }
static inline long long __double_as_longlong(double x) { return (long long)::cuda_emu::to_bits(x); }

// ---------------------------------------------------------------------------------------------
// Floating-point intrinsics. -ffp-contract=off makes every expression below one IEEE operation.
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __frcp_rn(float a) { return 1.0f / a; }
static inline float __fsqrt_rn(float a) { return sqrtf(a); }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline double __dsub_rn(double a, double b) { return a - b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline double __ddiv_rn(double a, double b) { return a / b; }
static inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
static inline float __fdividef(float a, float b) { return a / b; }
// __expf, __logf, __log2f, __sinf, __cosf, __tanf and __powf are glibc's own (accurate) functions.
static inline float __saturatef(float x) { return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f; }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
static inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
static inline int __float2int_rz(float x) { return (int)x; }
static inline int __float2int_rd(float x) { return (int)floorf(x); }
static inline int __float2int_ru(float x) { return (int)ceilf(x); }
static inline unsigned __float2uint_rn(float x) { return (unsigned)nearbyintf(x); }
static inline long long __float2ll_rn(float x) { return (long long)nearbyintf(x); }
static inline float __int2float_rn(int x) { return (float)x; }
static inline float __uint2float_rn(unsigned x) { return (float)x; }
static inline float __double2float_rn(double x) { return (float)x; }

// ---------------------------------------------------------------------------------------------
// 16-bit floats, with the cuda_fp16.h / cuda_bf16.h names for the conversions.
struct __align__(2) __half { unsigned short __x; };
struct __align__(2) __nv_bfloat16 { unsigned short __x; };
static inline __half __float2half_rn(float f) { return __half{::cuda_emu::f32_to_f16_rn(f)}; }
static inline __half __float2half(float f) { return __float2half_rn(f); }
static inline float __half2float(__half h) { return ::cuda_emu::f16_to_f32(h.__x); }
static inline __half __ushort_as_half(unsigned short x) { return __half{x}; }
static inline unsigned short __half_as_ushort(__half h) { return h.__x; }
static inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16{::cuda_emu::f32_to_bf16_rn(f)}; }
static inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
static inline float __bfloat162float(__nv_bfloat16 h) { return ::cuda_emu::bf16_to_f32(h.__x); }
static inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short x) { return __nv_bfloat16{x}; }
static inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.__x; }

// ---------------------------------------------------------------------------------------------
// Atomics (blocks run in parallel on worker threads, so these are real atomics).
#define CUDA_EMU_ATOMIC_RMW(NAME, T, BUILTIN) \
    static inline T NAME(T* p, T v) { return BUILTIN(p, v, __ATOMIC_SEQ_CST); }
CUDA_EMU_ATOMIC_RMW(atomicAdd, int, __atomic_fetch_add)
CUDA_EMU_ATOMIC_RMW(atomicAdd, unsigned, __atomic_fetch_add)
CUDA_EMU_ATOMIC_RMW(atomicAdd, unsigned long long, __atomic_fetch_add)
CUDA_EMU_ATOMIC_RMW(atomicSub, int, __atomic_fetch_sub)
CUDA_EMU_ATOMIC_RMW(atomicSub, unsigned, __atomic_fetch_sub)
CUDA_EMU_ATOMIC_RMW(atomicAnd, int, __atomic_fetch_and)
CUDA_EMU_ATOMIC_RMW(atomicAnd, unsigned, __atomic_fetch_and)
CUDA_EMU_ATOMIC_RMW(atomicAnd, unsigned long long, __atomic_fetch_and)
CUDA_EMU_ATOMIC_RMW(atomicOr, int, __atomic_fetch_or)
CUDA_EMU_ATOMIC_RMW(atomicOr, unsigned, __atomic_fetch_or)
CUDA_EMU_ATOMIC_RMW(atomicOr, unsigned long long, __atomic_fetch_or)
CUDA_EMU_ATOMIC_RMW(atomicXor, int, __atomic_fetch_xor)
CUDA_EMU_ATOMIC_RMW(atomicXor, unsigned, __atomic_fetch_xor)
CUDA_EMU_ATOMIC_RMW(atomicXor, unsigned long long, __atomic_fetch_xor)
CUDA_EMU_ATOMIC_RMW(atomicExch, int, __atomic_exchange_n)
CUDA_EMU_ATOMIC_RMW(atomicExch, unsigned, __atomic_exchange_n)
CUDA_EMU_ATOMIC_RMW(atomicExch, unsigned long long, __atomic_exchange_n)
#undef CUDA_EMU_ATOMIC_RMW
template <class T, class F>
static inline T cuda_emu_atomic_update(T* p, F f) {
    T old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
    while (!__atomic_compare_exchange_n(p, &old, f(old), false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    }
    return old;
}
static inline float atomicAdd(float* p, float v) {
    unsigned* u = reinterpret_cast<unsigned*>(p);
    return __uint_as_float(cuda_emu_atomic_update(u, [v](unsigned o) { return __float_as_uint(__uint_as_float(o) + v); }));
}
static inline double atomicAdd(double* p, double v) {
    unsigned long long* u = reinterpret_cast<unsigned long long*>(p);
    return __longlong_as_double((long long)cuda_emu_atomic_update(
        u, [v](unsigned long long o) { return (unsigned long long)__double_as_longlong(__longlong_as_double((long long)o) + v); }));
}
static inline float atomicExch(float* p, float v) {
    return __uint_as_float(__atomic_exchange_n(reinterpret_cast<unsigned*>(p), __float_as_uint(v), __ATOMIC_SEQ_CST));
}
#define CUDA_EMU_ATOMIC_MINMAX(T) \
    static inline T atomicMin(T* p, T v) { return cuda_emu_atomic_update(p, [v](T o) { return o < v ? o : v; }); } \
    static inline T atomicMax(T* p, T v) { return cuda_emu_atomic_update(p, [v](T o) { return o > v ? o : v; }); }
CUDA_EMU_ATOMIC_MINMAX(int)
CUDA_EMU_ATOMIC_MINMAX(unsigned)
CUDA_EMU_ATOMIC_MINMAX(long long)
CUDA_EMU_ATOMIC_MINMAX(unsigned long long)
#undef CUDA_EMU_ATOMIC_MINMAX
static inline unsigned atomicInc(unsigned* p, unsigned v) {
    return cuda_emu_atomic_update(p, [v](unsigned o) { return o >= v ? 0u : o + 1; });
}
static inline unsigned atomicDec(unsigned* p, unsigned v) {
    return cuda_emu_atomic_update(p, [v](unsigned o) { return (o == 0 || o > v) ? v : o - 1; });
}
template <class T>
static inline T atomicCAS(T* p, T compare, T v) {
    __atomic_compare_exchange_n(p, &compare, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return compare;
}

// Plain loads and stores under their cache-hint names.
template <class T> static inline T __ldg(const T* p) { return *p; }
template <class T> static inline T __ldcg(const T* p) { return *p; }
template <class T> static inline T __ldcs(const T* p) { return *p; }
template <class T> static inline T __ldlu(const T* p) { return *p; }
template <class T> static inline void __stcg(T* p, T v) { *p = v; }
template <class T> static inline void __stcs(T* p, T v) { *p = v; }
template <class T> static inline void __stwt(T* p, T v) { *p = v; }

// A kernel module ends with one CUDA_EMU_KERNEL(name) per __global__ function (the emulated
// NVRTC appends them); each exports the launcher and the parameter sizes of that kernel.
#define CUDA_EMU_KERNEL(name)                                                                          \
    extern "C" __attribute__((visibility("default"))) int cuda_emu_kernel_##name(cuda_emu_launch* L) {  \
        return ::cuda_emu::launch(L, &name);                                                           \
    }                                                                                                  \
    extern "C" __attribute__((visibility("default"))) int cuda_emu_params_##name(size_t* sizes, int cap) { \
        return ::cuda_emu::param_sizes(&name, sizes, cap);                                             \
    }

#ifndef CUDA_EMU_NO_RUNTIME
#include "cuda_emu_runtime.h"
#endif

#endif
