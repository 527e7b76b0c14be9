//! The service's bearer token: made on first start as `DIR/token` (mode
//! 0600, 32 random bytes in hex), or read from `--token-file`; requests
//! carry it as `Authorization: Bearer TOKEN`.
//!
//! Knows the token file and the header; knows nothing of routes.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

/// The token requests must carry.
pub struct Token(String);

impl Token {
    /// `file`'s token, or the data directory's (made when missing).
    pub fn load(data: &Path, file: Option<&Path>) -> Result<Token, String> {
        let text = match file {
            Some(f) => std::fs::read_to_string(f)
                .map_err(|e| format!("--token-file {}: {e}", f.display()))?,
            None => data_token(&data.join("token"))?,
        };
        let token = text.trim().to_string();
        if token.len() < 16 || token.chars().any(|c| !c.is_ascii_graphic()) {
            let name = file.map_or("the token file".into(), |f| f.display().to_string());
            return Err(format!(
                "{name}: a token is at least 16 printable characters"
            ));
        }
        Ok(Token(token))
    }

    /// Whether an `Authorization` header value carries this token (compared
    /// in constant time).
    pub fn allows(&self, header: Option<&[u8]>) -> bool {
        let Some(given) = header.and_then(|h| h.strip_prefix(b"Bearer ")) else {
            return false;
        };
        let mine = self.0.as_bytes();
        let differ = given.len() != mine.len();
        let diff = given
            .iter()
            .zip(mine)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        !differ && diff == 0
    }
}

/// The token in `path`, made (0600) if there is none; refused when others
/// may read it.
fn data_token(path: &Path) -> Result<String, String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
            return Err(format!(
                "{}: readable by others (chmod 600 it)",
                path.display()
            ))
        }
        Ok(_) => {
            return std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
        }
        Err(_) => {}
    }
    let mut random = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    let token: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(format!("{token}\n").as_bytes())
                .and_then(|()| f.sync_all())
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("cannot write {}: {e}", path.display()));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_made_once_private_and_checked_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let token = Token::load(dir.path(), None).unwrap();
        let mode = std::fs::metadata(dir.path().join("token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(Token::load(dir.path(), None).unwrap().0, token.0);
        let header = format!("Bearer {}", token.0);
        assert!(token.allows(Some(header.as_bytes())));
        assert!(!token.allows(Some(&header.as_bytes()[..header.len() - 1])));
        assert!(!token.allows(Some(token.0.as_bytes())));
        assert!(!token.allows(None));
    }
}
