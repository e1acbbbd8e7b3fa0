// Shared by the three emulated libraries: messages and the "not implemented" convention.
#ifndef CUDA_EMU_COMMON_H
#define CUDA_EMU_COMMON_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CUDA_EMU_DEVICE_NAME "factortopy CUDA emulator (CPU)"

// One line on stderr, prefixed so it is plain where it comes from.
static inline void emu_say(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void emu_say(const char* fmt, ...) {
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "cuda-emu: %s\n", buf);
    fflush(stderr);
}

static inline int emu_trace_enabled() {
    static int on = -1;
    if (on < 0) {
        const char* t = getenv("FACTORTOPY_CUDA_EMU_TRACE");
        on = t && *t && strcmp(t, "0") != 0;
    }
    return on;
}

#define EMU_TRACE(...)                          \
    do {                                        \
        if (emu_trace_enabled()) emu_say(__VA_ARGS__); \
    } while (0)

#endif
