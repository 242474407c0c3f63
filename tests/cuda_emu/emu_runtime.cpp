// emu_runtime.cpp -- the scheduler of the CUDA CPU emulation (see cuda_emu.h) and its C API.
//
// A block's threads are fibers on the calling host thread: each runs until it reaches a
// barrier (__syncthreads, __syncwarp, a ballot or a shuffle), then the next ready fiber runs
// (in lane order, or reversed with emu_set_order(1)). A barrier releases its waiters when the
// last participant arrives. Blocks run in turn. Errors (deadlock, collective waiting for an
// exited lane, __syncthreads with exited threads, __trap, a write past the dynamic shared
// memory of the launch) abort the launch and are reported through emu_last_error().
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cuda_emu.h"
#include "emu_registry.h"

// The dynamic shared memory of the running block (the kernels' `extern __shared__ float fp_smem[]`).
#define EMU_SMEM_BYTES (256 * 1024)
#define EMU_CANARY_BYTES 4096
thread_local __attribute__((aligned(16))) float fp_smem[(EMU_SMEM_BYTES + EMU_CANARY_BYTES) / 4];

// ------------------------------------------------------------------------------------------------
// Context switch: x86-64 (callee-saved registers, MXCSR and x87 control word); ucontext elsewhere.
// ------------------------------------------------------------------------------------------------
#if defined(__x86_64__) && !defined(EMU_USE_UCONTEXT)
extern "C" void emu_ctx_switch(void** save_sp, void* new_sp);
asm(R"(
.text
.globl emu_ctx_switch
.hidden emu_ctx_switch
.type emu_ctx_switch,@function
emu_ctx_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
.size emu_ctx_switch, .-emu_ctx_switch
)");
#define EMU_ASM_SWITCH 1
#else
#include <ucontext.h>
#endif

