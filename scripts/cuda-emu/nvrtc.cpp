// The emulated NVRTC (libnvrtc.so.13): "compiles" a CUDA C++ program by running the system g++ on
// it with cuda_emu.h force-included, into a shared object (a kernel module) that the emulated
// driver loads. The "PTX" it returns is a short text naming that object:
//
//     // factortopy-cuda-emu module
//     // program readout.cu: kernels readout_fwd_f32 readout_fwd_f16 ...
//     .so /tmp/factortopy-cuda-emu-1000/3f2a...c1.so
//
// Objects are cached by a hash of everything that goes into them (the emulator's headers, the
// source, the program's headers, the options that reach g++, the compiler), under
// $FACTORTOPY_CUDA_EMU_CACHE or ${TMPDIR:-/tmp}/factortopy-cuda-emu-$UID, so a test suite
// compiles each kernel file once. A compile error comes back as NVRTC_ERROR_COMPILATION with g++'s
// messages (naming the program's file) as the program log, as NVRTC would report it.
//
// The `extern __shared__` arrays of a program are found in the compiled object (undefined
// thread-local symbols) and defined, in a second small translation unit, as aliases of the one
// dynamic shared buffer, so that every such array starts at the same address, as on a GPU.
//
// Environment: FACTORTOPY_CUDA_EMU_CXX (default g++), FACTORTOPY_CUDA_EMU_READELF (default
// readelf), FACTORTOPY_CUDA_EMU_CACHE, FACTORTOPY_CUDA_EMU_KEEP=1 (keep build folders).
#include "cuda_emu_abi.h"
#include "emu_common.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <set>
#include <string>
#include <vector>

extern char** environ;

#define EXPORT extern "C" __attribute__((visibility("default")))

typedef int nvrtcResult;
enum {
    NVRTC_SUCCESS = 0,
    NVRTC_ERROR_OUT_OF_MEMORY = 1,
    NVRTC_ERROR_PROGRAM_CREATION_FAILURE = 2,
    NVRTC_ERROR_INVALID_INPUT = 3,
    NVRTC_ERROR_INVALID_PROGRAM = 4,
    NVRTC_ERROR_INVALID_OPTION = 5,
    NVRTC_ERROR_COMPILATION = 6,
    NVRTC_ERROR_INTERNAL_ERROR = 11,
};

// The emulator's headers, embedded when the library is built (build.sh passes CUDA_EMU_SRC_DIR).
#define CUDA_EMU_STR2(x) #x
#define CUDA_EMU_STR(x) CUDA_EMU_STR2(x)
#define CUDA_EMU_EMBED(sym, file)                                                     \
    __asm__(".section .rodata\n.balign 16\n.globl " #sym "\n.hidden " #sym "\n" #sym ":\n" \
            ".incbin \"" CUDA_EMU_SRC_DIR "/" file "\"\n.byte 0\n.previous\n");       \
    extern "C" const char sym[];
CUDA_EMU_EMBED(cuda_emu_h_text, "cuda_emu.h")
CUDA_EMU_EMBED(cuda_emu_runtime_h_text, "cuda_emu_runtime.h")
CUDA_EMU_EMBED(cuda_emu_abi_h_text, "cuda_emu_abi.h")

