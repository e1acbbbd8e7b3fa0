// The non-template part of the execution model of cuda_emu.h: fibers, the block scheduler,
// shared-memory poisoning and the module's exported entry points. Included once, at the end of
// cuda_emu.h, into the one translation unit of a kernel module.
#ifndef FACTORTOPY_CUDA_EMU_RUNTIME_H
#define FACTORTOPY_CUDA_EMU_RUNTIME_H

#include <dlfcn.h>
#include <link.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <unistd.h>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

// The dynamic shared buffer; defined (with every `extern __shared__` name as an alias of it) by the
// second translation unit the emulated NVRTC generates when it links the module.
extern "C" __attribute__((visibility("hidden"))) thread_local unsigned char
    cuda_emu_dynamic_shared[CUDA_EMU_MAX_DYNAMIC_SHARED + CUDA_EMU_SHARED_CANARY];

#pragma GCC visibility push(hidden)

#if defined(__x86_64__)
// switch_to(save, to): saves the callee-saved registers on the current stack, stores the stack
// pointer in *save and resumes the context saved at `to`. (Kernels cannot change the rounding
// mode, so MXCSR and the x87 control word need no saving.)
extern "C" void cuda_emu_switch(void** save, void* to);
__asm__(
    ".text\n"
    ".p2align 4\n"
    ".globl cuda_emu_switch\n"
    ".hidden cuda_emu_switch\n"
    ".type cuda_emu_switch, @function\n"
    "cuda_emu_switch:\n"
    "    pushq %rbp\n"
    "    pushq %rbx\n"
    "    pushq %r12\n"
    "    pushq %r13\n"
    "    pushq %r14\n"
    "    pushq %r15\n"
    "    movq %rsp, (%rdi)\n"
    "    movq %rsi, %rsp\n"
    "    popq %r15\n"
    "    popq %r14\n"
    "    popq %r13\n"
    "    popq %r12\n"
    "    popq %rbx\n"
    "    popq %rbp\n"
    "    ret\n"
    ".size cuda_emu_switch, .-cuda_emu_switch\n");
#endif

