//! Blobs to upload to a CAS, by digest: bytes held in memory, or a file's
//! path whose bytes are read (and checked against the digest again) when
//! they are sent.
//!
//! Knows digests and files; knows nothing of trees or of the CAS protocol.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use prost::Message;

use super::{digest, re, show};

/// Blobs to upload, keyed by hash: bytes in memory or a file's path.
#[derive(Default)]
pub struct Blobs(HashMap<String, (re::Digest, Source)>);

enum Source {
    Bytes(Vec<u8>),
    File(PathBuf),
}

impl Blobs {
    pub fn add_bytes(&mut self, data: Vec<u8>) -> re::Digest {
        let d = digest(&data);
        self.0
            .entry(d.hash.clone())
            .or_insert((d.clone(), Source::Bytes(data)));
        d
    }

    pub fn add_message(&mut self, m: &impl Message) -> re::Digest {
        self.add_bytes(m.encode_to_vec())
    }

    /// Hashes the file at `path` and remembers where its bytes are.
    pub fn add_file(&mut self, path: &Path) -> Result<re::Digest> {
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let d = digest(&data);
        self.0
            .entry(d.hash.clone())
            .or_insert((d.clone(), Source::File(path.into())));
        Ok(d)
    }

    /// Every digest, the empty blob left out (servers always have it).
    pub fn digests(&self) -> Vec<re::Digest> {
        self.0
            .values()
            .map(|(d, _)| d.clone())
            .filter(|d| d.size_bytes > 0)
            .collect()
    }

    /// The bytes of `d`; a file that changed since it was hashed is refused.
    pub fn bytes(&self, d: &re::Digest) -> Result<Vec<u8>> {
        let Some((_, source)) = self.0.get(&d.hash) else {
            bail!("blob {} is not among those to upload", show(d));
        };
        match source {
            Source::Bytes(b) => Ok(b.clone()),
            Source::File(p) => {
                let data = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
                if digest(&data) != *d {
                    bail!("{} changed while it was being uploaded", p.display());
                }
                Ok(data)
            }
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
