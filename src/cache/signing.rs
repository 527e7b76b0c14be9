//! Signed action entries, as Nix signs binary caches: a writer holding an
//! Ed25519 secret key signs every entry it writes; a reader given trusted
//! public keys takes only entries signed by one of them, so a shared
//! server (or a network in between) cannot forge what a build restores.
//! Blobs need no signature: an entry names them by their sha256.
//!
//! Key files are one line each: `runqueue-secret-key:NAME:HEX` (the
//! 32-byte seed) and `runqueue-public-key:NAME:HEX`. A signed entry is
//! `{"signed": ENTRY, "key": NAME, "ed25519": HEX}`, the signature over
//! [`DOMAIN`] followed by ENTRY's exact bytes.
//!
//! Knows keys and bytes; knows nothing of the cache's layout.

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::Deserialize;
use serde_json::value::RawValue;

/// What a signature covers before the entry, so that it can mean nothing
/// else.
const DOMAIN: &[u8] = b"runqueue action entry v1\0";
const SECRET: &str = "runqueue-secret-key";
const PUBLIC: &str = "runqueue-public-key";

/// A named secret key that signs entries.
pub struct Signer {
    name: String,
    key: SigningKey,
}

impl std::fmt::Debug for Signer {
    /// The name only: a secret is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({})", self.name)
    }
}

/// The public keys whose signatures are trusted; empty trusts every entry,
/// signed or not.
#[derive(Debug, Default)]
pub struct Trust(Vec<(String, VerifyingKey)>);

#[derive(Deserialize)]
struct Sealed<'a> {
    #[serde(borrow)]
    signed: &'a RawValue,
    key: String,
    ed25519: String,
}

/// `kind:NAME:HEX` with 32 bytes of HEX: the name and the bytes.
fn parse_key(text: &str, kind: &str) -> Result<(String, [u8; 32]), String> {
    let bad = || format!("not a {kind} (one line `{kind}:NAME:HEX`, from `runqueue keygen`)");
    let rest = text
        .trim()
        .strip_prefix(kind)
        .and_then(|r| r.strip_prefix(':'))
        .ok_or_else(bad)?;
    let (name, hex) = rest.rsplit_once(':').ok_or_else(bad)?;
    let bytes = from_hex(hex).ok_or_else(bad)?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok((name.to_string(), bytes))
}

