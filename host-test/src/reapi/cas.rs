//! Content-addressed storage on a REAPI server: upload what it lacks, read
//! what a digest names, verifying every byte against its hash.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context, Result};
use bazel_remote_apis::google::bytestream::byte_stream_client::ByteStreamClient;
use bazel_remote_apis::google::bytestream::{ReadRequest, WriteRequest};
use tonic::codegen::tokio_stream::{self, StreamExt};
use tonic::transport::Channel;

use super::blobs::Blobs;
use super::re::content_addressable_storage_client::ContentAddressableStorageClient;
use super::re::{self, batch_update_blobs_request, BatchReadBlobsRequest, BatchUpdateBlobsRequest};
use super::{digest, status_line};

/// Blobs up to this size travel in batches (under gRPC's 4 MiB default
/// message limit, with room for the framing); larger ones through ByteStream.
const BATCH_BYTES: i64 = 2 << 20;
/// ByteStream chunk size.
const CHUNK: usize = 1 << 20;

/// A server's CAS for one instance name.
#[derive(Clone)]
pub struct Cas {
    cas: ContentAddressableStorageClient<Channel>,
    bytes: ByteStreamClient<Channel>,
    instance: String,
}

impl Cas {
    pub fn new(channel: Channel, instance: &str) -> Cas {
        let limit = 64 << 20;
        Cas {
            cas: ContentAddressableStorageClient::new(channel.clone())
                .max_decoding_message_size(limit),
            bytes: ByteStreamClient::new(channel).max_decoding_message_size(limit),
            instance: instance.to_string(),
        }
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Uploads every blob of `blobs` the server does not have, again while
    /// the server is busy.
    pub async fn upload(&self, blobs: &Blobs) -> Result<()> {
        super::patiently(|| self.upload_once(blobs)).await
    }

    async fn upload_once(&self, blobs: &Blobs) -> Result<()> {
        let missing = self.missing(blobs.digests()).await?;
        let (small, large): (Vec<_>, Vec<_>) = missing
            .into_iter()
            .partition(|d| d.size_bytes <= BATCH_BYTES);
        for batch in batches(small) {
            self.upload_batch(blobs, batch).await?;
        }
        for d in large {
            self.write_stream(&d, blobs.bytes(&d)?).await?;
        }
        Ok(())
    }

    /// Which of `digests` the server lacks.
    pub async fn missing(&self, digests: Vec<re::Digest>) -> Result<Vec<re::Digest>> {
        let mut missing = Vec::new();
        for chunk in digests.chunks(4096) {
            let request = re::FindMissingBlobsRequest {
                instance_name: self.instance.clone(),
                blob_digests: chunk.to_vec(),
                ..Default::default()
            };
            let reply = self.cas.clone().find_missing_blobs(request).await;
            let reply = reply.map_err(|s| status_line("FindMissingBlobs", &s))?;
            missing.extend(reply.into_inner().missing_blob_digests);
        }
        Ok(missing)
    }

    async fn upload_batch(&self, blobs: &Blobs, batch: Vec<re::Digest>) -> Result<()> {
        let mut requests = Vec::with_capacity(batch.len());
        for d in batch {
            let data = blobs.bytes(&d)?;
            requests.push(batch_update_blobs_request::Request {
                digest: Some(d),
                data,
                ..Default::default()
            });
        }
        let request = BatchUpdateBlobsRequest {
            instance_name: self.instance.clone(),
            requests,
            ..Default::default()
        };
        let reply = self.cas.clone().batch_update_blobs(request).await;
        let reply = reply.map_err(|s| status_line("BatchUpdateBlobs", &s))?;
        for r in reply.into_inner().responses {
            let code = r.status.as_ref().map_or(0, |s| s.code);
            if code != 0 {
                let d = r.digest.unwrap_or_default();
                let msg = r.status.map(|s| s.message).unwrap_or_default();
                bail!("the server refused blob {}: {msg}", super::show(&d));
            }
        }
        Ok(())
    }

    async fn write_stream(&self, d: &re::Digest, data: Vec<u8>) -> Result<()> {
        static UPLOADS: AtomicU64 = AtomicU64::new(0);
        let id = format!(
            "{}-{}",
            std::process::id(),
            UPLOADS.fetch_add(1, Ordering::Relaxed)
        );
        let name = self.resource(&format!("uploads/{id}/blobs/{}/{}", d.hash, d.size_bytes));
        let chunks: Vec<WriteRequest> = write_requests(&name, data);
        let reply = self.bytes.clone().write(tokio_stream::iter(chunks)).await;
        reply.map_err(|s| status_line("ByteStream.Write", &s))?;
        Ok(())
    }

    /// The blob `d` names, checked against its hash; asked again while the
    /// server is busy.
    pub async fn read(&self, d: &re::Digest) -> Result<Vec<u8>> {
        super::patiently(|| self.read_once(d)).await
    }

    async fn read_once(&self, d: &re::Digest) -> Result<Vec<u8>> {
        if d.size_bytes == 0 {
            return Ok(Vec::new());
        }
        let data = if d.size_bytes <= BATCH_BYTES {
            self.read_batch(d).await?
        } else {
            self.read_stream(d).await?
        };
        if digest(&data) != *d {
            bail!("the server sent blob {} with other content", super::show(d));
        }
        Ok(data)
    }

    async fn read_batch(&self, d: &re::Digest) -> Result<Vec<u8>> {
        let request = BatchReadBlobsRequest {
            instance_name: self.instance.clone(),
            digests: vec![d.clone()],
            ..Default::default()
        };
        let reply = self.cas.clone().batch_read_blobs(request).await;
        let reply = reply.map_err(|s| status_line("BatchReadBlobs", &s))?;
        let Some(r) = reply.into_inner().responses.into_iter().next() else {
            bail!("the server sent nothing for blob {}", super::show(d));
        };
        if let Some(s) = r.status.filter(|s| s.code != 0) {
            bail!("blob {}: {}", super::show(d), s.message);
        }
        Ok(r.data)
    }

    async fn read_stream(&self, d: &re::Digest) -> Result<Vec<u8>> {
        let request = ReadRequest {
            resource_name: self.resource(&format!("blobs/{}/{}", d.hash, d.size_bytes)),
            ..Default::default()
        };
        let reply = self.bytes.clone().read(request).await;
        let mut stream = reply
            .map_err(|s| status_line("ByteStream.Read", &s))?
            .into_inner();
        let mut data = Vec::with_capacity(d.size_bytes as usize);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|s| status_line("ByteStream.Read", &s))?;
            data.extend_from_slice(&chunk.data);
        }
        Ok(data)
    }

    /// The message stored under `d`.
    pub async fn read_message<M: prost::Message + Default>(&self, d: &re::Digest) -> Result<M> {
        let data = self.read(d).await?;
        M::decode(data.as_slice())
            .with_context(|| format!("blob {} is not the message expected", super::show(d)))
    }

    /// Writes blob `d` to `path` (a temporary file renamed into place), with
    /// the executable bits when `executable`.
    pub async fn write_file(&self, d: &re::Digest, path: &Path, executable: bool) -> Result<()> {
        let data = self.read(d).await?;
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || write_atomically(&path, &data, executable)).await?
    }

    fn resource(&self, rest: &str) -> String {
        if self.instance.is_empty() {
            rest.to_string()
        } else {
            format!("{}/{rest}", self.instance)
        }
    }
}

