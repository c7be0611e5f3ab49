//! Air-gapped images: every `*.tar` / `*.tar.zst` in `<data-dir>/agent/images/` is imported into
//! containerd's `k8s.io` namespace at start, as k3s does. Blobs go into containerd's content store
//! through its content API (skipping those it already has) under a lease, so its collector cannot take
//! them mid-import; then each named image is created or repointed. The CRI plugin sees the images
//! through containerd's events and unpacks them when a container first needs them.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::{
    AbortRequest, CreateImageRequest, CreateRequest, DeleteRequest, Image, InfoRequest, UpdateImageRequest,
    WriteAction, WriteContentRequest,
};
use containerd_client::types::Descriptor;
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use super::archive::{self, Blob, Plan, Source};

/// The containerd namespace the CRI plugin works in.
pub const NAMESPACE: &str = "k8s.io";
/// Bytes per content write message (containerd takes up to 4 MiB).
const CHUNK: usize = 1 << 20;
/// How long an import lease protects its blobs if tug dies before removing it.
const LEASE_EXPIRY: jiff::SignedDuration = jiff::SignedDuration::from_hours(1);

/// An import that failed; the other archives are still imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Archive(#[from] archive::ArchiveError),
    #[error("containerd refused {what}: {status}")]
    Containerd { what: String, status: Status },
}

fn refused(what: impl Into<String>) -> impl FnOnce(Status) -> ImportError {
    let what = what.into();
    move |status| ImportError::Containerd { what, status }
}

/// The archives in `dir`, in name order.
pub fn archives_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p.to_string_lossy();
            name.ends_with(".tar") || name.ends_with(".tar.zst")
        })
        .collect();
    found.sort();
    found
}

/// A request to containerd in the CRI's namespace, under `lease` when given.
fn request<T>(message: T, lease: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    let metadata = request.metadata_mut();
    metadata.insert("containerd-namespace", tonic::metadata::MetadataValue::from_static(NAMESPACE));
    if let Some(value) = lease.and_then(|l| l.parse().ok()) {
        metadata.insert("containerd-lease", value);
    }
    request
}

/// Imports every archive of `dir`; returns the names of the images imported. A bad archive is
/// logged and skipped.
pub async fn import_dir(channel: Channel, dir: &Path) -> Vec<String> {
    let mut imported = Vec::new();
    for path in archives_in(dir) {
        match import(channel.clone(), &path).await {
            Ok(names) => {
                tracing::info!(archive = %path.display(), images = ?names, "imported images");
                imported.extend(names);
            }
            Err(error) => tracing::error!(archive = %path.display(), %error, "cannot import images"),
        }
    }
    imported
}

/// Imports one archive.
pub async fn import(channel: Channel, path: &Path) -> Result<Vec<String>, ImportError> {
    let scan_path = path.to_path_buf();
    let plan = tokio::task::spawn_blocking(move || archive::scan(&scan_path))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .map_err(|source| archive::ArchiveError::Io { path: path.to_path_buf(), source })??;
    let mut leases = LeasesClient::new(channel.clone());
    let expiry = (jiff::Timestamp::now() + LEASE_EXPIRY).to_string();
    let labels = HashMap::from([("containerd.io/gc.expire".to_string(), expiry)]);
    let lease = leases
        .create(request(CreateRequest { id: String::new(), labels }, None))
        .await
        .map_err(refused("an import lease"))?
        .into_inner()
        .lease
        .map(|l| l.id)
        .unwrap_or_default();
    let result = store(channel.clone(), path, &plan, &lease).await;
    let delete = DeleteRequest { id: lease.clone(), sync: false };
    if let Err(status) = leases.delete(request(delete, None)).await {
        tracing::debug!(%status, lease, "could not remove the import lease; it expires by itself");
    }
    result
}

async fn store(channel: Channel, path: &Path, plan: &Plan, lease: &str) -> Result<Vec<String>, ImportError> {
    let mut content = ContentClient::new(channel.clone());
    let mut missing: Vec<&Blob> = Vec::new();
    for blob in &plan.blobs {
        match content.info(request(InfoRequest { digest: blob.digest.clone() }, None)).await {
            Ok(_) => {}
            Err(status) if status.code() == Code::NotFound => missing.push(blob),
            Err(status) => return Err(refused(format!("a lookup of {}", blob.digest))(status)),
        }
    }
    for blob in missing.iter().filter(|b| matches!(b.source, Source::Made(_))) {
        if let Source::Made(bytes) = &blob.source {
            write_blob(&mut content, blob, futures::stream::iter([bytes.clone()]), lease).await?;
        }
    }
    let from_archive: HashMap<String, &Blob> = missing
        .iter()
        .filter_map(|b| match &b.source {
            Source::Entry(name) => Some((name.clone(), *b)),
            Source::Made(_) => None,
        })
        .collect();
    if !from_archive.is_empty() {
        stream_from_archive(&mut content, path, from_archive, lease).await?;
    }
    let mut images = ImagesClient::new(channel);
    let mut names = Vec::new();
    for (name, target) in &plan.images {
        let image = Image {
            name: name.clone(),
            labels: HashMap::from([("io.cri-containerd.image".to_string(), "managed".to_string())]),
            target: Some(Descriptor {
                media_type: target.media_type.clone(),
                digest: target.digest.clone(),
                size: target.size,
                annotations: HashMap::new(),
            }),
            created_at: None,
            updated_at: None,
        };
        let created = images
            .create(request(CreateImageRequest { image: Some(image.clone()), source_date_epoch: None }, Some(lease)))
            .await;
        match created {
            Ok(_) => {}
            Err(status) if status.code() == Code::AlreadyExists => {
                let update = UpdateImageRequest { image: Some(image), update_mask: None, source_date_epoch: None };
                images.update(request(update, Some(lease))).await.map_err(refused(format!("image {name}")))?;
            }
            Err(status) => return Err(refused(format!("image {name}"))(status)),
        }
        names.push(name.clone());
    }
    Ok(names)
}

