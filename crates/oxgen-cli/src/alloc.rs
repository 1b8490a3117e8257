//! The binary's allocator. glibc's malloc hands big tensor buffers back to the kernel on every
//! free, so each op of a CPU training step page-faults (and zeroes) its output pages again: a
//! quarter of a GPT step went to system time. mimalloc keeps freed memory, and with purging off
//! it keeps it mapped, so a step reuses the pages of the one before (`docs/benchmarks.md`).

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_decommits` and `mi_option_purge_delay` in mimalloc.h (v3; the enum keeps
/// deprecated slots, so the numbers are stable).
const MI_OPTION_PURGE_DECOMMITS: libmimalloc_sys::mi_option_t = 5;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Turns purging off: freed pages stay committed for the next step.
pub(crate) fn keep_freed_pages() {
    // SAFETY: mi_option_set only stores an integer option; any value is valid for these
    // (-1: never purge; 0: a purge resets pages instead of decommitting them).
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1);
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DECOMMITS, 0);
    }
}
