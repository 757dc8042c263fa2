/// mimalloc, not glibc's malloc: a run allocates a few small blocks per cell and per user
/// on one thread and frees many of them on another (the reader hands records to the
/// mapping workers). glibc's per-thread arenas made that a sixth of a 1M-row dry run's CPU
/// (malloc, free and consolidation in perf); mimalloc's thread-local free lists do not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its index in `mi_option_e`, mimalloc.h, the same in
/// its versions 2 and 3; `libmimalloc-sys` names no constant for it).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() {
    // Memory freed is handed back to the system at once rather than after a second: a run
    // frees as it goes (records after mapping, users as they are sent and committed), and
    // with the delay the pages of one phase were still held when the next allocated, which
    // set the peak. 1M dry run 477 -> 437 MiB, first sync 650 -> 612 MiB, at ~2 s more
    // system CPU in the first sync (BENCHMARKS.md, issue 29, third pass).
    // SAFETY: sets a plain integer option; mimalloc reads options atomically and allows
    // setting them at any time.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0) };
    std::process::exit(rostersync::cli::main());
}

#[cfg(test)]
mod tests {
    /// The option index is mimalloc's purge delay: its default is 1000 ms (mimalloc 3's
    /// options.c), which none of its neighbours has (a mimalloc upgrade that renumbered the
    /// options, or changed the default this comment gives, fails here).
    #[test]
    fn the_option_set_is_the_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // SAFETY: reads an integer option.
            assert_eq!(unsafe { libmimalloc_sys::mi_option_get(super::PURGE_DELAY) }, 1000);
            assert_ne!(unsafe { libmimalloc_sys::mi_option_get(super::PURGE_DELAY - 1) }, 1000);
            assert_ne!(unsafe { libmimalloc_sys::mi_option_get(super::PURGE_DELAY + 1) }, 1000);
        }
    }
}