namespace cuda_emu {

thread_local Rt* g_rt = nullptr;

static const size_t kStackSize = 64 * 1024;

static size_t page_size() {
    static const size_t p = (size_t)sysconf(_SC_PAGESIZE);
    return p;
}

#if defined(__x86_64__)
static inline void switch_to(void** save, void* to) { cuda_emu_switch(save, to); }
#else
// Portable fallback: the saved "stack pointer" is a ucontext_t.
static inline void switch_to(void** save, void* to) {
    ucontext_t here;
    *save = &here;
    swapcontext(&here, static_cast<ucontext_t*>(to));
}
#endif

static void fiber_main();

// Fiber stacks: one mapping per worker with room for a block's threads, each stack with a
// PROT_NONE guard page below it. A fiber takes a stack when it first runs and gives it back
// when it returns, so threads that never wait run one after another on the same warm stack.
static bool ensure_stacks(Rt& r, unsigned n) {
    if (r.stacks_n >= n) return true;
    const size_t ps = page_size();
    const size_t one = kStackSize + ps;
    if (r.stacks) munmap(r.stacks, one * r.stacks_n);
    free(r.free_stacks);
    r.stacks = nullptr;
    r.stacks_n = 0;
    r.free_stacks = static_cast<int*>(malloc(sizeof(int) * n));
    if (!r.free_stacks) return false;
    void* p = mmap(nullptr, one * n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return false;
    r.stacks = static_cast<char*>(p);
    for (unsigned i = 0; i < n; ++i) mprotect(r.stacks + i * one, ps, PROT_NONE);
    r.stacks_n = n;
    return true;
}

static void init_fiber_stack(Rt& r, Fiber& f, int i) {
    const size_t one = kStackSize + page_size();
    char* lo = r.stacks + (size_t)i * one + page_size();
    char* top = lo + kStackSize;
    f.stack = i;
#if defined(__x86_64__)
    // The frame cuda_emu_switch pops: [r15 r14 r13 r12 rbx rbp][return address = fiber_main], so
    // that fiber_main starts with the stack aligned as after a call.
    uintptr_t t = (uintptr_t)top & ~(uintptr_t)15;
    uint64_t* sp = reinterpret_cast<uint64_t*>(t - 64);
    memset(sp, 0, 64);
    sp[6] = (uint64_t)(uintptr_t)&fiber_main;
    f.sp = sp;
#else
    ucontext_t* uc = reinterpret_cast<ucontext_t*>(((uintptr_t)top - sizeof(ucontext_t)) & ~(uintptr_t)63);
    getcontext(uc);
    uc->uc_stack.ss_sp = lo;
    uc->uc_stack.ss_size = (size_t)((char*)uc - lo) - 64;
    uc->uc_link = nullptr;
    makecontext(uc, (void (*)())fiber_main, 0);
    f.sp = uc;
#endif
}

static unsigned long long splitmix(unsigned long long& s) {
    unsigned long long z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// The scheduler works in passes: each pass visits every fiber once, in the launch's order
// (forward, reverse, or a fresh random permutation per pass), and resumes the runnable ones, each
// until it waits or returns. A waiting fiber hands over directly to the next runnable one.
static void new_pass(Rt& r) {
    Block& b = r.blk;
    if (r.order == CUDA_EMU_ORDER_RANDOM)
        for (unsigned i = b.n; i > 1; --i) std::swap(r.perm[i - 1], r.perm[splitmix(b.rng) % i]);
    b.pos = ~0u;
}

static Fiber* pick_next(Rt& r) {
    Block& b = r.blk;
    for (int round = 0; round < 2; ++round) {
        for (unsigned k = b.pos + 1; k < b.n; ++k) {
            Fiber* f = &r.fibers[r.perm[k]];
            if (f->state == RUNNABLE) {
                b.pos = k;
                return f;
            }
        }
        new_pass(r);
    }
    return nullptr;
}

// Saves the current context in *save and resumes `next`, starting it on a free stack if it has
// not run yet.
static void resume(Rt& r, void** save, Fiber* next) {
    if (next->stack < 0) init_fiber_stack(r, *next, r.free_stacks[--r.n_free]);
    r.cur = next;
    switch_to(save, next->sp);
}

// The current fiber waits (barrier or collective): run the next runnable fiber, or go back to the
// scheduler when there is none (a deadlock).
void block_current(Rt& r) {
    Fiber* me = r.cur;
    Fiber* next = pick_next(r);
    if (next)
        resume(r, &me->sp, next);
    else
        switch_to(&me->sp, r.blk.sched_sp);
}

// The current thread has returned: it no longer waits for anything and stops counting towards
// barriers.
static void mark_exited(Block& b, Fiber* me) {
    me->state = EXITED;
    b.exited[me->linear >> 5] |= 1u << (me->linear & 31u);
    --b.alive;
    if (b.at_barrier > 0 && b.at_barrier == b.alive) {
        // The threads still running all wait at the barrier: release them.
        int count = 0;
        for (unsigned i = 0; i < b.n; ++i)
            if (b.f[i].state == AT_BARRIER) {
                count += b.f[i].bar_pred != 0;
                b.f[i].state = RUNNABLE;
            }
        b.at_barrier = 0;
        b.bar_result = count;
    }
}

// Every fiber starts here. When its thread returns, the next runnable thread that has not started
// yet runs right here, on the same stack (no switch: threads that never wait cost a call each);
// one that is already under way is resumed directly, this stack going back to the free list; and
// when nothing can run, the scheduler decides (all done, or a deadlock).
static void fiber_main() {
    Rt& r = rt();
    Block& b = r.blk;
    for (;;) {
        b.S->invoke(b.S->ctx);
        Fiber* me = r.cur;
        mark_exited(b, me);
        Fiber* next = pick_next(r);
        if (next && next->stack < 0) {
            next->stack = me->stack;
            me->stack = -1;
            r.cur = next;
            continue;
        }
        if (next) {
            // Switching away for good: the stack may be reused by whoever starts next, after
            // this switch has written its last bytes on it.
            r.free_stacks[r.n_free++] = me->stack;
            me->stack = -1;
            r.cur = next;
            void* dead;
            switch_to(&dead, next->sp);
        } else {
            b.exiting = me;
            void* dead;
            switch_to(&dead, b.sched_sp);
        }
        __builtin_unreachable();
    }
}

[[noreturn]] void fail_and_leave(const char* fmt, ...) {
    Rt& r = rt();
    Block& b = r.blk;
    if (!b.failed) {
        b.failed = true;
        int n = snprintf(b.msg, sizeof b.msg, "block (%u,%u,%u) thread (%u,%u,%u): ", b.bid.x, b.bid.y, b.bid.z,
                         r.cur->tid.x, r.cur->tid.y, r.cur->tid.z);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(b.msg + n, sizeof b.msg - (size_t)n, fmt, ap);
        va_end(ap);
    }
    void* dead;
    switch_to(&dead, b.sched_sp);
    __builtin_unreachable();
}

[[noreturn]] void collective_misuse(int op, const char* name, unsigned mask, int width) {
    Rt& r = rt();
    Block& b = r.blk;
    const unsigned lane = r.cur->linear & 31u, w = r.cur->linear >> 5;
    if (!((mask >> lane) & 1u))
        fail_and_leave("%s: lane %u of warp %u calls it with mask 0x%08x, which does not include the calling lane", name,
                       lane, w, mask);
    if (mask & ~b.exists[w])
        fail_and_leave("%s: mask 0x%08x names lanes 0x%08x of warp %u that do not exist (blockDim %u x %u x %u)", name,
                       mask, mask & ~b.exists[w], w, b.bdim.x, b.bdim.y, b.bdim.z);
    if (mask & b.exited[w])
        fail_and_leave("%s: lane %u of warp %u waits for lanes 0x%08x named in mask 0x%08x, which have already exited",
                       name, lane, w, mask & b.exited[w], mask);
    (void)op;
    fail_and_leave("%s: width %d is not a power of two between 1 and 32", name, width);
}

// Everyone named by `mask` has arrived: check that they agree, exchange, and make them runnable.
unsigned long long complete_collective(Block& b, unsigned w, int op, unsigned mask, unsigned lane, const char* name) {
    Fiber* base = b.f + (size_t)w * 32;
    for (unsigned m = mask; m; m &= m - 1) {
        const Fiber& o = base[__builtin_ctz(m)];
        if (__builtin_expect(o.mask != mask || o.op != op, 0))
            fail_and_leave("warp %u: lane %u is in %s with mask 0x%08x while lane %u is in %s with mask 0x%08x", w, lane,
                           name, mask, (unsigned)__builtin_ctz(m), o.opname, o.mask);
    }
    // A lane outside the mask did not take part: what it "holds" is undefined (all-ones bits).
#define CUDA_EMU_FROM(src) (((mask >> (src)) & 1u) ? base[(src)].value : ~0ull)
    switch (op) {
        case OP_SHFL_XOR:
            for (unsigned m = mask; m; m &= m - 1) {
                const int l = __builtin_ctz(m);
                Fiber& o = base[l];
                const int seg_end = (l & ~(o.width - 1)) + o.width;
                int src = l ^ o.arg;
                if (src < 0 || src > 31 || src >= seg_end) src = l;
                o.result = CUDA_EMU_FROM(src);
            }
            break;
        case OP_SHFL_IDX:
            for (unsigned m = mask; m; m &= m - 1) {
                const int l = __builtin_ctz(m);
                Fiber& o = base[l];
                o.result = CUDA_EMU_FROM((l & ~(o.width - 1)) + (o.arg & (o.width - 1)));
            }
            break;
        case OP_SHFL_UP:
            for (unsigned m = mask; m; m &= m - 1) {
                const int l = __builtin_ctz(m);
                Fiber& o = base[l];
                int src = l - o.arg;
                if (o.arg < 0 || src < (l & ~(o.width - 1))) src = l;
                o.result = CUDA_EMU_FROM(src);
            }
            break;
        case OP_SHFL_DOWN:
            for (unsigned m = mask; m; m &= m - 1) {
                const int l = __builtin_ctz(m);
                Fiber& o = base[l];
                int src = l + o.arg;
                if (o.arg < 0 || src >= (l & ~(o.width - 1)) + o.width) src = l;
                o.result = CUDA_EMU_FROM(src);
            }
            break;
        case OP_MATCH_ANY:
            for (unsigned m = mask; m; m &= m - 1) {
                Fiber& o = base[__builtin_ctz(m)];
                unsigned long long same = 0;
                for (unsigned m2 = mask; m2; m2 &= m2 - 1)
                    if (base[__builtin_ctz(m2)].value == o.value) same |= 1ull << __builtin_ctz(m2);
                o.result = same;
            }
            break;
        default: {  // ballot, any, all, syncwarp
            unsigned long long ballot = 0;
            for (unsigned m = mask; m; m &= m - 1)
                if (base[__builtin_ctz(m)].value) ballot |= 1ull << __builtin_ctz(m);
            const unsigned long long res = op == OP_BALLOT ? ballot : op == OP_ANY ? ballot != 0 : op == OP_ALL ? ballot == mask : 0;
            for (unsigned m = mask; m; m &= m - 1) base[__builtin_ctz(m)].result = res;
            break;
        }
    }
#undef CUDA_EMU_FROM
    for (unsigned m = mask; m; m &= m - 1) base[__builtin_ctz(m)].state = RUNNABLE;
    b.waiting[w] &= ~mask;
    return base[lane].result;
}

// Finds this module's thread-local block (its static __shared__ variables, the dynamic buffer
// and g_rt) for the calling thread.
struct TlsFind {
    uintptr_t base;
    unsigned char* data;
    size_t size;
};
static int tls_find_cb(struct dl_phdr_info* info, size_t, void* arg) {
    TlsFind* t = static_cast<TlsFind*>(arg);
    if ((uintptr_t)info->dlpi_addr != t->base) return 0;
    for (int i = 0; i < info->dlpi_phnum; ++i)
        if (info->dlpi_phdr[i].p_type == PT_TLS) {
            t->data = static_cast<unsigned char*>(info->dlpi_tls_data);
            t->size = info->dlpi_phdr[i].p_memsz;
        }
    return 1;
}

// Fills the block's shared memory with all-ones bytes: static __shared__ variables (everything
// in the module's TLS block but g_rt and the dynamic buffer) and the dynamic bytes the launch
// asked for, followed by a canary.
static void poison_shared(Rt& r, size_t dynamic) {
    if (r.tls_state == 0) {
        Dl_info di;
        TlsFind t{0, nullptr, 0};
        if (dladdr((void*)&poison_shared, &di)) {
            t.base = (uintptr_t)di.dli_fbase;
            dl_iterate_phdr(&tls_find_cb, &t);
        }
        r.tls_lo = t.data;
        r.tls_size = t.size;
        r.tls_state = t.data ? 1 : -1;
    }
    unsigned char* dyn = cuda_emu_dynamic_shared;
    const size_t dyn_size = CUDA_EMU_MAX_DYNAMIC_SHARED + CUDA_EMU_SHARED_CANARY;
    if (r.tls_state == 1) {
        unsigned char* lo = r.tls_lo;
        unsigned char* hi = r.tls_lo + r.tls_size;
        Rt* keep = g_rt;
        unsigned char* g = reinterpret_cast<unsigned char*>(&g_rt);
        // [lo, hi) minus [dyn, dyn + dyn_size) minus [g, g + 8).
        auto fill = [&](unsigned char* a, unsigned char* b) {
            if (a < lo) a = lo;
            if (b > hi) b = hi;
            if (a < b) memset(a, 0xFF, (size_t)(b - a));
        };
        unsigned char* cut[2][2] = {{dyn, dyn + dyn_size}, {g, g + sizeof(g_rt)}};
        if (cut[1][0] < cut[0][0]) std::swap(cut[0], cut[1]);
        fill(lo, cut[0][0]);
        fill(cut[0][1], cut[1][0]);
        fill(cut[1][1], hi);
        g_rt = keep;
    }
    memset(dyn, 0xFF, dynamic);
    memset(dyn + dynamic, 0xA5, CUDA_EMU_SHARED_CANARY);
}

static bool canary_intact(size_t dynamic) {
    const unsigned char* c = cuda_emu_dynamic_shared + dynamic;
    for (size_t i = 0; i < CUDA_EMU_SHARED_CANARY; ++i)
        if (c[i] != 0xA5) return false;
    return true;
}

void report(LaunchState* S, int status, const char* msg) {
    S->failed.store(1);
    if (S->reported.exchange(1) == 0) {
        S->L->status = status;
        snprintf(S->L->message, sizeof S->L->message, "kernel %s: %s", S->L->kernel, msg);
    }
}

int prepare_launch(LaunchState& S) {
    cuda_emu_launch* L = S.L;
    const unsigned long long n = (unsigned long long)L->grid[0] * L->grid[1] * L->grid[2];
    const unsigned long long t = (unsigned long long)L->block[0] * L->block[1] * L->block[2];
    if (n == 0 || t == 0 || n > 0xFFFFFFFFull || t > 1024) {
        snprintf(L->message, sizeof L->message, "kernel %s: grid %u x %u x %u, block %u x %u x %u", L->kernel, L->grid[0],
                 L->grid[1], L->grid[2], L->block[0], L->block[1], L->block[2]);
        return L->status = 1;  // CUDA_ERROR_INVALID_VALUE
    }
    if (L->dynamic_shared > CUDA_EMU_MAX_DYNAMIC_SHARED) {
        snprintf(L->message, sizeof L->message, "kernel %s: %zu bytes of dynamic shared memory (at most %d)", L->kernel,
                 L->dynamic_shared, CUDA_EMU_MAX_DYNAMIC_SHARED);
        return L->status = 1;
    }
    S.nblocks = (unsigned)n;
    if (L->order == CUDA_EMU_ORDER_REVERSE || L->order == CUDA_EMU_ORDER_RANDOM) {
        S.block_order = static_cast<unsigned*>(malloc(sizeof(unsigned) * S.nblocks));
        if (!S.block_order) return L->status = 2;  // CUDA_ERROR_OUT_OF_MEMORY
        for (unsigned i = 0; i < S.nblocks; ++i) S.block_order[i] = L->order == CUDA_EMU_ORDER_REVERSE ? S.nblocks - 1 - i : i;
        if (L->order == CUDA_EMU_ORDER_RANDOM) {
            unsigned long long s = L->seed ^ 0x5DEECE66Dull;
            for (unsigned i = S.nblocks; i > 1; --i) std::swap(S.block_order[i - 1], S.block_order[splitmix(s) % i]);
        }
    }
    L->status = 0;
    L->message[0] = 0;
    return 0;
}

void finish_launch(LaunchState& S) { free(S.block_order); }

void run_block(void* arg, unsigned index) {
    LaunchState* S = static_cast<LaunchState*>(arg);
    if (S->failed.load(std::memory_order_relaxed)) return;
    if (!g_rt) {
        g_rt = static_cast<Rt*>(calloc(1, sizeof(Rt)));
        if (!g_rt) return report(S, 2, "out of host memory for the block scheduler");
    }
    Rt& r = *g_rt;
    cuda_emu_launch* L = S->L;
    const unsigned n = L->block[0] * L->block[1] * L->block[2];
    if (r.fibers_cap < n) {
        free(r.fibers);
        free(r.perm);
        r.fibers = static_cast<Fiber*>(calloc(n, sizeof(Fiber)));
        r.perm = static_cast<unsigned*>(calloc(n, sizeof(unsigned)));
        r.fibers_cap = r.fibers && r.perm ? n : 0;
        if (!r.fibers_cap) return report(S, 2, "out of host memory for fibers");
    }
    if (!ensure_stacks(r, n)) return report(S, 2, "out of memory for fiber stacks");

    const unsigned id = S->block_order ? S->block_order[index] : index;
    Block& b = r.blk;
    b.S = S;
    b.f = r.fibers;
    b.n = n;
    b.alive = n;
    b.at_barrier = 0;
    b.bar_result = 0;
    b.bdim = uint3{L->block[0], L->block[1], L->block[2]};
    b.gdim = uint3{L->grid[0], L->grid[1], L->grid[2]};
    b.bid = uint3{id % L->grid[0], (id / L->grid[0]) % L->grid[1], id / (L->grid[0] * L->grid[1])};
    b.nwarps = (n + 31) / 32;
    for (unsigned w = 0; w < 32; ++w) {
        b.exited[w] = 0;
        b.waiting[w] = 0;
        const unsigned lanes = w < b.nwarps ? (n - w * 32 >= 32 ? 32 : n - w * 32) : 0;
        b.exists[w] = lanes == 32 ? 0xFFFFFFFFu : ((1u << lanes) - 1u);
    }
    b.failed = false;
    b.msg[0] = 0;
    b.rng = L->seed * 0x9E3779B97F4A7C15ull + id + 1;
    for (unsigned i = 0; i < n; ++i) {
        Fiber& f = r.fibers[i];
        f.sp = nullptr;
        f.linear = i;
        f.stack = -1;
        f.tid = uint3{i % b.bdim.x, (i / b.bdim.x) % b.bdim.y, i / (b.bdim.x * b.bdim.y)};
        f.state = RUNNABLE;
        r.perm[i] = L->order == CUDA_EMU_ORDER_REVERSE ? n - 1 - i : i;
        // Stacks are taken from the end of the list: stack 0 first, so the same few stay warm.
        r.free_stacks[i] = (int)(n - 1 - i);
    }
    r.n_free = n;
    r.order = L->order;
    b.exiting = nullptr;
    new_pass(r);
    poison_shared(r, L->dynamic_shared);
    r.in_block = true;
    r.cur = nullptr;

    for (;;) {
        if (b.exiting) {
            r.free_stacks[r.n_free++] = b.exiting->stack;
            b.exiting->stack = -1;
            b.exiting = nullptr;
        }
        if (b.failed || b.alive == 0) break;
        Fiber* next = pick_next(r);
        if (next) {
            resume(r, &b.sched_sp, next);
            continue;
        }
        // Nobody can run and some threads have not finished: a deadlock. Say who waits where.
        int m = snprintf(b.msg, sizeof b.msg, "block (%u,%u,%u) deadlocked:", b.bid.x, b.bid.y, b.bid.z);
        unsigned shown = 0;
        for (unsigned i = 0; i < n && m < (int)sizeof b.msg - 160; ++i) {
            const Fiber& f = r.fibers[i];
            if (f.state == EXITED) continue;
            if (++shown > 6) {
                m += snprintf(b.msg + m, sizeof b.msg - (size_t)m, " ...");
                break;
            }
            if (f.state == AT_WARP)
                m += snprintf(b.msg + m, sizeof b.msg - (size_t)m,
                              " thread %u waits in %s(mask 0x%08x) (lanes 0x%08x of its warp have exited, 0x%08x wait in a "
                              "collective);",
                              i, f.opname, f.mask, b.exited[i >> 5], b.waiting[i >> 5]);
            else
                m += snprintf(b.msg + m, sizeof b.msg - (size_t)m, " thread %u is %s;", i, lane_state_name(f.state));
        }
        b.failed = true;
        break;
    }
    r.in_block = false;
    if (!b.failed && !canary_intact(L->dynamic_shared)) {
        snprintf(b.msg, sizeof b.msg, "block (%u,%u,%u) wrote past the %zu bytes of dynamic shared memory the launch asked for",
                 b.bid.x, b.bid.y, b.bid.z, L->dynamic_shared);
        b.failed = true;
    }
    if (b.failed) report(S, 719 /* CUDA_ERROR_LAUNCH_FAILED */, b.msg);
}

}  // namespace cuda_emu
#pragma GCC visibility pop

extern "C" __attribute__((visibility("default"))) int cuda_emu_module_abi(void) { return CUDA_EMU_ABI; }

// Where the calling worker thread is (or was when a fault interrupted it), and whether `addr`
// lies in a fiber stack's guard page.
extern "C" __attribute__((visibility("default"))) void cuda_emu_where(const void* addr, char* buf, size_t cap) {
    using namespace cuda_emu;
    Rt* r = g_rt;
    if (!r || !r->cur) {
        snprintf(buf, cap, "outside any block");
        return;
    }
    const Block& b = r->blk;
    int n = snprintf(buf, cap, "block (%u,%u,%u) thread (%u,%u,%u)", b.bid.x, b.bid.y, b.bid.z, r->cur->tid.x,
                     r->cur->tid.y, r->cur->tid.z);
    const size_t ps = page_size(), one = kStackSize + ps;
    const char* a = static_cast<const char*>(addr);
    if (r->stacks && a >= r->stacks && a < r->stacks + one * r->stacks_n && (size_t)(a - r->stacks) % one < ps && n > 0 &&
        (size_t)n < cap)
        snprintf(buf + n, cap - (size_t)n, "; the address is in the guard page of a thread's stack: the thread used more "
                                           "than %zu KiB of local memory",
                 kStackSize / 1024);
}

#endif
