// The interface between the emulated driver (libcuda, driver.cpp) and a kernel module (the shared
// object that the emulated NVRTC builds from a kernel source and cuda_emu.h). Plain C so both
// sides agree on the layout whatever they were compiled with. Bump CUDA_EMU_ABI when it changes:
// the driver refuses modules of another ABI, and the NVRTC cache key includes this file.
#ifndef CUDA_EMU_ABI_H
#define CUDA_EMU_ABI_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CUDA_EMU_ABI 3

// The largest dynamic shared memory a block may opt in to (the H100's 227 KiB), and the bytes
// after it that the runtime fills with a canary to catch writes past what a launch asked for.
#define CUDA_EMU_MAX_DYNAMIC_SHARED (227 * 1024)
#define CUDA_EMU_SHARED_CANARY 256

// Lane orders of the fiber scheduler (FACTORTOPY_CUDA_EMU_ORDER).
enum { CUDA_EMU_ORDER_FORWARD = 0, CUDA_EMU_ORDER_REVERSE = 1, CUDA_EMU_ORDER_RANDOM = 2 };

typedef struct cuda_emu_services {
    // Runs body(arg, i) for every i < n on the driver's worker threads and returns when all
    // are done. A fault (SIGSEGV, SIGBUS, SIGFPE) inside body abandons that call and is
    // reported through fault(), and the remaining indices are skipped.
    void (*parallel_for)(unsigned n, void (*body)(void* arg, unsigned i), void* arg);
    // 1 when [p, p + bytes) lies inside one live device allocation (bytes may be 0: then p may
    // also be one past the end of an allocation).
    int (*is_device_range)(const void* p, size_t bytes);
} cuda_emu_services;

typedef struct cuda_emu_launch {
    int abi;
    const char* kernel;
    unsigned grid[3];
    unsigned block[3];
    size_t dynamic_shared;
    void** params;
    int order;
    unsigned long long seed;
    const cuda_emu_services* svc;
    // Out: 0 or a CUresult, and what went wrong.
    int status;
    char message[2048];
} cuda_emu_launch;

// Exported by every kernel module:
//   int  cuda_emu_module_abi(void);                  returns CUDA_EMU_ABI
//   void cuda_emu_where(const void* addr, char* buf, size_t cap);  which block/thread the calling
//                                                    worker ran last, and whether addr is a stack guard page
//   int  cuda_emu_kernel_<name>(cuda_emu_launch*);   runs a whole grid of kernel <name>
//   int  cuda_emu_params_<name>(size_t* sizes, int cap);  number of parameters, their sizes
#define CUDA_EMU_KERNEL_PREFIX "cuda_emu_kernel_"
#define CUDA_EMU_PARAMS_PREFIX "cuda_emu_params_"

#ifdef __cplusplus
}
#endif
#endif