namespace emu {

enum State { READY = 0, RUNNING, WAIT_WARP, WAIT_BLOCK, DONE };

struct Fiber {
    emu_dim3 tid;
    int linear = 0, lane = 0, warp = 0;
    State state = READY;
    unsigned wait_mask = 0;
    unsigned seq = 0;  // collectives done (parity selects the exchange buffer)
    char* stack = nullptr;
    size_t stack_size = 0;
#ifdef EMU_ASM_SWITCH
    void* sp = nullptr;
#else
    ucontext_t ctx;
#endif
};

struct Warp {
    unsigned exist = 0;    // lanes that exist in this block
    unsigned arrived = 0;  // lanes waiting at a warp barrier
    unsigned done = 0;     // lanes that have exited
    unsigned long long buf[2][32];
};

struct Block {
    std::vector<Fiber> fibers;
    std::vector<Warp> warps;
    int nthreads = 0;
    int arrived = 0;  // threads waiting at __syncthreads
    int ndone = 0;
    std::string error;
#ifdef EMU_ASM_SWITCH
    void* sched_sp = nullptr;
#else
    ucontext_t sched_ctx;
#endif
};

thread_local Fiber* g_cur = nullptr;
thread_local BlockCtx g_blk;
static thread_local Block* g_block = nullptr;
static thread_local void (*g_thunk)(void**) = nullptr;
static thread_local void** g_args = nullptr;
static thread_local std::string g_last_error;
static thread_local int g_order = 0;  // 0: lanes ascending, 1: descending

const emu_dim3& thread_idx() { return g_cur->tid; }

static void to_scheduler() {
    Fiber* f = g_cur;
#ifdef EMU_ASM_SWITCH
    emu_ctx_switch(&f->sp, g_block->sched_sp);
#else
    swapcontext(&f->ctx, &g_block->sched_ctx);
#endif
}

[[noreturn]] void trap(const char* why) {
    Block* b = g_block;
    if (b->error.empty()) {
        char buf[160];
        std::snprintf(buf, sizeof buf, " (block %u,%u,%u thread %u,%u,%u)", g_blk.block_idx.x, g_blk.block_idx.y,
                      g_blk.block_idx.z, g_cur->tid.x, g_cur->tid.y, g_cur->tid.z);
        b->error = std::string(why) + buf;
    }
    g_cur->state = DONE;
    to_scheduler();
    std::abort();  // never resumed
}

static void fiber_exit() {
    Fiber* f = g_cur;
    Block* b = g_block;
    Warp& w = b->warps[f->warp];
    w.done |= 1u << f->lane;
    f->state = DONE;
    b->ndone += 1;
    if (b->arrived > 0) trap("__syncthreads waits for a thread that exited");
    for (int l = 0; l < 32; ++l) {
        if ((w.arrived >> l) & 1u) {
            const Fiber& o = b->fibers[f->warp * 32 + l];
            if ((o.wait_mask >> f->lane) & 1u) trap("a warp collective waits for a lane that exited");
        }
    }
    to_scheduler();
}

static void fiber_main() {
    g_thunk(g_args);
    fiber_exit();
}

#ifdef EMU_ASM_SWITCH
extern "C" __attribute__((used)) void emu_fiber_entry() {
    fiber_main();
    std::abort();
}
#endif

void syncthreads() {
    Block* b = g_block;
    if (b->ndone > 0) trap("__syncthreads called after some threads of the block exited");
    b->arrived += 1;
    if (b->arrived == b->nthreads) {
        b->arrived = 0;
        for (auto& o : b->fibers)
            if (o.state == WAIT_BLOCK) o.state = READY;
        return;
    }
    g_cur->state = WAIT_BLOCK;
    to_scheduler();
}

static void warp_wait(unsigned mask) {
    Fiber* f = g_cur;
    Block* b = g_block;
    Warp& w = b->warps[f->warp];
    const unsigned me = 1u << f->lane;
    if (!(mask & me)) trap("warp collective called by a lane outside its mask");
    if (mask & ~w.exist) trap("warp collective mask names lanes that do not exist in the block");
    if (mask & w.done) trap("warp collective waits for a lane that exited");
    w.arrived |= me;
    f->wait_mask = mask;
    if ((w.arrived & mask) == mask) {
        for (int l = 0; l < 32; ++l) {
            if (!((mask >> l) & 1u) || l == f->lane) continue;
            Fiber& o = b->fibers[f->warp * 32 + l];
            if (o.wait_mask != mask) trap("lanes of one warp wait at collectives with different masks");
            o.state = READY;
        }
        w.arrived &= ~mask;
        return;
    }
    f->state = WAIT_WARP;
    to_scheduler();
}

void syncwarp(unsigned mask) { warp_wait(mask); }

unsigned ballot(unsigned mask, int pred) {
    Fiber* f = g_cur;
    Warp& w = g_block->warps[f->warp];
    const int par = f->seq++ & 1;
    w.buf[par][f->lane] = pred ? 1ull : 0ull;
    warp_wait(mask);
    unsigned r = 0;
    for (int l = 0; l < 32; ++l)
        if (((mask >> l) & 1u) && w.buf[par][l]) r |= 1u << l;
    return r;
}

unsigned long long shfl_raw(unsigned mask, unsigned long long v, int kind, int arg, int width) {
    Fiber* f = g_cur;
    Warp& w = g_block->warps[f->warp];
    if (width <= 0 || width > 32 || (width & (width - 1))) trap("shuffle width must be a power of 2 <= 32");
    const int par = f->seq++ & 1;
    w.buf[par][f->lane] = v;
    warp_wait(mask);
    const int lane = f->lane;
    const int lo = lane & ~(width - 1), hi = lo + width;
    int src = lane;
    switch (kind) {
        case SHFL_IDX: src = lo + (arg & (width - 1)); break;
        case SHFL_XOR: src = lane ^ arg; if (src >= hi) src = lane; break;
        case SHFL_DOWN: src = lane + arg; if (src >= hi) src = lane; break;
        default: src = lane - arg; if (src < lo) src = lane; break;
    }
    if (src < 0 || src > 31 || !((mask >> src) & 1u)) trap("shuffle reads a lane outside the mask");
    return w.buf[par][src];
}

// ------------------------------------------------------------------------------------------------
// Fiber stacks and the block scheduler.
// ------------------------------------------------------------------------------------------------
static const size_t kStack = 256 * 1024;
static thread_local std::vector<char*> g_stacks;

static char* stack_for(size_t i) {
    while (g_stacks.size() <= i) {
        const size_t page = (size_t)sysconf(_SC_PAGESIZE);
        void* p = mmap(nullptr, kStack + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return nullptr;
        mprotect(p, page, PROT_NONE);  // guard page: a stack overflow faults instead of corrupting
        g_stacks.push_back(static_cast<char*>(p) + page);
    }
    return g_stacks[i];
}

static bool run_block(Block& b, emu_dim3 bdim) {
    const int n = (int)(bdim.x * bdim.y * bdim.z);
    b.nthreads = n;
    b.arrived = 0;
    b.ndone = 0;
    b.error.clear();
    b.fibers.assign(n, Fiber());
    b.warps.assign((n + 31) / 32, Warp());
    for (int i = 0; i < n; ++i) {
        Fiber& f = b.fibers[i];
        f.linear = i;
        f.tid = {(unsigned)(i % bdim.x), (unsigned)((i / bdim.x) % bdim.y), (unsigned)(i / (bdim.x * bdim.y))};
        f.lane = i & 31;
        f.warp = i >> 5;
        b.warps[f.warp].exist |= 1u << f.lane;
        char* st = stack_for(i);
        if (!st) {
            b.error = "cannot allocate fiber stacks";
            return false;
        }
        f.stack = st;
        f.stack_size = kStack;
#ifdef EMU_ASM_SWITCH
        // initial frame popped by emu_ctx_switch: [mxcsr|fpucw][r15 r14 r13 r12 rbx rbp][ret=entry][pad]
        uintptr_t top = ((uintptr_t)(st + kStack)) & ~(uintptr_t)15;
        uint64_t* sp = reinterpret_cast<uint64_t*>(top);
        *--sp = 0;                                             // fake return address of emu_fiber_entry
        *--sp = (uint64_t)(uintptr_t)&emu_fiber_entry;          // popped by `ret`
        for (int r = 0; r < 6; ++r) *--sp = 0;                  // rbp rbx r12 r13 r14 r15
        *--sp = (uint64_t)0x1F80u | ((uint64_t)0x037Fu << 32);  // MXCSR default, x87 control word
        f.sp = sp;
#else
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = st;
        f.ctx.uc_stack.ss_size = kStack;
        f.ctx.uc_link = nullptr;
        makecontext(&f.ctx, (void (*)())fiber_main, 0);
#endif
    }
    g_block = &b;
    while (b.ndone < n && b.error.empty()) {
        bool ran = false;
        for (int k = 0; k < n && b.error.empty(); ++k) {
            Fiber& f = b.fibers[g_order ? n - 1 - k : k];
            if (f.state != READY) continue;
            f.state = RUNNING;
            g_cur = &f;
            ran = true;
#ifdef EMU_ASM_SWITCH
            emu_ctx_switch(&b.sched_sp, f.sp);
#else
            swapcontext(&b.sched_ctx, &f.ctx);
#endif
            g_cur = nullptr;
        }
        if (!ran && b.error.empty()) {
            int nw = 0, nb = 0;
            for (auto& f : b.fibers) {
                nw += f.state == WAIT_WARP;
                nb += f.state == WAIT_BLOCK;
            }
            char buf[200];
            std::snprintf(buf, sizeof buf,
                          "deadlock: %d threads wait at warp collectives, %d at __syncthreads, %d exited "
                          "(block %u,%u,%u)",
                          nw, nb, b.ndone, g_blk.block_idx.x, g_blk.block_idx.y, g_blk.block_idx.z);
            b.error = buf;
        }
    }
    g_block = nullptr;
    return b.error.empty();
}

}  // namespace emu

// ------------------------------------------------------------------------------------------------
// Registry and C API (ctypes).
// ------------------------------------------------------------------------------------------------
std::vector<emu::KernelInfo>& emu::registry() {
    static std::vector<KernelInfo> r;
    return r;
}

extern "C" {

int emu_num_kernels() { return (int)emu::registry().size(); }
const char* emu_kernel_name(int i) { return emu::registry()[i].name; }
const char* emu_kernel_signature(int i) { return emu::registry()[i].signature.c_str(); }
long long emu_kernel_static_smem(int i) { return (long long)emu::registry()[i].static_smem; }
int emu_kernel_max_threads(int i) { return emu::registry()[i].max_threads; }
const char* emu_last_error() { return emu::g_last_error.c_str(); }
long long emu_max_dynamic_smem() { return EMU_SMEM_BYTES; }
void emu_set_order(int reverse) { emu::g_order = reverse ? 1 : 0; }

// Run kernel `kid` on grid (gx, gy, gz) x block (bx, by, bz) with `smem` bytes of dynamic shared
// memory; args[i] points to the value of parameter i. Returns 0, or -1 (see emu_last_error()).
int emu_launch(int kid, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
               unsigned long long smem, void** args) {
    using namespace emu;
    g_last_error.clear();
    if (kid < 0 || kid >= emu_num_kernels()) {
        g_last_error = "unknown kernel id";
        return -1;
    }
    const KernelInfo& k = registry()[kid];
    const unsigned long long nthr = (unsigned long long)bx * by * bz;
    if (!gx || !gy || !gz || !nthr || nthr > 1024 || bz > 64 || gy > 65535 || gz > 65535) {
        g_last_error = "invalid launch configuration (grid/block dimensions)";
        return -1;
    }
    if ((int)nthr > k.max_threads) {
        g_last_error = std::string("too many threads per block for ") + k.name + " (__launch_bounds__ " +
                       std::to_string(k.max_threads) + ")";
        return -1;
    }
    if (smem > EMU_SMEM_BYTES) {
        g_last_error = "dynamic shared memory above the emulator's 256 KiB";
        return -1;
    }
    g_thunk = k.thunk;
    g_args = args;
    Block b;
    unsigned char* dyn = reinterpret_cast<unsigned char*>(fp_smem);
    for (unsigned z = 0; z < gz; ++z)
        for (unsigned y = 0; y < gy; ++y)
            for (unsigned x = 0; x < gx; ++x) {
                g_blk.block_idx = {x, y, z};
                g_blk.block_dim = {bx, by, bz};
                g_blk.grid_dim = {gx, gy, gz};
                std::memset(dyn, 0xFF, smem);                       // uninitialised: NaN floats
                std::memset(dyn + smem, 0xA5, EMU_CANARY_BYTES);    // canary after the launch's size
                if (!run_block(b, g_blk.block_dim)) {
                    g_last_error = b.error;
                    return -1;
                }
                for (size_t i = 0; i < EMU_CANARY_BYTES; ++i)
                    if (dyn[smem + i] != 0xA5) {
                        char buf[200];
                        std::snprintf(buf, sizeof buf,
                                      "%s wrote past its %llu bytes of dynamic shared memory (offset %llu, block "
                                      "%u,%u,%u)",
                                      k.name, smem, (unsigned long long)(smem + i), x, y, z);
                        g_last_error = buf;
                        return -1;
                    }
            }
    return 0;
}

}  // extern "C"