impl Signer {
    /// A secret key file's text.
    pub fn parse(text: &str) -> Result<Signer, String> {
        let (name, seed) = parse_key(text, SECRET)?;
        Ok(Signer {
            name,
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// `entry` signed: the bytes to store in its place.
    pub fn seal(&self, entry: &[u8]) -> Vec<u8> {
        // What is signed is exactly what is embedded.
        let entry = entry.trim_ascii_end();
        let signature = self.key.sign(&[DOMAIN, entry].concat());
        format!(
            "{{\"signed\":{},\"key\":{},\"ed25519\":\"{}\"}}\n",
            String::from_utf8_lossy(entry),
            serde_json::to_string(&self.name).expect("a string"),
            to_hex(&signature.to_bytes())
        )
        .into_bytes()
    }
}

impl Trust {
    /// Public key files' texts.
    pub fn parse(texts: &[String]) -> Result<Trust, String> {
        let keys = texts.iter().map(|t| {
            let (name, bytes) = parse_key(t, PUBLIC)?;
            let key = VerifyingKey::from_bytes(&bytes)
                .map_err(|_| format!("public key \"{name}\" is not a valid Ed25519 key"))?;
            Ok((name, key))
        });
        keys.collect::<Result<_, String>>().map(Trust)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `stored` (an entry as stored) may be used: always when
    /// nothing is trusted, else only signed by a trusted key. The error
    /// completes "the entry ...".
    pub fn check(&self, stored: &[u8]) -> Result<(), String> {
        if self.0.is_empty() {
            return Ok(());
        }
        let Some(sealed) = sealed(stored) else {
            return Err("is not signed, and only signed entries are trusted".into());
        };
        let Some((_, key)) = self.0.iter().find(|(n, _)| *n == sealed.key) else {
            return Err(format!(
                "is signed by key \"{}\", which is not trusted",
                sealed.key
            ));
        };
        let signature = from_hex(&sealed.ed25519)
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .map(|b| Signature::from_bytes(&b));
        let message = [DOMAIN, sealed.signed.get().as_bytes()].concat();
        match signature.map(|s| key.verify(&message, &s)) {
            Some(Ok(())) => Ok(()),
            _ => Err(format!(
                "has a signature by key \"{}\" that does not verify",
                sealed.key
            )),
        }
    }
}

/// `stored` as a signed entry, if it is one. Only an object whose first
/// key is one of the wrapper's is parsed as such (an action entry's is
/// `format`): every lookup comes here, and an unsigned entry would
/// otherwise be parsed whole twice.
fn sealed(stored: &[u8]) -> Option<Sealed<'_>> {
    let first_key = stored
        .trim_ascii_start()
        .strip_prefix(b"{")?
        .trim_ascii_start();
    let wrapper = [&b"\"signed\""[..], b"\"key\"", b"\"ed25519\""];
    if !wrapper.iter().any(|k| first_key.starts_with(k)) {
        return None;
    }
    serde_json::from_slice(stored).ok()
}

/// The entry inside `stored`, signed or not; signatures are not checked.
pub fn unseal(stored: &[u8]) -> &[u8] {
    match sealed(stored) {
        Some(s) => {
            let raw = s.signed.get().as_bytes();
            // `raw` borrows from `stored`: find it there.
            let at = raw.as_ptr() as usize - stored.as_ptr() as usize;
            &stored[at..at + raw.len()]
        }
        None => stored,
    }
}

/// A new key pair named `name` from 32 random bytes: the secret key file's
/// text and the public one's.
pub fn keygen(name: &str, seed: [u8; 32]) -> Result<(String, String), String> {
    if name.is_empty() || name.contains(char::is_whitespace) || name.contains(':') {
        return Err(format!(
            "key name \"{name}\" must be non-empty, without spaces or \":\""
        ));
    }
    let key = SigningKey::from_bytes(&seed);
    Ok((
        format!("{SECRET}:{name}:{}\n", to_hex(&seed)),
        format!(
            "{PUBLIC}:{name}:{}\n",
            to_hex(key.verifying_key().as_bytes())
        ),
    ))
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str, seed: u8) -> (Signer, String) {
        let (secret, public) = keygen(name, [seed; 32]).unwrap();
        (Signer::parse(&secret).unwrap(), public)
    }

    #[test]
    fn only_entries_signed_by_a_trusted_key_pass() {
        let entry = br#"{"format":1,"task":"t"}"#;
        let (ci, ci_pub) = pair("ci", 7);
        let with_newline = [&entry[..], b"\n"].concat();
        let (dev, _) = pair("dev", 9);
        let trust = Trust::parse(&[ci_pub]).unwrap();
        let sealed = ci.seal(entry);
        assert_eq!(trust.check(&sealed), Ok(()));
        assert_eq!(trust.check(&ci.seal(&with_newline)), Ok(()));
        assert_eq!(unseal(&sealed), entry);
        assert_eq!(unseal(entry), entry);
        assert!(trust.check(entry).unwrap_err().contains("is not signed"));
        assert!(trust
            .check(&dev.seal(entry))
            .unwrap_err()
            .contains("key \"dev\", which is not trusted"));
        // A forged entry under the trusted name.
        let forged = String::from_utf8(sealed.clone())
            .unwrap()
            .replace("\"t\"", "\"u\"");
        assert!(trust
            .check(forged.as_bytes())
            .unwrap_err()
            .contains("does not verify"));
        assert_eq!(Trust::default().check(entry), Ok(()));
    }

    #[test]
    fn key_files_are_checked() {
        assert!(Signer::parse("runqueue-public-key:ci:00").is_err());
        assert!(Signer::parse(&format!("runqueue-secret-key:ci:{}", "ab".repeat(31))).is_err());
        assert!(Trust::parse(&["garbage".into()])
            .unwrap_err()
            .contains("not a runqueue-public-key"));
        assert!(keygen("a b", [0; 32]).is_err());
    }
}
