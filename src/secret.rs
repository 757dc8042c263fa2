//! Where a secret comes from: an environment variable (`token_env`, `password_env`, …) or a
//! file (`token_file`, `password_file`, …), the form systemd credentials
//! (`LoadCredential=`, read from `$CREDENTIALS_DIRECTORY`) and Kubernetes secrets mounted as
//! files take. The config holds only the name or the path; the value is read where it is
//! used, registered with `crate::redact` at once, and never appears in a message: errors
//! name the variable or the path.

use std::path::{Path, PathBuf};

use crate::exit::{Classify, Exit};

/// A secret's source, as the config names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// The name of an environment variable.
    Env(String),
    /// A file holding the value (one trailing newline is not part of it).
    File(PathBuf),
}

/// Why a secret could not be read. Names the variable or the file, never the value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {var} ({what}) is not set; set it in the service's environment")]
    Unset { var: String, what: String },
    #[error("environment variable {var} ({what}) is empty; set it to the value you were given")]
    EmptyVar { var: String, what: String },
    #[error("cannot read {what} from file {}: {source}; check the path and that the service's user may read it", path.display())]
    Unreadable { path: PathBuf, what: String, source: std::io::Error },
    #[error("file {} ({what}) is empty; write the value into it", path.display())]
    EmptyFile { path: PathBuf, what: String },
    #[error("file {} ({what}) is not UTF-8 text; write the value into it as text", path.display())]
    NotText { path: PathBuf, what: String },
}

impl Classify for SecretError {
    fn exit(&self) -> Exit {
        Exit::Config
    }
}

impl SecretRef {
    /// A variable's name; the form most callers (and tests) build by hand.
    pub fn env(name: impl Into<String>) -> SecretRef {
        SecretRef::Env(name.into())
    }

    /// The value, registered with the redactor before it is returned. `what` says what the
    /// secret is for in the error ("the password", "the platform's SCIM bearer token").
    /// A variable's value is returned as it is; a file's loses one trailing newline (what
    /// `echo` and editors add), nothing else.
    pub fn read(&self, what: &str) -> Result<String, SecretError> {
        let value = match self {
            SecretRef::Env(var) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => v,
                Ok(_) => return Err(SecretError::EmptyVar { var: var.clone(), what: what.into() }),
                Err(std::env::VarError::NotPresent) => return Err(SecretError::Unset { var: var.clone(), what: what.into() }),
                // Not unicode: present but unusable; said as "empty" would mislead.
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(SecretError::EmptyVar { var: var.clone(), what: format!("{what}, not valid UTF-8") });
                }
            },
            SecretRef::File(path) => read_file(path, what)?,
        };
        crate::redact::register(&value);
        Ok(value)
    }

    /// How a message names the source: "$VAR" or "file PATH".
    pub fn describe(&self) -> String {
        match self {
            SecretRef::Env(v) => format!("${v}"),
            SecretRef::File(p) => format!("file {}", p.display()),
        }
    }

    /// As an SFTP message names it: "VAR" or "file PATH".
    pub fn label(&self) -> String {
        match self {
            SecretRef::Env(v) => v.clone(),
            SecretRef::File(p) => format!("file {}", p.display()),
        }
    }

    /// The variable's name, for an env source.
    pub fn env_name(&self) -> Option<&str> {
        match self {
            SecretRef::Env(v) => Some(v),
            SecretRef::File(_) => None,
        }
    }
}

impl From<&str> for SecretRef {
    fn from(name: &str) -> SecretRef {
        SecretRef::Env(name.into())
    }
}

impl From<String> for SecretRef {
    fn from(name: String) -> SecretRef {
        SecretRef::Env(name)
    }
}

/// Tests compare a source with the variable name they configured.
impl PartialEq<str> for SecretRef {
    fn eq(&self, other: &str) -> bool {
        self.env_name() == Some(other)
    }
}

fn read_file(path: &Path, what: &str) -> Result<String, SecretError> {
    let bytes = std::fs::read(path).map_err(|source| SecretError::Unreadable { path: path.into(), what: what.into(), source })?;
    let text = String::from_utf8(bytes).map_err(|_| SecretError::NotText { path: path.into(), what: what.into() })?;
    let value = strip_one_newline(&text);
    if value.is_empty() {
        return Err(SecretError::EmptyFile { path: path.into(), what: what.into() });
    }
    Ok(value.to_string())
}

/// `text` without one trailing "\n" (or "\r\n"): a secret may itself end in spaces, so
/// nothing more is trimmed.
pub fn strip_one_newline(text: &str) -> &str {
    text.strip_suffix("\r\n").or_else(|| text.strip_suffix('\n')).unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_trailing_newline_is_dropped_and_nothing_else() {
        assert_eq!(strip_one_newline("tok\n"), "tok");
        assert_eq!(strip_one_newline("tok\r\n"), "tok");
        assert_eq!(strip_one_newline("tok\n\n"), "tok\n");
        assert_eq!(strip_one_newline(" tok "), " tok ");
    }

    #[test]
    fn a_file_secret_is_read_registered_and_never_echoed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "file-secret-4242\n").unwrap();
        let s = SecretRef::File(p.clone());
        assert_eq!(s.read("the token").unwrap(), "file-secret-4242");
        assert_eq!(crate::redact::redact("said file-secret-4242"), "said ***");
        std::fs::write(&p, "\n").unwrap();
        let e = s.read("the token").unwrap_err().to_string();
        assert!(e.contains(&p.display().to_string()) && e.contains("is empty"), "{e}");
        let missing = SecretRef::File(dir.path().join("nope"));
        let e = missing.read("the token").unwrap_err().to_string();
        assert!(e.starts_with("cannot read the token from file ") && e.contains("nope"), "{e}");
        assert_eq!(SecretRef::env("X").describe(), "$X");
        assert_eq!(SecretRef::File("/run/t".into()).describe(), "file /run/t");
    }
}
