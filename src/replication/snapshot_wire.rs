//! A whole snapshot on the wire: a 4-byte big-endian header length, the header (the leader's vote and
//! the snapshot's metadata, postcard), then the SQLite file's bytes.

use std::path::Path;

use bytes::{BufMut, Bytes, BytesMut};
use openraft::{BasicNode, SnapshotMeta};

use super::types::{decode, encode, NodeId, Vote};

pub type Meta = SnapshotMeta<NodeId, BasicNode>;

/// The message for the snapshot file at `path`.
pub async fn encode_message(vote: &Vote, meta: &Meta, path: &Path) -> std::io::Result<Bytes> {
    let header = encode(&(vote, meta)).map_err(std::io::Error::other)?;
    let file = tokio::fs::read(path).await?;
    let mut message = BytesMut::with_capacity(4 + header.len() + file.len());
    message.put_u32(header.len() as u32);
    message.put_slice(&header);
    message.put_slice(&file);
    Ok(message.freeze())
}

/// Splits a message into its vote, metadata and file bytes.
pub fn decode_message(message: &[u8]) -> Result<(Vote, Meta, &[u8]), String> {
    let length = message.get(..4).ok_or("the snapshot message is truncated")?;
    let length = u32::from_be_bytes(length.try_into().map_err(|_| "bad header length")?) as usize;
    let header = message.get(4..4 + length).ok_or("the snapshot header is truncated")?;
    let (vote, meta): (Vote, Meta) = decode(header).map_err(|e| format!("bad snapshot header: {e}"))?;
    Ok((vote, meta, &message[4 + length..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_snapshot_message_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        std::fs::write(&path, b"sqlite bytes").expect("write");
        let vote = Vote::new(3, 7);
        let meta = Meta { snapshot_id: "3-7-42".into(), ..Default::default() };
        let message = encode_message(&vote, &meta, &path).await.expect("encode");
        let (got_vote, got_meta, file) = decode_message(&message).expect("decode");
        assert_eq!((got_vote, got_meta, file), (vote, meta, &b"sqlite bytes"[..]));
        assert!(decode_message(&message[..6]).is_err(), "a truncated message is refused");
    }
}