/// Digests grouped so each group's bytes stay under [`BATCH_BYTES`].
fn batches(digests: Vec<re::Digest>) -> Vec<Vec<re::Digest>> {
    let mut out: Vec<Vec<re::Digest>> = Vec::new();
    let mut size = 0;
    for d in digests {
        if out.is_empty() || size + d.size_bytes > BATCH_BYTES {
            out.push(Vec::new());
            size = 0;
        }
        size += d.size_bytes;
        out.last_mut().unwrap().push(d);
    }
    out
}

fn write_requests(name: &str, data: Vec<u8>) -> Vec<WriteRequest> {
    let total = data.len();
    let mut out = Vec::new();
    for (i, chunk) in data.chunks(CHUNK).enumerate() {
        let offset = i * CHUNK;
        out.push(WriteRequest {
            resource_name: if i == 0 {
                name.to_string()
            } else {
                String::new()
            },
            write_offset: offset as i64,
            finish_write: offset + chunk.len() == total,
            data: chunk.to_vec(),
        });
    }
    out
}

/// `data` at `path` through a temporary file in the same directory.
pub fn write_atomically(path: &Path, data: &[u8], executable: bool) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().context("a file path without a directory")?;
    let name = path.file_name().context("a file path without a name")?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    let mode = if executable { 0o755 } else { 0o644 };
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(size: i64) -> re::Digest {
        re::Digest {
            hash: "x".into(),
            size_bytes: size,
        }
    }

    #[test]
    fn batches_stay_under_the_limit() {
        let groups = batches(vec![d(BATCH_BYTES - 10), d(5), d(10), d(1)]);
        let sizes: Vec<Vec<i64>> = groups
            .iter()
            .map(|g| g.iter().map(|d| d.size_bytes).collect())
            .collect();
        assert_eq!(sizes, vec![vec![BATCH_BYTES - 10, 5], vec![10, 1]]);
    }

    #[test]
    fn stream_chunks_cover_the_blob_once() {
        let w = write_requests("r", vec![7u8; CHUNK * 2 + 3]);
        assert_eq!(w.len(), 3);
        assert_eq!(w[0].resource_name, "r");
        assert_eq!(w.iter().map(|r| r.data.len()).sum::<usize>(), CHUNK * 2 + 3);
        assert_eq!(w.iter().filter(|r| r.finish_write).count(), 1);
        assert!(w[2].finish_write && w[2].write_offset == (CHUNK * 2) as i64);
    }
}
