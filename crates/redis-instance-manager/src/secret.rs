//! A secret value (the upstream's password) that cannot leak through `Debug`, `Display` or
//! serialization by accident.

use std::path::Path;

/// A password read from a mounted Secret file. `Debug` prints `<redacted>`; there is no `Display`
/// and no `Serialize`, so the only way to get the value out is [`Secret::expose`], which is
/// called in exactly two places: `CONFIG SET masterauth` and the upstream probe's `AUTH`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the Redis protocol only. Never log or format it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Read a password file mounted from a Secret. A single trailing newline (`echo` style) is
    /// dropped; other whitespace is part of the password.
    pub fn read_file(path: &Path) -> Result<Secret, SecretFileError> {
        match std::fs::read_to_string(path) {
            Ok(mut s) => {
                if s.ends_with('\n') {
                    s.pop();
                    if s.ends_with('\r') {
                        s.pop();
                    }
                }
                if s.is_empty() {
                    Err(SecretFileError::Empty)
                } else {
                    Ok(Secret(s))
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(SecretFileError::Missing),
            Err(e) => Err(SecretFileError::Unreadable(e.kind().to_string())),
        }
    }
}

/// The Secret key (a file next to the password file) of the password being rotated out: while
/// it is there, the local Redis accepts it besides `password`, and the instance manager falls
/// back to it wherever `password` is refused (docs/password-rotation.md).
pub use redis_cluster_api::names::PREVIOUS_PASSWORD_KEY as PREVIOUS_KEY;

impl Secret {
    /// The `previousPassword` file next to the password file `path`: `None` when it is absent,
    /// empty or unreadable (then only `password` is used), or when it equals the password.
    pub fn read_previous(path: &Path, current: Option<&Secret>) -> Option<Secret> {
        let previous = Secret::read_file(&path.parent()?.join(PREVIOUS_KEY)).ok()?;
        (Some(&previous) != current).then_some(previous)
    }

    /// SHA-256 of the value, in hex: how `ACL GETUSER` lists a user's passwords, so that the
    /// passwords Redis accepts are compared without reading any of them back.
    pub fn sha256_hex(&self) -> String {
        let d = ring::digest::digest(&ring::digest::SHA256, self.0.as_bytes());
        d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Why a password file could not be used (never carries file content).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretFileError {
    #[error("does not exist")]
    Missing,
    #[error("is empty")]
    Empty,
    #[error("cannot be read ({0})")]
    Unreadable(String),
}

/// A password file the instance manager needs, which one, and why it cannot be used. The
/// messages say what to mount where; they are shown in `/status` (see docs/instance-manager.md,
/// "Errors a user can act on").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordFileError {
    /// `--redis-password-file`: the cluster's own password, for the local Redis.
    #[error("the local Redis password file {path} {reason}")]
    Local {
        path: String,
        reason: SecretFileError,
    },
    /// `upstream.passwordFile`: the upstream's password (`masterauth`, the probe's `AUTH`).
    #[error(
        "the source password file {path} {reason}: mount the source's auth Secret (key \"password\") at that path"
    )]
    Source {
        path: String,
        reason: SecretFileError,
    },
    /// `sentinel.passwordFile`: the password the Sentinels require.
    #[error("the Sentinels' password file {path} {reason}")]
    Sentinels {
        path: String,
        reason: SecretFileError,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{:?}", Some(&s)).contains("hunter2"));
    }

    #[test]
    fn reads_files_and_trims_one_newline() {
        let dir = std::env::temp_dir().join(format!("im-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("password");
        std::fs::write(&p, "pa ss\n").unwrap();
        assert_eq!(Secret::read_file(&p).unwrap().expose(), "pa ss");
        std::fs::write(&p, "x\r\n").unwrap();
        assert_eq!(Secret::read_file(&p).unwrap().expose(), "x");
        std::fs::write(&p, "").unwrap();
        assert_eq!(Secret::read_file(&p), Err(SecretFileError::Empty));
        assert_eq!(
            Secret::read_file(&dir.join("nope")),
            Err(SecretFileError::Missing)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_previous_password_is_read_next_to_the_password() {
        let dir = std::env::temp_dir().join(format!("im-previous-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("password");
        std::fs::write(&p, "new\n").unwrap();
        let current = Secret::read_file(&p).unwrap();
        assert_eq!(Secret::read_previous(&p, Some(&current)), None, "absent");
        std::fs::write(dir.join(PREVIOUS_KEY), "").unwrap();
        assert_eq!(Secret::read_previous(&p, Some(&current)), None, "empty");
        std::fs::write(dir.join(PREVIOUS_KEY), "new").unwrap();
        assert_eq!(Secret::read_previous(&p, Some(&current)), None, "the same");
        std::fs::write(dir.join(PREVIOUS_KEY), "old\n").unwrap();
        assert_eq!(
            Secret::read_previous(&p, Some(&current)).unwrap().expose(),
            "old"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        // As Redis lists it (ACL GETUSER: the SHA-256 of "foobared").
        assert_eq!(
            Secret::new("foobared").sha256_hex(),
            "1b58ee375b42e41f0e48ef2ff27d10a5b1f6924a9acdcdba7cae868e7adce6bf"
        );
    }

    #[test]
    fn password_file_errors_say_which_file_and_what_to_do() {
        let source = PasswordFileError::Source {
            path: "/etc/redis-source/password".into(),
            reason: SecretFileError::Missing,
        };
        assert_eq!(
            source.to_string(),
            "the source password file /etc/redis-source/password does not exist: mount the source's auth Secret (key \"password\") at that path"
        );
        let local = PasswordFileError::Local {
            path: "/etc/redis/auth/password".into(),
            reason: SecretFileError::Empty,
        };
        assert_eq!(
            local.to_string(),
            "the local Redis password file /etc/redis/auth/password is empty"
        );
        let sentinels = PasswordFileError::Sentinels {
            path: "/p".into(),
            reason: SecretFileError::Unreadable("permission denied".into()),
        };
        assert_eq!(
            sentinels.to_string(),
            "the Sentinels' password file /p cannot be read (permission denied)"
        );
    }
}
