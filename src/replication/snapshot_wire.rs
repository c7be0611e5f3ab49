//! A whole snapshot on the wire: a 4-byte big-endian header length, the header (the leader's vote and
//! the snapshot's metadata, postcard), then the SQLite file's bytes. Streamed both ways: the sender
//! reads the file as it sends it and the receiver writes it to disk as it arrives, so a store of any
//! size passes through a few chunks of memory.

use std::path::Path;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use http_body_util::StreamBody;
use hyper::body::Frame;
use openraft::{BasicNode, SnapshotMeta};
use tokio::io::AsyncWriteExt;

use super::types::{decode, encode, NodeId, Vote};

pub type Meta = SnapshotMeta<NodeId, BasicNode>;

/// The body of a snapshot message.
pub type MessageBody = StreamBody<futures::stream::BoxStream<'static, std::io::Result<Frame<Bytes>>>>;

/// How much of the file is read (and sent) at a time.
const CHUNK_BYTES: usize = 256 * 1024;
/// How long the receiver waits for the next chunk before giving up on the sender.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest header accepted (a vote and a membership: a few hundred bytes in practice).
const MAX_HEADER_BYTES: usize = 1 << 20;

/// The message for the snapshot file at `path`, and its length in bytes.
pub async fn message(vote: &Vote, meta: &Meta, path: &Path) -> std::io::Result<(MessageBody, u64)> {
    let header = encode(&(vote, meta)).map_err(std::io::Error::other)?;
    let file = tokio::fs::File::open(path).await?;
    let file_length = file.metadata().await?.len();
    let mut head = BytesMut::with_capacity(4 + header.len());
    head.put_u32(header.len() as u32);
    head.put_slice(&header);
    let length = head.len() as u64 + file_length;
    let chunks = futures::stream::once(async move { Ok(head.freeze()) })
        .chain(tokio_util::io::ReaderStream::with_capacity(file, CHUNK_BYTES))
        .map(|chunk| chunk.map(Frame::data));
    Ok((StreamBody::new(chunks.boxed()), length))
}

/// Why a snapshot was not received.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// The message is malformed, cut short, too large or stalled.
    #[error("{0}")]
    Message(String),
    #[error("cannot write the received snapshot: {0}")]
    Disk(#[from] std::io::Error),
}

/// Reads a message from `chunks`, writing its file to `path` (0600, fsynced) as it arrives; its vote
/// and metadata. Refused, with nothing left at `path`, when the message is malformed, cut short, stalls
/// for [`IDLE_TIMEOUT`] or has more than `max_bytes` of file.
pub async fn receive<S, E>(chunks: S, path: &Path, max_bytes: u64) -> Result<(Vote, Meta), ReceiveError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let received = receive_into(chunks, path, max_bytes).await;
    if received.is_err() {
        let _ = tokio::fs::remove_file(path).await;
    }
    received
}

async fn receive_into<S, E>(mut chunks: S, path: &Path, max_bytes: u64) -> Result<(Vote, Meta), ReceiveError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let refused = |reason: String| ReceiveError::Message(reason);
    let mut next = async || match tokio::time::timeout(IDLE_TIMEOUT, chunks.next()).await {
        Ok(Some(Ok(chunk))) => Ok(Some(chunk)),
        Ok(Some(Err(e))) => Err(refused(format!("the snapshot stream broke: {e}"))),
        Ok(None) => Ok(None),
        Err(_) => Err(refused(format!("the snapshot stream stalled for {IDLE_TIMEOUT:?}"))),
    };
    // The header, and whatever of the file came with it.
    let mut head = BytesMut::new();
    let header_length = loop {
        if head.len() >= 4 {
            let length = u32::from_be_bytes(head[..4].try_into().expect("four bytes")) as usize;
            if length > MAX_HEADER_BYTES {
                return Err(refused(format!("the snapshot header claims {length} bytes")));
            }
            if head.len() >= 4 + length {
                break length;
            }
        }
        match next().await? {
            Some(chunk) => head.extend_from_slice(&chunk),
            None => return Err(refused("the snapshot header is truncated".into())),
        }
    };
    head.advance(4);
    let header = head.split_to(header_length);
    let (vote, meta): (Vote, Meta) = decode(&header).map_err(|e| refused(format!("bad snapshot header: {e}")))?;
    let mut file = tokio::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).await?;
    let mut written = 0u64;
    let mut chunk = head.freeze();
    loop {
        written += chunk.len() as u64;
        if written > max_bytes {
            return Err(refused(format!("the snapshot is larger than {max_bytes} bytes")));
        }
        file.write_all(&chunk).await?;
        match next().await? {
            Some(more) => chunk = more,
            None => break,
        }
    }
    file.sync_all().await?;
    Ok((vote, meta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// The message for a file holding `contents`, as the chunks it is sent in.
    async fn sent(contents: &[u8]) -> (Vote, Meta, Vec<Bytes>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        std::fs::write(&path, contents).expect("write");
        let vote = Vote::new(3, 7);
        let meta = Meta { snapshot_id: "3-7-42".into(), ..Default::default() };
        let (body, length) = message(&vote, &meta, &path).await.expect("encode");
        let mut chunks = Vec::new();
        let mut body = std::pin::pin!(body);
        while let Some(frame) = body.frame().await {
            chunks.push(frame.expect("frame").into_data().expect("data"));
        }
        assert_eq!(chunks.iter().map(|c| c.len() as u64).sum::<u64>(), length);
        (vote, meta, chunks)
    }

    fn stream(chunks: Vec<Bytes>) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        futures::stream::iter(chunks.into_iter().map(Ok))
    }

    #[tokio::test]
    async fn a_snapshot_message_round_trips_in_chunks_of_any_size() {
        let contents: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let (vote, meta, chunks) = sent(&contents).await;
        let whole: Vec<u8> = chunks.concat();
        let dir = tempfile::tempdir().expect("tempdir");
        for size in [1, 3, 7, 1000, whole.len()] {
            let path = dir.path().join(format!("received-{size}.db"));
            let pieces: Vec<Bytes> = whole.chunks(size).map(Bytes::copy_from_slice).collect();
            let got = receive(stream(pieces), &path, 1 << 20).await.expect("received");
            assert_eq!(got, (vote, meta.clone()));
            assert_eq!(std::fs::read(&path).expect("file"), contents, "chunks of {size}");
        }
    }

    #[tokio::test]
    async fn a_bad_message_is_refused_and_leaves_no_file() {
        let (_, _, chunks) = sent(&[7u8; 5000]).await;
        let whole = Bytes::from(chunks.concat());
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("received.db");
        let cases = [
            (vec![whole.slice(..6)], 1 << 20, "truncated"),
            (vec![whole.clone()], 100, "larger than 100 bytes"),
            (vec![Bytes::from_static(&[0xff, 0xff, 0xff, 0xff])], 1 << 20, "claims"),
        ];
        for (pieces, max, expected) in cases {
            let error = receive(stream(pieces), &path, max).await.expect_err("refused").to_string();
            assert!(error.contains(expected), "{error}");
            assert!(!path.exists(), "nothing left behind after {error:?}");
        }
        let broken = futures::stream::iter([Ok(whole.slice(..100)), Err("reset by peer".to_string())]);
        let error = receive(broken, &path, 1 << 20).await.expect_err("refused").to_string();
        assert!(error.contains("reset by peer") && !path.exists(), "{error}");
    }
}