namespace {

struct Program {
    int magic = 0x4e565254;
    std::string src, name;
    std::vector<std::pair<std::string, std::string>> headers;  // (include name, contents)
    std::string log, ptx;
    bool compiled = false;
};

// 128-bit FNV-1a pair; collisions are not a concern for a cache of a few dozen files.
struct Hash {
    uint64_t a = 0xcbf29ce484222325ull, b = 0x84222325cbf29ce4ull;
    void add(const void* p, size_t n) {
        const unsigned char* c = static_cast<const unsigned char*>(p);
        for (size_t i = 0; i < n; ++i) {
            a = (a ^ c[i]) * 0x100000001b3ull;
            b = (b ^ c[i]) * 0x100000001b3ull + 0x9e3779b97f4a7c15ull;
        }
        const unsigned char sep = 0xFE;
        a = (a ^ sep) * 0x100000001b3ull;
    }
    void add(const std::string& s) { add(s.data(), s.size()); }
    std::string hex() const {
        char buf[40];
        snprintf(buf, sizeof buf, "%016llx%016llx", (unsigned long long)a, (unsigned long long)b);
        return buf;
    }
};

std::string env_or(const char* name, const char* dflt) {
    const char* v = getenv(name);
    return v && *v ? v : dflt;
}

bool write_file(const std::string& path, const std::string& data) {
    FILE* f = fopen(path.c_str(), "wb");
    if (!f) return false;
    const bool ok = fwrite(data.data(), 1, data.size(), f) == data.size();
    return fclose(f) == 0 && ok;
}

std::string read_file(const std::string& path) {
    std::string out;
    FILE* f = fopen(path.c_str(), "rb");
    if (!f) return out;
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
    fclose(f);
    return out;
}

// Runs argv with stdout+stderr into `log_path`; returns the exit status (or -1).
int run(const std::vector<std::string>& argv, const std::string& log_path) {
    std::vector<char*> a;
    for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
    a.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid;
    int rc = posix_spawnp(&pid, a[0], &fa, nullptr, a.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) return -1;
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Output of a command (stdout only), for `g++ --version` and readelf.
std::string capture(const std::vector<std::string>& argv, int* status) {
    char tmpl[] = "/tmp/factortopy-cuda-emu-capture-XXXXXX";
    int fd = mkstemp(tmpl);
    if (fd < 0) {
        *status = -1;
        return "";
    }
    close(fd);
    *status = run(argv, tmpl);
    std::string out = read_file(tmpl);
    unlink(tmpl);
    return out;
}

const std::string& compiler_identity() {
    static std::string id;
    static std::once_flag once;
    std::call_once(once, [] {
        int st = 0;
        id = env_or("FACTORTOPY_CUDA_EMU_CXX", "g++") + "\n" +
             capture({env_or("FACTORTOPY_CUDA_EMU_CXX", "g++"), "--version"}, &st);
    });
    return id;
}

std::string cache_dir() {
    std::string d = env_or("FACTORTOPY_CUDA_EMU_CACHE", "");
    if (d.empty()) d = env_or("TMPDIR", "/tmp") + "/factortopy-cuda-emu-" + std::to_string(getuid());
    // mkdir -p
    for (size_t i = 1; i <= d.size(); ++i)
        if (i == d.size() || d[i] == '/') mkdir(d.substr(0, i).c_str(), 0755);
    return d;
}

// The program's text with comments, string and character literals blanked out, for scanning.
std::string code_only(const std::string& s) {
    std::string o(s);
    enum { CODE, LINE, BLOCK, STR, CHR } st = CODE;
    for (size_t i = 0; i < s.size(); ++i) {
        const char c = s[i], n = i + 1 < s.size() ? s[i + 1] : 0;
        switch (st) {
            case CODE:
                if (c == '/' && n == '/') st = LINE, o[i] = ' ';
                else if (c == '/' && n == '*') st = BLOCK, o[i] = ' ';
                else if (c == '"') st = STR, o[i] = ' ';
                else if (c == '\'') st = CHR, o[i] = ' ';
                break;
            case LINE:
                if (c == '\n') st = CODE;
                else o[i] = ' ';
                break;
            case BLOCK:
                if (c == '*' && n == '/') st = CODE, o[i] = o[i + 1] = ' ', ++i;
                else if (c != '\n') o[i] = ' ';
                break;
            case STR:
            case CHR:
                if (c == '\\') o[i] = ' ', o[i + 1] = ' ', ++i;
                else if ((st == STR && c == '"') || (st == CHR && c == '\'')) st = CODE, o[i] = ' ';
                else if (c != '\n') o[i] = ' ';
                break;
        }
    }
    return o;
}

bool ident_char(char c) { return isalnum((unsigned char)c) || c == '_'; }

// The names of the program's __global__ functions: the identifier before the parameter list that
// follows each `__global__` (skipping __launch_bounds__(...) and __attribute__((...))).
std::vector<std::string> kernel_names(const std::string& src, std::string& log) {
    const std::string s = code_only(src);
    std::vector<std::string> names;
    std::set<std::string> seen;
    const std::string kw = "__global__";
    for (size_t p = s.find(kw); p != std::string::npos; p = s.find(kw, p + kw.size())) {
        if ((p > 0 && ident_char(s[p - 1])) || (p + kw.size() < s.size() && ident_char(s[p + kw.size()]))) continue;
        // A template kernel has no name a module lookup could use.
        size_t back = p;
        while (back > 0 && isspace((unsigned char)s[back - 1])) --back;
        if (back > 0 && s[back - 1] == '>') {
            log += "note: a template __global__ function is skipped (only extern \"C\" kernels can be looked up by name)\n";
            continue;
        }
        size_t i = p + kw.size();
        std::string last;
        while (i < s.size()) {
            if (isspace((unsigned char)s[i])) {
                ++i;
                continue;
            }
            if (ident_char(s[i])) {
                size_t j = i;
                while (j < s.size() && ident_char(s[j])) ++j;
                last = s.substr(i, j - i);
                i = j;
                if (last == "__launch_bounds__" || last == "__attribute__") {
                    while (i < s.size() && isspace((unsigned char)s[i])) ++i;
                    if (i < s.size() && s[i] == '(') {
                        int depth = 0;
                        for (; i < s.size(); ++i) {
                            if (s[i] == '(') ++depth;
                            if (s[i] == ')' && --depth == 0) {
                                ++i;
                                break;
                            }
                        }
                    }
                    last.clear();
                }
                continue;
            }
            if (s[i] == '(') break;
            ++i;  // '*', '&', '::' ...
        }
        if (!last.empty() && seen.insert(last).second) names.push_back(last);
    }
    return names;
}

std::string basename_of(const std::string& name) {
    std::string b = name.substr(name.find_last_of('/') == std::string::npos ? 0 : name.find_last_of('/') + 1);
    std::string o;
    for (char c : b) o += (ident_char(c) || c == '.' || c == '-') ? c : '_';
    if (o.empty() || o[0] == '.') o = "program.cu";
    return o;
}

nvrtcResult compile(Program& p, int n_opts, const char* const* opts) {
    p.log.clear();
    std::vector<std::string> gxx_opts;  // -D, -U, -I that reach g++
    std::string ignored;
    for (int i = 0; i < n_opts; ++i) {
        std::string o = opts[i] ? opts[i] : "";
        auto take_value = [&](const std::string& flag, std::string& v) {
            if (o == flag) {
                if (i + 1 >= n_opts) return false;
                v = opts[++i];
                return true;
            }
            if (o.rfind(flag + "=", 0) == 0) {
                v = o.substr(flag.size() + 1);
                return true;
            }
            if (flag.size() == 2 && o.rfind(flag, 0) == 0 && o.size() > 2) {
                v = o.substr(2);
                return true;
            }
            return false;
        };
        std::string v;
        if (take_value("--define-macro", v) || take_value("-D", v)) {
            gxx_opts.push_back("-D" + v);
        } else if (take_value("--undefine-macro", v) || take_value("-U", v)) {
            gxx_opts.push_back("-U" + v);
        } else if (take_value("--include-path", v) || take_value("-I", v)) {
            gxx_opts.push_back("-I" + v);
        } else if (take_value("--pre-include", v) || take_value("-include", v)) {
            gxx_opts.push_back("-include");
            gxx_opts.push_back(v);
        } else if (take_value("--gpu-architecture", v) || take_value("-arch", v) || take_value("--std", v) ||
                   take_value("-std", v) || take_value("--fmad", v) || take_value("-fmad", v) || take_value("--ftz", v) ||
                   take_value("-ftz", v) || take_value("--prec-sqrt", v) || take_value("-prec-sqrt", v) ||
                   take_value("--prec-div", v) || take_value("-prec-div", v) || take_value("--maxrregcount", v) ||
                   take_value("-maxrregcount", v) || take_value("--relocatable-device-code", v) || take_value("-rdc", v) ||
                   take_value("--dopt", v) || take_value("-dopt", v)) {
            // Code generation for a real GPU: nothing to do on the CPU (g++ always uses C++20).
            ignored += " " + o + (v.empty() || o.find('=') != std::string::npos ? "" : " " + v);
        } else if (o == "--use_fast_math" || o == "-use_fast_math" || o == "--device-as-default-execution-space" ||
                   o == "-default-device" || o == "-lineinfo" || o == "--generate-line-info" || o == "-G" ||
                   o == "--device-debug" || o == "-w" || o == "--disable-warnings" || o == "-ewp" ||
                   o == "--extensible-whole-program" || o == "--extra-device-vectorization" || o == "-extra-device-vectorization" ||
                   o == "--restrict" || o == "-restrict" || o == "-dlto" || o == "--dlink-time-opt") {
            ignored += " " + o;
        } else {
            p.log = "nvrtc (factortopy CUDA emulator): unrecognized option " + o + "\n";
            return NVRTC_ERROR_INVALID_OPTION;
        }
    }
    if (!ignored.empty()) p.log += "note: options for a real GPU's code generation, ignored by the CPU emulator:" + ignored + "\n";

    const std::vector<std::string> kernels = kernel_names(p.src, p.log);
    const std::string file = basename_of(p.name);

    Hash h;
    h.add(cuda_emu_h_text, strlen(cuda_emu_h_text));
    h.add(cuda_emu_runtime_h_text, strlen(cuda_emu_runtime_h_text));
    h.add(cuda_emu_abi_h_text, strlen(cuda_emu_abi_h_text));
    h.add(p.src);
    h.add(file);
    for (const auto& [n, c] : p.headers) h.add(n), h.add(c);
    for (const auto& o : gxx_opts) h.add(o);
    h.add(compiler_identity());
    const std::string dir = cache_dir();
    const std::string so = dir + "/" + h.hex() + ".so";

    std::string kernel_list;
    for (const auto& k : kernels) kernel_list += " " + k;
    auto finish_ptx = [&] {
        p.ptx = "// factortopy-cuda-emu module\n// program " + file + ": kernels" + kernel_list + "\n.so " + so + "\n";
        p.compiled = true;
    };
    if (access(so.c_str(), R_OK) == 0) {
        finish_ptx();
        return NVRTC_SUCCESS;
    }

    std::string tmpl = dir + "/build-XXXXXX";
    std::vector<char> tb(tmpl.begin(), tmpl.end());
    tb.push_back(0);
    if (!mkdtemp(tb.data())) {
        p.log += "nvrtc (factortopy CUDA emulator): cannot create a build folder under " + dir + "\n";
        return NVRTC_ERROR_INTERNAL_ERROR;
    }
    const std::string bd = tb.data();
    const std::string log_path = bd + "/build.log";
    bool ok = write_file(bd + "/cuda_emu.h", cuda_emu_h_text) && write_file(bd + "/cuda_emu_runtime.h", cuda_emu_runtime_h_text) &&
              write_file(bd + "/cuda_emu_abi.h", cuda_emu_abi_h_text) && write_file(bd + "/" + file, p.src);
    for (const auto& [n, c] : p.headers) {
        const std::string hp = bd + "/" + n;
        for (size_t i = bd.size() + 1; i < hp.size(); ++i)
            if (hp[i] == '/') mkdir(hp.substr(0, i).c_str(), 0755);
        ok = ok && write_file(hp, c);
    }
    std::string unit = "#include \"cuda_emu.h\"\n#include \"" + file + "\"\n";
    for (const auto& k : kernels) unit += "CUDA_EMU_KERNEL(" + k + ")\n";
    ok = ok && write_file(bd + "/module.cpp", unit) && write_file(log_path, "");
    if (!ok) {
        p.log += "nvrtc (factortopy CUDA emulator): cannot write into " + bd + "\n";
        return NVRTC_ERROR_INTERNAL_ERROR;
    }

    const std::string cxx = env_or("FACTORTOPY_CUDA_EMU_CXX", "g++");
    const std::vector<std::string> common = {cxx, "-std=c++20", "-O2", "-g0", "-fPIC", "-ffp-contract=off", "-fno-fast-math",
                                             "-fno-strict-aliasing", "-fno-extern-tls-init", "-fvisibility=hidden",
                                             "-Wno-unknown-pragmas", "-I" + bd};
    std::vector<std::string> c1 = common;
    for (const auto& o : gxx_opts) c1.push_back(o);
    c1.insert(c1.end(), {"-c", bd + "/module.cpp", "-o", bd + "/module.o"});
    int rc = run(c1, log_path);
    std::string glog = read_file(log_path);
    // Messages name the program's file as the user knows it.
    auto tidy = [&](std::string s) {
        for (size_t q; (q = s.find(bd + "/")) != std::string::npos;) s.erase(q, bd.size() + 1);
        return s;
    };
    if (rc != 0) {
        p.log += tidy(glog);
        if (rc < 0) p.log += "nvrtc (factortopy CUDA emulator): could not run " + cxx + " (set FACTORTOPY_CUDA_EMU_CXX)\n";
        if (!getenv("FACTORTOPY_CUDA_EMU_KEEP")) run({"rm", "-rf", bd}, "/dev/null");
        return NVRTC_ERROR_COMPILATION;
    }

    // Every undefined thread-local symbol of the object is an `extern __shared__` array.
    int st = 0;
    const std::string syms = capture({env_or("FACTORTOPY_CUDA_EMU_READELF", "readelf"), "-sW", bd + "/module.o"}, &st);
    if (st != 0) {
        p.log += "nvrtc (factortopy CUDA emulator): readelf failed on the compiled program (set FACTORTOPY_CUDA_EMU_READELF)\n";
        return NVRTC_ERROR_INTERNAL_ERROR;
    }
    std::vector<std::string> dyn;
    for (size_t pos = 0; pos < syms.size();) {
        size_t eol = syms.find('\n', pos);
        if (eol == std::string::npos) eol = syms.size();
        const std::string line = syms.substr(pos, eol - pos);
        pos = eol + 1;
        std::vector<std::string> f;
        for (size_t i = 0; i < line.size();) {
            while (i < line.size() && isspace((unsigned char)line[i])) ++i;
            size_t j = i;
            while (j < line.size() && !isspace((unsigned char)line[j])) ++j;
            if (j > i) f.push_back(line.substr(i, j - i));
            i = j;
        }
        // Num: Value Size Type Bind Vis Ndx Name
        if (f.size() >= 8 && f[3] == "TLS" && f[6] == "UND" && f[7] != "cuda_emu_dynamic_shared") dyn.push_back(f[7]);
    }
    const int total = CUDA_EMU_MAX_DYNAMIC_SHARED + CUDA_EMU_SHARED_CANARY;
    std::string shared =
        "#include \"cuda_emu_abi.h\"\n"
        "extern \"C\" {  // braces: a definition, not a declaration\n"
        "__attribute__((visibility(\"hidden\"))) alignas(256) thread_local unsigned char\n"
        "    cuda_emu_dynamic_shared[CUDA_EMU_MAX_DYNAMIC_SHARED + CUDA_EMU_SHARED_CANARY];\n"
        "}\n";
    for (const auto& s : dyn)
        shared += "__asm__(\".globl " + s + "\\n.hidden " + s + "\\n.type " + s + ", @tls_object\\n.size " + s + ", " +
                  std::to_string(total) + "\\n.set " + s + ", cuda_emu_dynamic_shared\\n\");\n";
    if (!write_file(bd + "/shared.cpp", shared)) return NVRTC_ERROR_INTERNAL_ERROR;
    std::vector<std::string> c2 = common;
    c2.insert(c2.end(), {"-c", bd + "/shared.cpp", "-o", bd + "/shared.o"});
    std::vector<std::string> c3 = {cxx, "-shared", "-o", bd + "/module.so", bd + "/module.o", bd + "/shared.o",
                                   "-Wl,-Bsymbolic", "-lm"};
    if (run(c2, log_path) != 0 || run(c3, log_path) != 0) {
        p.log += tidy(read_file(log_path));
        p.log += "nvrtc (factortopy CUDA emulator): linking the kernel module failed\n";
        return NVRTC_ERROR_INTERNAL_ERROR;
    }
    p.log += tidy(glog);
    // Publish atomically: concurrent compiles of the same program race harmlessly.
    if (rename((bd + "/module.so").c_str(), so.c_str()) != 0) {
        p.log += "nvrtc (factortopy CUDA emulator): cannot move the module into " + dir + "\n";
        return NVRTC_ERROR_INTERNAL_ERROR;
    }
    if (!getenv("FACTORTOPY_CUDA_EMU_KEEP")) run({"rm", "-rf", bd}, "/dev/null");
    finish_ptx();
    return NVRTC_SUCCESS;
}

Program* as_program(void* p) {
    Program* pr = static_cast<Program*>(p);
    return pr && pr->magic == 0x4e565254 ? pr : nullptr;
}

}  // namespace

EXPORT nvrtcResult nvrtcVersion(int* major, int* minor) {
    if (!major || !minor) return NVRTC_ERROR_INVALID_INPUT;
    *major = 13;
    *minor = 0;
    return NVRTC_SUCCESS;
}

EXPORT nvrtcResult nvrtcGetNumSupportedArchs(int* n) {
    if (!n) return NVRTC_ERROR_INVALID_INPUT;
    *n = 1;
    return NVRTC_SUCCESS;
}
EXPORT nvrtcResult nvrtcGetSupportedArchs(int* archs) {
    if (!archs) return NVRTC_ERROR_INVALID_INPUT;
    archs[0] = 90;
    return NVRTC_SUCCESS;
}

EXPORT const char* nvrtcGetErrorString(nvrtcResult r) {
    switch (r) {
        case 0: return "NVRTC_SUCCESS";
        case 1: return "NVRTC_ERROR_OUT_OF_MEMORY";
        case 2: return "NVRTC_ERROR_PROGRAM_CREATION_FAILURE";
        case 3: return "NVRTC_ERROR_INVALID_INPUT";
        case 4: return "NVRTC_ERROR_INVALID_PROGRAM";
        case 5: return "NVRTC_ERROR_INVALID_OPTION";
        case 6: return "NVRTC_ERROR_COMPILATION";
        case 7: return "NVRTC_ERROR_BUILTIN_OPERATION_FAILURE";
        case 8: return "NVRTC_ERROR_NO_NAME_EXPRESSIONS_AFTER_COMPILATION";
        case 9: return "NVRTC_ERROR_NO_LOWERED_NAMES_BEFORE_COMPILATION";
        case 10: return "NVRTC_ERROR_NAME_EXPRESSION_NOT_VALID";
        case 11: return "NVRTC_ERROR_INTERNAL_ERROR";
        default: return "NVRTC_ERROR unknown";
    }
}

EXPORT nvrtcResult nvrtcCreateProgram(void** prog, const char* src, const char* name, int num_headers,
                                      const char* const* headers, const char* const* include_names) {
    if (!prog || !src || num_headers < 0) return NVRTC_ERROR_INVALID_INPUT;
    if (num_headers > 0 && (!headers || !include_names)) return NVRTC_ERROR_INVALID_INPUT;
    Program* p = new Program;
    p->src = src;
    p->name = name ? name : "default_program";
    for (int i = 0; i < num_headers; ++i) {
        if (!headers[i] || !include_names[i]) {
            delete p;
            return NVRTC_ERROR_INVALID_INPUT;
        }
        p->headers.emplace_back(include_names[i], headers[i]);
    }
    *prog = p;
    return NVRTC_SUCCESS;
}

EXPORT nvrtcResult nvrtcDestroyProgram(void** prog) {
    if (!prog || !as_program(*prog)) return NVRTC_ERROR_INVALID_PROGRAM;
    Program* p = static_cast<Program*>(*prog);
    p->magic = 0;
    delete p;
    *prog = nullptr;
    return NVRTC_SUCCESS;
}

EXPORT nvrtcResult nvrtcCompileProgram(void* prog, int n, const char* const* options) {
    Program* p = as_program(prog);
    if (!p) return NVRTC_ERROR_INVALID_PROGRAM;
    if (n < 0 || (n > 0 && !options)) return NVRTC_ERROR_INVALID_INPUT;
    EMU_TRACE("nvrtcCompileProgram(%s)", p->name.c_str());
    return compile(*p, n, options);
}

EXPORT nvrtcResult nvrtcGetPTXSize(void* prog, size_t* size) {
    Program* p = as_program(prog);
    if (!p) return NVRTC_ERROR_INVALID_PROGRAM;
    if (!size) return NVRTC_ERROR_INVALID_INPUT;
    if (!p->compiled) return NVRTC_ERROR_INVALID_PROGRAM;
    *size = p->ptx.size() + 1;
    return NVRTC_SUCCESS;
}

EXPORT nvrtcResult nvrtcGetPTX(void* prog, char* out) {
    Program* p = as_program(prog);
    if (!p) return NVRTC_ERROR_INVALID_PROGRAM;
    if (!out) return NVRTC_ERROR_INVALID_INPUT;
    if (!p->compiled) return NVRTC_ERROR_INVALID_PROGRAM;
    memcpy(out, p->ptx.c_str(), p->ptx.size() + 1);
    return NVRTC_SUCCESS;
}

EXPORT nvrtcResult nvrtcGetProgramLogSize(void* prog, size_t* size) {
    Program* p = as_program(prog);
    if (!p) return NVRTC_ERROR_INVALID_PROGRAM;
    if (!size) return NVRTC_ERROR_INVALID_INPUT;
    *size = p->log.size() + 1;
    return NVRTC_SUCCESS;
}

EXPORT nvrtcResult nvrtcGetProgramLog(void* prog, char* out) {
    Program* p = as_program(prog);
    if (!p) return NVRTC_ERROR_INVALID_PROGRAM;
    if (!out) return NVRTC_ERROR_INVALID_INPUT;
    memcpy(out, p->log.c_str(), p->log.size() + 1);
    return NVRTC_SUCCESS;
}
