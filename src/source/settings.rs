//! What the source stage is configured with: where the export is (an SFTP server or a local
//! folder), how to log in and trust the host, which file to take and what to do with it
//! after. The source owns these types; `config` reads them from connectors.toml and checks
//! them.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::format::Format;
use crate::secret::SecretRef;

#[derive(Debug, Clone)]
pub enum SourceConfig {
    Sftp(Sftp),
    Local { dir: PathBuf },
}

#[derive(Debug, Clone)]
pub struct Sftp {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub auth: SftpAuth,
    pub host_key: HostKeyPolicy,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum SftpAuth {
    Key { private_key: PathBuf, passphrase: Option<SecretRef> },
    Password { password: SecretRef },
    KeyboardInteractive { password: SecretRef },
}

#[derive(Debug, Clone)]
pub enum HostKeyPolicy {
    /// "SHA256:base64" as OpenSSH prints it.
    Pinned(String),
    KnownHosts(PathBuf),
}

/// Which of the files matching `file.path` a run takes (`file.pick`). The name is kept
/// for the code that uses it; `mapping::suggest` has an unrelated private `Pick`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pick {
    /// The most recently modified.
    #[default]
    Newest,
    /// The lexically last name (dated names such as employees_2024-05-01.csv).
    LastName,
}

/// `file.after`: what a successful sync does with the file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum After {
    #[default]
    Keep,
    /// Into this folder on the same server.
    Move(String),
    Delete,
}

#[derive(Debug, Clone)]
pub struct FileRule {
    pub path: String,
    pub pick: Pick,
    /// None = auto by extension.
    pub format: Option<Format>,
    pub min_age: Duration,
    pub after: After,
    pub stale_after: Option<Duration>,
    pub max_size: u64,
}
