//! Direct SQLite calls for the two bulk paths of the snapshot: loading it (a million rows)
//! and writing a batch of outcomes.
//!
//! Why: sqlx runs SQLite on a worker thread and hands every row over a channel as an owned
//! `SqliteRow` (each value copied, then the thread hop); for a 1M-user snapshot that was
//! 10 s of a 2-core machine, and a multi-row `INSERT … VALUES` re-bound 6 owned arguments a
//! row. One prepared statement stepped in place costs about a microsecond a row. sqlx
//! supports this officially: `lock_handle()` takes the connection from its worker thread
//! while we use it (see the sqlx-sqlite crate docs, "libsqlite3-sys Version").
//!
//! Everything unsafe is in this file; callers see `Stmt` with safe methods.

use std::ffi::{CStr, CString, c_int};
use std::ptr::NonNull;

use libsqlite3_sys as ffi;

/// A borrowed connection handle (from `LockedSqliteHandle::as_raw_handle`); valid while the
/// lock is held, which the lifetime of the caller's guard ensures.
pub(crate) struct Db(NonNull<ffi::sqlite3>);

impl Db {
    /// # Safety
    /// `h` must come from a `LockedSqliteHandle` that outlives this `Db` and its statements.
    pub(crate) unsafe fn new(h: NonNull<ffi::sqlite3>) -> Db {
        Db(h)
    }

    fn err(&self, what: &str) -> String {
        // SAFETY: the handle is live; sqlite3_errmsg returns a NUL-terminated string it owns.
        let msg = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(self.0.as_ptr())) };
        format!("{what}: {}", msg.to_string_lossy())
    }

    /// Runs statements that return no rows (BEGIN, COMMIT, ROLLBACK).
    pub(crate) fn exec(&self, sql: &str) -> Result<(), String> {
        let c = CString::new(sql).map_err(|e| e.to_string())?;
        // SAFETY: live handle, NUL-terminated SQL, no callback.
        let rc = unsafe { ffi::sqlite3_exec(self.0.as_ptr(), c.as_ptr(), None, std::ptr::null_mut(), std::ptr::null_mut()) };
        if rc != ffi::SQLITE_OK {
            return Err(self.err(sql));
        }
        Ok(())
    }

    pub(crate) fn prepare(&self, sql: &str) -> Result<Stmt<'_>, String> {
        let mut st = std::ptr::null_mut();
        // SAFETY: live handle; the SQL length is given, so it need not be NUL-terminated.
        let rc =
            unsafe { ffi::sqlite3_prepare_v2(self.0.as_ptr(), sql.as_ptr().cast(), sql.len() as c_int, &mut st, std::ptr::null_mut()) };
        match NonNull::new(st) {
            Some(st) if rc == ffi::SQLITE_OK => Ok(Stmt { st, db: self }),
            _ => Err(self.err("prepare")),
        }
    }
}

/// A prepared statement; finalized when dropped.
pub(crate) struct Stmt<'a> {
    st: NonNull<ffi::sqlite3_stmt>,
    db: &'a Db,
}

impl Stmt<'_> {
    fn check(&self, rc: c_int, what: &str) -> Result<(), String> {
        if rc == ffi::SQLITE_OK { Ok(()) } else { Err(self.db.err(what)) }
    }

    /// Binds parameter `i` (1-based). SQLite copies the text (SQLITE_TRANSIENT), so the
    /// value need not outlive the call.
    pub(crate) fn bind_text(&mut self, i: c_int, v: &str) -> Result<(), String> {
        // SAFETY: live statement; pointer and length describe `v`; TRANSIENT makes SQLite copy.
        let rc = unsafe { ffi::sqlite3_bind_text(self.st.as_ptr(), i, v.as_ptr().cast(), v.len() as c_int, ffi::SQLITE_TRANSIENT()) };
        self.check(rc, "bind")
    }

    pub(crate) fn bind_blob(&mut self, i: c_int, v: &[u8]) -> Result<(), String> {
        // SAFETY: as bind_text.
        let rc = unsafe { ffi::sqlite3_bind_blob(self.st.as_ptr(), i, v.as_ptr().cast(), v.len() as c_int, ffi::SQLITE_TRANSIENT()) };
        self.check(rc, "bind")
    }

    pub(crate) fn bind_int(&mut self, i: c_int, v: i64) -> Result<(), String> {
        // SAFETY: live statement.
        let rc = unsafe { ffi::sqlite3_bind_int64(self.st.as_ptr(), i, v) };
        self.check(rc, "bind")
    }

    /// Steps once: true when a row is available, false when the statement is done.
    pub(crate) fn step(&mut self) -> Result<bool, String> {
        // SAFETY: live statement.
        match unsafe { ffi::sqlite3_step(self.st.as_ptr()) } {
            ffi::SQLITE_ROW => Ok(true),
            ffi::SQLITE_DONE => Ok(false),
            _ => Err(self.db.err("step")),
        }
    }

    /// Ready for the next set of bindings (the bindings themselves are kept).
    pub(crate) fn reset(&mut self) {
        // SAFETY: live statement. Its return code repeats the last step's error, already seen.
        unsafe { ffi::sqlite3_reset(self.st.as_ptr()) };
    }

    /// Column `i` (0-based) of the current row as text; "" for NULL, lossy for bad UTF-8.
    pub(crate) fn text(&self, i: c_int) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(self.blob(i))
    }

    /// Column `i` of the current row as bytes; valid until the next step or reset.
    pub(crate) fn blob(&self, i: c_int) -> &[u8] {
        // SAFETY: live statement positioned on a row. sqlite3_column_blob before
        // sqlite3_column_bytes is SQLite's documented order; the pointer stays valid until
        // the next step/reset/finalize, which need `&mut self` while this borrow lives.
        unsafe {
            let p = ffi::sqlite3_column_blob(self.st.as_ptr(), i);
            let n = ffi::sqlite3_column_bytes(self.st.as_ptr(), i);
            if p.is_null() || n <= 0 { &[] } else { std::slice::from_raw_parts(p.cast::<u8>(), n as usize) }
        }
    }

    pub(crate) fn int(&self, i: c_int) -> i64 {
        // SAFETY: live statement positioned on a row.
        unsafe { ffi::sqlite3_column_int64(self.st.as_ptr(), i) }
    }
}

impl Drop for Stmt<'_> {
    fn drop(&mut self) {
        // SAFETY: finalized exactly once, here.
        unsafe { ffi::sqlite3_finalize(self.st.as_ptr()) };
    }
}
