//! The staff bearer token: configured, or generated once and kept in the data directory
//! (mode 0600) so it survives restarts; checked in constant time.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

pub const TOKEN_FILE: &str = "staff-token";
const TOKEN_BYTES: usize = 24;

/// The configured token, else the stored one, else a new random one stored for next time.
pub fn load_or_create(configured: Option<&str>, data_dir: &Path) -> io::Result<String> {
    if let Some(token) = configured {
        return Ok(token.to_string());
    }
    let path = data_dir.join(TOKEN_FILE);
    match fs::read_to_string(&path) {
        Ok(stored) if !stored.trim().is_empty() => return Ok(stored.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut random = [0u8; TOKEN_BYTES];
    fs::File::open("/dev/urandom")?.read_exact(&mut random)?;
    let token: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    file.write_all(token.as_bytes())?;
    file.sync_all()?;
    log::info!(
        "generated a staff token and stored it in {}",
        path.display()
    );
    Ok(token)
}

/// Whether an `Authorization` header value carries `Bearer <token>`. The comparison takes
/// the same time wherever the first difference is, so it leaks nothing but the length.
pub fn authorized(header: Option<&[u8]>, token: &str) -> bool {
    let Some(value) = header else { return false };
    let Some(presented) = value.strip_prefix(b"Bearer ") else {
        return false;
    };
    let expected = token.as_bytes();
    if presented.len() != expected.len() {
        return false;
    }
    presented
        .iter()
        .zip(expected)
        .fold(0u8, |diff, (a, b)| diff | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generates_once_with_private_mode_and_reuses_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(None, dir.path()).unwrap();
        assert_eq!(first.len(), TOKEN_BYTES * 2);
        let mode = fs::metadata(dir.path().join(TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create(None, dir.path()).unwrap(), first);
        assert_eq!(
            load_or_create(Some("configured-token-123"), dir.path()).unwrap(),
            "configured-token-123"
        );
    }

    #[test]
    fn bearer_must_match_exactly() {
        assert!(authorized(Some(b"Bearer secret"), "secret"));
        assert!(!authorized(Some(b"Bearer secreT"), "secret"));
        assert!(!authorized(Some(b"Bearer secret2"), "secret"));
        assert!(!authorized(Some(b"bearer secret"), "secret"));
        assert!(!authorized(Some(b"secret"), "secret"));
        assert!(!authorized(None, "secret"));
    }
}
