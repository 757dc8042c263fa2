//! SFTP source (ssh2 / libssh2): key, password and keyboard-interactive auth; host keys
//! verified against a pinned fingerprint or known_hosts; modern algorithms only.

use std::io::Write;

use super::{Fetched, RemoteFile, Source, SourceError};
use crate::config::{After, Sftp};

pub struct SftpSource {
    cfg: Sftp,
}

impl SftpSource {
    pub fn connect(cfg: &Sftp) -> Result<SftpSource, SourceError> {
        // Placeholder until the SFTP source lands (issue 3).
        let _ = SftpSource { cfg: cfg.clone() };
        Err(SourceError::Other("the SFTP source is not built yet".into()))
    }
}

impl Source for SftpSource {
    fn list(&mut self, _pattern: &str) -> Result<Vec<RemoteFile>, SourceError> {
        unimplemented!()
    }
    fn fetch(&mut self, _file: &RemoteFile, _sink: &mut dyn Write, _max_size: u64) -> Result<Fetched, SourceError> {
        unimplemented!()
    }
    fn finish(&mut self, _file: &RemoteFile, _after: &After) -> Result<(), SourceError> {
        unimplemented!()
    }
    fn describe(&self) -> String {
        format!("sftp://{}@{}:{}", self.cfg.username, self.cfg.host, self.cfg.port)
    }
}