/// Reads the archive's wanted entries on a blocking thread and writes each into containerd.
async fn stream_from_archive(
    content: &mut ContentClient<Channel>,
    path: &Path,
    wanted: HashMap<String, &Blob>,
    lease: &str,
) -> Result<(), ImportError> {
    let owned: HashMap<String, Blob> = wanted.iter().map(|(k, b)| (k.clone(), (*b).clone())).collect();
    let (blobs, mut next_blob) = mpsc::channel::<(Blob, mpsc::Receiver<Vec<u8>>)>(1);
    let reader_path = path.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || {
        let wanted: HashMap<String, &Blob> = owned.iter().map(|(k, b)| (k.clone(), b)).collect();
        archive::for_each_blob(&reader_path, &wanted, |blob, bytes: &mut dyn Read| {
            let (chunks, receiver) = mpsc::channel(2);
            blobs.blocking_send((blob.clone(), receiver)).map_err(|_| std::io::Error::other("import stopped"))?;
            let mut buffer = vec![0u8; CHUNK];
            loop {
                let n = read_full(bytes, &mut buffer)?;
                if n == 0 {
                    return Ok(());
                }
                chunks.blocking_send(buffer[..n].to_vec()).map_err(|_| std::io::Error::other("import stopped"))?;
            }
        })
    });
    let mut outcome = Ok(());
    while let Some((blob, chunks)) = next_blob.recv().await {
        let stream = tokio_stream::wrappers::ReceiverStream::new(chunks);
        if let Err(error) = write_blob(content, &blob, stream, lease).await {
            outcome = Err(error);
            break;
        }
    }
    drop(next_blob);
    let read = reader.await.map_err(|e| std::io::Error::other(e.to_string()));
    outcome?;
    read.map_err(|source| archive::ArchiveError::Io { path: path.to_path_buf(), source })??;
    Ok(())
}

/// Fills `buffer` as far as the reader goes; the count read (0 at the end).
fn read_full(reader: &mut dyn Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Writes one blob through containerd's content Write stream and commits it with its labels.
async fn write_blob(
    content: &mut ContentClient<Channel>,
    blob: &Blob,
    chunks: impl futures::Stream<Item = Vec<u8>> + Send + 'static,
    lease: &str,
) -> Result<(), ImportError> {
    use futures::StreamExt;
    let reference = format!("tug-import-{}", blob.digest);
    let abort = content.abort(request(AbortRequest { r#ref: reference.clone() }, Some(lease))).await;
    if let Some(status) = abort.as_ref().err().filter(|s| s.code() != Code::NotFound) {
        tracing::debug!(%status, reference, "aborting an earlier ingest");
    }
    let (digest, total) = (blob.digest.clone(), blob.size);
    let labels: HashMap<String, String> = blob.labels.clone().into_iter().collect();
    let first = reference.clone();
    let writes = chunks.scan(0i64, move |offset, data| {
        let message = WriteContentRequest {
            action: WriteAction::Write as i32,
            r#ref: first.clone(),
            total,
            expected: digest.clone(),
            offset: *offset,
            data,
            labels: HashMap::new(),
        };
        *offset += message.data.len() as i64;
        futures::future::ready(Some(message))
    });
    let commit = WriteContentRequest {
        action: WriteAction::Commit as i32,
        r#ref: reference,
        total,
        expected: blob.digest.clone(),
        offset: total,
        data: Vec::new(),
        labels,
    };
    let requests = writes.chain(futures::stream::iter([commit]));
    let what = || format!("blob {}", blob.digest);
    let mut responses = content.write(request(requests, Some(lease))).await.map_err(refused(what()))?.into_inner();
    loop {
        match responses.message().await {
            Ok(Some(_)) => {}
            Ok(None) => return Ok(()),
            Err(status) if status.code() == Code::AlreadyExists => return Ok(()),
            Err(status) => return Err(refused(what())(status)),
        }
    }
}
