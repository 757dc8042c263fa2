//! A folder on this machine as a source: the demo, tests of everything downstream, and
//! customers who drop files on a shared disk.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use super::settings::After;
use super::{RemoteFile, Source, SourceError, select};

pub struct LocalSource {
    dir: PathBuf,
}

impl LocalSource {
    pub fn new(dir: PathBuf) -> Self {
        LocalSource { dir }
    }

    /// Paths in the config are relative to `dir` (an absolute one is taken as is).
    fn real(&self, path: &str) -> PathBuf {
        let p = PathBuf::from(path);
        if p.is_absolute() { p } else { self.dir.join(path) }
    }
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> SourceError {
    move |source| SourceError::Io { context, source }
}

impl Source for LocalSource {
    fn list(&mut self, pattern: &str) -> Result<Vec<RemoteFile>, SourceError> {
        let glob = select::compile_glob(pattern)?;
        let folder = glob.folder.as_str();
        let real_folder = self.real(folder);
        let entries = fs::read_dir(&real_folder).map_err(io(format!("cannot list folder {}", real_folder.display())))?;
        let mut out = Vec::new();
        for e in entries {
            let e = e.map_err(io(format!("cannot list folder {}", real_folder.display())))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let md = e.metadata().map_err(io(format!("cannot stat {}", e.path().display())))?;
            if !md.is_file() || !glob.matches(&name) {
                continue;
            }
            let path = if folder == "." { name } else { format!("{}/{}", folder.trim_end_matches('/'), name) };
            out.push(RemoteFile { path, size: md.len(), mtime: md.modified().ok().map(Into::into) });
        }
        Ok(out)
    }

    fn stat(&mut self, path: &str) -> Result<RemoteFile, SourceError> {
        let real = self.real(path);
        let md = fs::metadata(&real).map_err(io(format!("cannot stat {}", real.display())))?;
        Ok(RemoteFile { path: path.to_string(), size: md.len(), mtime: md.modified().ok().map(Into::into) })
    }

    fn read_from(&mut self, file: &RemoteFile, offset: u64, sink: &mut dyn Write, max_size: u64) -> Result<u64, SourceError> {
        let real = self.real(&file.path);
        let mut f = fs::File::open(&real).map_err(io(format!("cannot open {}", real.display())))?;
        f.seek(SeekFrom::Start(offset)).map_err(io(format!("cannot seek in {}", real.display())))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut written = 0u64;
        loop {
            let n = f.read(&mut buf).map_err(io(format!("cannot read {}", real.display())))?;
            if n == 0 {
                return Ok(written);
            }
            sink.write_all(&buf[..n]).map_err(io("cannot write the download".into()))?;
            written += n as u64;
            if offset + written > max_size {
                return Err(SourceError::TooLarge { path: file.path.clone(), size: offset + written, max: max_size });
            }
        }
    }

    fn in_place(&self, file: &RemoteFile) -> Option<PathBuf> {
        Some(self.real(&file.path))
    }

    fn finish(&mut self, file: &RemoteFile, after: &After) -> Result<(), SourceError> {
        let real = self.real(&file.path);
        match after {
            After::Keep => Ok(()),
            After::Delete => fs::remove_file(&real).map_err(io(format!("cannot delete {}", real.display()))),
            After::Move(dir) => {
                let target_dir = self.real(dir);
                fs::create_dir_all(&target_dir).map_err(io(format!("cannot create {}", target_dir.display())))?;
                let target = target_dir.join(file.name());
                fs::rename(&real, &target).map_err(io(format!("cannot move {} to {}", real.display(), target.display())))
            }
        }
    }

    fn put(&mut self, path: &str, bytes: &[u8]) -> Result<(), SourceError> {
        let real = self.real(path);
        if let Some(dir) = real.parent() {
            fs::create_dir_all(dir).map_err(io(format!("cannot create {}", dir.display())))?;
        }
        let name = real.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let temp = real.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        fs::write(&temp, bytes).map_err(io(format!("cannot write {}", temp.display())))?;
        // rename(2) replaces the target in one step.
        fs::rename(&temp, &real).map_err(|e| {
            let _ = fs::remove_file(&temp);
            SourceError::Io { context: format!("cannot rename {} to {}", temp.display(), real.display()), source: e }
        })
    }

    fn describe(&self) -> String {
        format!("local:{}", self.dir.display())
    }
}
