//! A real OpenSSH sshd for tests, serving internal-sftp on a free port (issue 3 fills this in).
