/// mimalloc, not glibc's malloc: a run allocates a few small blocks per cell and per user
/// on one thread and frees many of them on another (the reader hands records to the
/// mapping workers). glibc's per-thread arenas made that a sixth of a 1M-row dry run's CPU
/// (malloc, free and consolidation in perf); mimalloc's thread-local free lists do not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // Freed memory handed back at once, except while a push sends (`rostersync::alloc`).
    rostersync::alloc::purge_at_once();
    std::process::exit(rostersync::cli::main());
}
