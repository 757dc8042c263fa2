//! How soon the allocator (mimalloc, `main.rs`) hands freed memory back to the system.
//!
//! A run builds its large structures once and frees them as it goes: the records once
//! mapped, the file's users once planned or sent. With mimalloc's default delay (a second)
//! one phase's freed pages were still held when the next allocated, which set the run's
//! peak: purged at once, the 1M dry run peaks at ~440 MiB instead of ~575 (BENCHMARKS.md,
//! issue 29, third pass). During a push, though, tens of thousands of request and answer
//! buffers a second are freed and allocated again, and purging each page at once cost a
//! million-user first sync ~4 s of system CPU (12 %): while any push is in flight the
//! delay is the short one mimalloc 2 had.
//!
//! The daemon runs without transparent huge pages ([`daemon_without_huge_pages`]). With
//! them, mimalloc's memory is faulted in 2 MiB at a time: at 200 connectors the daemon's RSS
//! floor was 71 MiB and crept up 15 MiB over 2,400 small runs as their allocations spread
//! over more huge pages; with 4 KiB pages it was 53 MiB and rose 1.2 MiB. Its runs come on a
//! schedule, onto memory a VM may have handed back to its host meanwhile, where a huge page
//! costs ~2 ms per MiB to fault in (BENCHMARKS.md, issue 29, sixth pass). One-off commands
//! keep mimalloc's default: back to back on warm memory, huge pages saved them CPU.
//!
//! In a binary with another allocator (the tests) the purge settings change nothing.

use std::sync::atomic::{AtomicUsize, Ordering};

/// mimalloc's `mi_option_purge_delay`: its index in `mi_option_e` (mimalloc.h, the same in
/// its versions 2 and 3; `libmimalloc-sys` names no constant for it).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// Milliseconds, while a push is in flight.
const DURING_PUSH_MS: std::ffi::c_long = 10;

static PUSHES: AtomicUsize = AtomicUsize::new(0);

fn set_purge_delay(ms: std::ffi::c_long) {
    // SAFETY: sets a plain integer option, which mimalloc reads atomically and allows to be
    // set at any time.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, ms) };
}

/// At the daemon's start, on Linux: no transparent huge pages for this process, unless the
/// operator set mimalloc's own variable (`MIMALLOC_ALLOW_THP`, which mimalloc then applies).
/// The flag is the process's and checked at each page fault, so it holds for memory mapped
/// before too. A kernel that refuses it changes nothing but memory and speed.
pub fn daemon_without_huge_pages() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        let _ = nix::sys::prctl::set_thp_disable(true);
    }
}

/// At start-up: freed memory goes back at once.
pub fn purge_at_once() {
    set_purge_delay(0);
}

/// Held while a push sends: the short delay until the last push in flight ends (a daemon
/// runs several connectors at once).
pub struct Pushing(());

impl Pushing {
    pub fn start() -> Pushing {
        if PUSHES.fetch_add(1, Ordering::AcqRel) == 0 {
            set_purge_delay(DURING_PUSH_MS);
        }
        Pushing(())
    }
}

impl Drop for Pushing {
    fn drop(&mut self) {
        if PUSHES.fetch_sub(1, Ordering::AcqRel) == 1 {
            set_purge_delay(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn the_daemon_runs_without_huge_pages_unless_the_operator_allows_them() {
        let before = nix::sys::prctl::get_thp_disable().unwrap();
        daemon_without_huge_pages();
        let after = nix::sys::prctl::get_thp_disable().unwrap();
        if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
            assert!(after, "huge pages still allowed");
        } else {
            assert_eq!(after, before, "the operator's choice was overridden");
        }
    }

    fn delay() -> std::ffi::c_long {
        // SAFETY: reads an integer option.
        unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) }
    }

    /// The index is mimalloc's purge delay: its default is 1000 ms (mimalloc 3's options.c),
    /// which none of its neighbours has, so a mimalloc that renumbered the options (or
    /// changed that default) fails here. Then pushes in flight, nested, hold the short delay.
    #[test]
    fn the_purge_delay_is_short_while_a_push_is_in_flight_and_nil_otherwise() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(delay(), 1000);
            // SAFETY: reads integer options.
            let around = unsafe { [libmimalloc_sys::mi_option_get(PURGE_DELAY - 1), libmimalloc_sys::mi_option_get(PURGE_DELAY + 1)] };
            assert!(!around.contains(&1000), "{around:?}");
        }
        purge_at_once();
        assert_eq!(delay(), 0);
        let a = Pushing::start();
        let b = Pushing::start();
        assert_eq!(delay(), DURING_PUSH_MS);
        drop(a);
        assert_eq!(delay(), DURING_PUSH_MS, "another push is still in flight");
        drop(b);
        assert_eq!(delay(), 0);
    }
}
