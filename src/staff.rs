//! The staff bearer token: configured, or generated once and kept in the data directory
//! (mode 0600) so it survives restarts; checked in constant time.
//!
//! The generated file is written whole or not at all (`orders::durable`), and read
//! back only if it is exactly what this module writes: a file cut short or padded with
//! zeros by a power cut is refused with what to do, never adopted as a shorter token.

use std::fs;
use std::io::{self, Read};
use std::path::Path;

use crate::orders::durable;

pub const TOKEN_FILE: &str = "staff-token";
/// Random bytes in a generated token; the file holds them as lowercase hex.
const TOKEN_BYTES: usize = 24;
const TOKEN_CHARS: usize = TOKEN_BYTES * 2;

/// The configured token, else the stored one, else a new random one stored for next time.
pub fn load_or_create(configured: Option<&str>, data_dir: &Path) -> io::Result<String> {
    if let Some(token) = configured {
        return Ok(token.to_string());
    }
    let path = data_dir.join(TOKEN_FILE);
    match fs::read(&path) {
        Ok(stored) => return parse_stored(&stored).ok_or_else(|| damaged(&path, &stored)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut random = [0u8; TOKEN_BYTES];
    fs::File::open("/dev/urandom")?.read_exact(&mut random)?;
    let token: String = random.iter().map(|b| format!("{b:02x}")).collect();
    durable::replace_file(&path, token.as_bytes(), 0o600)?;
    log::info!(
        "generated a staff token and stored it in {}",
        path.display()
    );
    Ok(token)
}

/// The token in a file this module wrote: exactly [`TOKEN_CHARS`] lowercase hex digits,
/// and a final newline is forgiven (an operator who put the same token back with `echo`).
fn parse_stored(stored: &[u8]) -> Option<String> {
    let token = stored.strip_suffix(b"\n").unwrap_or(stored);
    let well_formed = token.len() == TOKEN_CHARS
        && token
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    well_formed.then(|| String::from_utf8_lossy(token).into_owned())
}

fn damaged(path: &Path, stored: &[u8]) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{path} holds {len} bytes that are not a generated staff token ({TOKEN_CHARS} \
             lowercase hexadecimal characters), probably because a crash cut its writing short. \
             Refusing to start with a token nobody knows. Delete the file to have a new token \
             generated at the next start (`rm {path}`; staff then need the new one from the \
             file), or put the token staff use in it, or set --staff-token / \
             KAKIGORI_STAFF_TOKEN",
            path = path.display(),
            len = stored.len(),
        ),
    )
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
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }

    #[test]
    fn a_torn_or_foreign_token_file_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TOKEN_FILE);
        let whole = load_or_create(None, dir.path()).unwrap();
        let mut zero_padded = vec![0u8; 32];
        zero_padded.extend_from_slice(&whole.as_bytes()[32..]);
        let torn: [&[u8]; 6] = [
            &whole.as_bytes()[..16],
            &zero_padded,
            b"",
            b"\n",
            &whole.to_uppercase().into_bytes(),
            &[whole.as_bytes(), b"0"].concat(),
        ];
        for contents in torn {
            fs::write(&path, contents).unwrap();
            let error = load_or_create(None, dir.path()).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData);
            let message = error.to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(
                message.contains(&format!("holds {} bytes", contents.len())),
                "{message}"
            );
            assert!(message.contains("Delete the file"), "{message}");
            // The file is left for the operator to look at.
            assert_eq!(fs::read(&path).unwrap(), contents);
        }
        fs::write(&path, format!("{whole}\n")).unwrap();
        assert_eq!(load_or_create(None, dir.path()).unwrap(), whole);
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
