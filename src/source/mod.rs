//! Source: lists, selects and downloads the export file. `sftp` is the real one; `local`
//! (a folder) serves the demo and the tests of everything downstream.
//!
//! Sources are blocking (libssh2 is); `sync` runs them on a blocking thread under a deadline.

pub mod local;
pub mod select;
pub mod sftp;

use std::io::Write;

use chrono::{DateTime, Utc};

use crate::config::{After, SourceConfig};
use crate::exit::{Classify, Exit};

/// A file on the source, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// Full path on the source (as the config's `path` is written).
    pub path: String,
    pub size: u64,
    pub mtime: Option<DateTime<Utc>>,
}

impl RemoteFile {
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// What a completed download was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub bytes: u64,
    /// Lowercase hex.
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot connect to {host}:{port}: {detail}; check host, port and firewall")]
    Connect { host: String, port: u16, detail: String },
    #[error("{0}")]
    HostKey(String),
    #[error("authentication as \"{user}\" on {host} failed: {detail}")]
    Auth { user: String, host: String, detail: String },
    #[error("{0}")]
    Algorithms(String),
    #[error("{host}: {step} timed out after {secs}s; the server may be overloaded, or something between us drops packets")]
    Timeout { host: String, step: String, secs: u64 },
    #[error("{0}")]
    NoFile(String),
    #[error("file {path} is {size} bytes, above max_size ({max}); raise [file] max_size if this is expected")]
    TooLarge { path: String, size: u64, max: u64 },
    #[error("download of {path} was cut after {got} of {expected} bytes: {detail}")]
    Truncated { path: String, got: u64, expected: u64, detail: String },
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("{0}")]
    Stale(String),
    #[error("{0}")]
    Other(String),
}

impl Classify for SourceError {
    fn exit(&self) -> Exit {
        match self {
            SourceError::Connect { .. }
            | SourceError::HostKey(_)
            | SourceError::Auth { .. }
            | SourceError::Algorithms(_)
            | SourceError::Timeout { .. } => Exit::Connection,
            SourceError::NoFile(_) | SourceError::TooLarge { .. } | SourceError::Stale(_) => Exit::Data,
            SourceError::Truncated { .. } => Exit::Connection,
            SourceError::Io { .. } | SourceError::Other(_) => Exit::Other,
        }
    }
    fn retriable(&self) -> bool {
        matches!(self, SourceError::Connect { .. } | SourceError::Timeout { .. } | SourceError::Truncated { .. })
    }
}

/// A connected source.
pub trait Source: Send {
    /// Files in the folder of `pattern` whose names match its glob (or the exact file).
    fn list(&mut self, pattern: &str) -> Result<Vec<RemoteFile>, SourceError>;
    /// Streams the whole file into `sink`, hashing as it goes. Fails (never returns a
    /// short read as success) when fewer bytes arrive than `file.size`, or more than `max_size`.
    fn fetch(&mut self, file: &RemoteFile, sink: &mut dyn Write, max_size: u64) -> Result<Fetched, SourceError>;
    /// Applies `after` to a file that has been synced.
    fn finish(&mut self, file: &RemoteFile, after: &After) -> Result<(), SourceError>;
    /// "sftp://user@host:port" or "local:/dir", for reports and errors.
    fn describe(&self) -> String;
}

/// Connects to the configured source.
pub fn connect(cfg: &SourceConfig) -> Result<Box<dyn Source>, SourceError> {
    match cfg {
        SourceConfig::Local { dir } => Ok(Box::new(local::LocalSource::new(dir.clone()))),
        SourceConfig::Sftp(s) => Ok(Box::new(sftp::SftpSource::connect(s)?)),
    }
}

/// A writer that hashes what passes through it and counts bytes.
pub struct HashingWriter<'a> {
    inner: &'a mut dyn Write,
    hasher: sha2::Sha256,
    pub bytes: u64,
}

impl<'a> HashingWriter<'a> {
    pub fn new(inner: &'a mut dyn Write) -> Self {
        use sha2::Digest;
        HashingWriter { inner, hasher: sha2::Sha256::new(), bytes: 0 }
    }
    pub fn finish(self) -> Fetched {
        use sha2::Digest;
        Fetched { bytes: self.bytes, sha256: hex::encode(self.hasher.finalize()) }
    }
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
