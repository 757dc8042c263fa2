//! Process-wide settings of the SQLite library, made once before its first connection.
//!
//! A first sync of a million people is SQLite's busiest hour: the writer thread inserts a
//! million snapshot rows, and perf showed 6 % of the whole run (13 % of that thread) in the
//! system allocator's `malloc`/`free` and the mutex SQLite takes around each of them to keep
//! its memory statistics (BENCHMARKS.md, issue 29, fifth pass). So:
//!
//! - no memory statistics (`SQLITE_CONFIG_MEMSTATUS` off, what SQLite's own documentation
//!   recommends for speed: rostersync sets no soft heap limit and reads no statistics);
//! - its allocations through mimalloc, the allocator the rest of the binary uses, not
//!   glibc's arenas (`SQLITE_CONFIG_MALLOC`).
//!
//! `sqlite3_config` only works before the library is initialised; a later call (another
//! part of the process opened SQLite first) is refused with `SQLITE_MISUSE`, and the library
//! keeps its defaults: slower, never wrong.

use std::ffi::{c_int, c_void};
use std::sync::OnceLock;

use libsqlite3_sys as ffi;

// The adapters: SQLite passes sizes as `int` and wants 8-byte alignment, which mimalloc's
// every block has.
unsafe extern "C" fn x_malloc(n: c_int) -> *mut c_void {
    // SAFETY: any size is allowed; SQLite never asks for a negative one.
    unsafe { libmimalloc_sys::mi_malloc(n.max(0) as usize) }
}

unsafe extern "C" fn x_free(p: *mut c_void) {
    // SAFETY: `p` came from `x_malloc` or `x_realloc` (SQLite frees only its own blocks).
    unsafe { libmimalloc_sys::mi_free(p) }
}

unsafe extern "C" fn x_realloc(p: *mut c_void, n: c_int) -> *mut c_void {
    // SAFETY: as `x_free` for `p`.
    unsafe { libmimalloc_sys::mi_realloc(p, n.max(0) as usize) }
}

unsafe extern "C" fn x_size(p: *mut c_void) -> c_int {
    // SAFETY: as `x_free` for `p`. SQLite's blocks are far below 2 GiB.
    unsafe { libmimalloc_sys::mi_usable_size(p) as c_int }
}

unsafe extern "C" fn x_roundup(n: c_int) -> c_int {
    // SAFETY: a pure size computation.
    unsafe { libmimalloc_sys::mi_good_size(n.max(0) as usize).min(c_int::MAX as usize) as c_int }
}

unsafe extern "C" fn x_init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_shutdown(_: *mut c_void) {}

/// What `configure` did, for the log and the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Configured {
    pub memstatus_off: bool,
    pub mimalloc: bool,
}

static DONE: OnceLock<Configured> = OnceLock::new();

/// Applies the settings, once per process; called before the first connection opens.
pub(crate) fn configure() -> Configured {
    *DONE.get_or_init(|| {
        // SQLite copies the methods (its `sqlite3GlobalConfig.m`): a local is enough.
        let methods = ffi::sqlite3_mem_methods {
            xMalloc: Some(x_malloc),
            xFree: Some(x_free),
            xRealloc: Some(x_realloc),
            xSize: Some(x_size),
            xRoundup: Some(x_roundup),
            xInit: Some(x_init),
            xShutdown: Some(x_shutdown),
            pAppData: std::ptr::null_mut(),
        };
        // SAFETY: `sqlite3_config` is called before any connection of this process (the
        // store calls this first) and inside `get_or_init`, so never concurrently; its
        // arguments are those each option documents: an int, and a pointer to methods
        // (copied by the call).
        let (memstatus, malloc) = unsafe {
            (
                ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int),
                ffi::sqlite3_config(ffi::SQLITE_CONFIG_MALLOC, &methods as *const ffi::sqlite3_mem_methods),
            )
        };
        let done = Configured { memstatus_off: memstatus == ffi::SQLITE_OK, mimalloc: malloc == ffi::SQLITE_OK };
        if !done.memstatus_off || !done.mimalloc {
            tracing::debug!(memstatus, malloc, "SQLite was initialised before rostersync configured it; it keeps its defaults");
        }
        done
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After the first store opened, SQLite allocates through mimalloc (a block it hands
    /// out lies in mimalloc's heap) and keeps no statistics: its memory-used counter is 0
    /// with a store open and a block held.
    #[tokio::test]
    async fn sqlite_allocates_through_mimalloc_without_statistics() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/s.db", dir.path().display());
        let store = super::super::sqlite::SqliteStore::open(&url).await.unwrap();
        assert_eq!(configure(), Configured { memstatus_off: true, mimalloc: true });
        // SAFETY: an allocation, and a plain read of the library's counter.
        let (used, p) = unsafe {
            let p = ffi::sqlite3_malloc(1000);
            (ffi::sqlite3_memory_used(), p)
        };
        assert!(!p.is_null());
        // SAFETY: `p` is a live block of 1,000 bytes from SQLite's allocator, now mimalloc's.
        unsafe {
            assert!(libmimalloc_sys::mi_is_in_heap_region(p), "SQLite's block is not mimalloc's");
            assert!(libmimalloc_sys::mi_usable_size(p) >= 1000);
            ffi::sqlite3_free(p);
        }
        assert_eq!(used, 0, "SQLite still keeps memory statistics");
        drop(store);
    }
}
