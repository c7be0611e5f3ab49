//! The client end of SPDY/3.1 framing, as much of it as Kubernetes' stream protocols need towards a CRI
//! streaming server: opening streams with headers, data with FIN, and answers to PING. It sends no
//! WINDOW_UPDATE: the runtimes' SPDY (Go's spdystream) does no flow control. The header blocks we send are zlib-compressed without the SPDY dictionary (a
//! zlib stream that sets no preset-dictionary flag is valid to every reader); the ones we receive are
//! not decoded, since nothing in their replies is needed.

use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, FlushCompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const VERSION: u16 = 3;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const FLAG_FIN: u8 = 0x01;
/// The largest payload one frame carries (its length field has 24 bits).
const MAX_PAYLOAD: usize = (1 << 24) - 1;

/// What the peer sent, as far as a client needs to know.
#[derive(Debug, PartialEq)]
pub enum Frame {
    Data {
        stream: u32,
        payload: Bytes,
        fin: bool,
    },
    /// The peer accepted a stream; `fin` when it will send nothing on it.
    Reply {
        stream: u32,
        fin: bool,
    },
    Reset {
        stream: u32,
    },
    Ping(u32),
    GoAway,
    /// SETTINGS, HEADERS, WINDOW_UPDATE and anything newer: nothing to do.
    Ignored,
}

/// Reads the next frame; None at the end of the connection.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<Option<Frame>> {
    let mut head = [0u8; 8];
    match reader.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let flags = head[4];
    let length = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).await?;
    let mut body = Bytes::from(body);
    let word = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if word & 0x8000_0000 == 0 {
        return Ok(Some(Frame::Data { stream: word, payload: body, fin: flags & FLAG_FIN != 0 }));
    }
    let stream_of = |body: &mut Bytes| if body.len() >= 4 { body.get_u32() & 0x7fff_ffff } else { 0 };
    Ok(Some(match (word & 0xffff) as u16 {
        SYN_REPLY => Frame::Reply { stream: stream_of(&mut body), fin: flags & FLAG_FIN != 0 },
        RST_STREAM => Frame::Reset { stream: stream_of(&mut body) },
        PING => Frame::Ping(stream_of(&mut body)),
        GOAWAY => Frame::GoAway,
        _ => Frame::Ignored,
    }))
}

/// Writes frames: streams opened with increasing odd ids, as a client does.
pub struct Writer<W> {
    io: W,
    headers: Compress,
    next_stream: u32,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    pub fn new(io: W) -> Writer<W> {
        Writer { io, headers: Compress::new(Compression::default(), true), next_stream: 1 }
    }

    /// Opens a stream with `headers` (names lowercase); returns its id.
    pub async fn open(&mut self, headers: &[(&str, &str)]) -> io::Result<u32> {
        let stream = self.next_stream;
        self.next_stream += 2;
        let block = self.header_block(headers)?;
        let mut frame = control(SYN_STREAM, 0, 10 + block.len());
        frame.put_u32(stream);
        frame.put_u32(0); // associated stream
        frame.put_u16(0); // priority and slot
        frame.extend_from_slice(&block);
        self.io.write_all(&frame).await?;
        self.io.flush().await?;
        Ok(stream)
    }

    /// Sends `data` on `stream`, the last of it with FIN when `fin`.
    pub async fn data(&mut self, stream: u32, data: &[u8], fin: bool) -> io::Result<()> {
        let mut chunks: Vec<&[u8]> = data.chunks(MAX_PAYLOAD).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let mut frame = BytesMut::with_capacity(8 + chunk.len());
            frame.put_u32(stream & 0x7fff_ffff);
            frame.put_u8(if fin && i == last { FLAG_FIN } else { 0 });
            frame.put_uint(chunk.len() as u64, 3);
            frame.extend_from_slice(chunk);
            self.io.write_all(&frame).await?;
        }
        self.io.flush().await
    }

    /// Answers the peer's PING.
    pub async fn pong(&mut self, id: u32) -> io::Result<()> {
        let mut frame = control(PING, 0, 4);
        frame.put_u32(id);
        self.io.write_all(&frame).await?;
        self.io.flush().await
    }

    /// Ends the session.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.io.shutdown().await
    }

    /// The compressed name/value block: a count, then each name and value with its length.
    fn header_block(&mut self, headers: &[(&str, &str)]) -> io::Result<Vec<u8>> {
        let mut plain = BytesMut::new();
        plain.put_u32(headers.len() as u32);
        for (name, value) in headers {
            plain.put_u32(name.len() as u32);
            plain.extend_from_slice(name.as_bytes());
            plain.put_u32(value.len() as u32);
            plain.extend_from_slice(value.as_bytes());
        }
        let mut out = Vec::with_capacity(plain.len() + 64);
        let mut input: &[u8] = &plain;
        loop {
            let before = self.headers.total_in();
            self.headers.compress_vec(input, &mut out, FlushCompress::Sync).map_err(io::Error::other)?;
            input = &input[(self.headers.total_in() - before) as usize..];
            // Done once all input is in and the flush did not run out of room.
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
            out.reserve(64 + input.len());
        }
    }
}

fn control(kind: u16, flags: u8, length: usize) -> BytesMut {
    let mut frame = BytesMut::with_capacity(8 + length);
    frame.put_u16(0x8000 | VERSION);
    frame.put_u16(kind);
    frame.put_u8(flags);
    frame.put_uint(length as u64, 3);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    fn inflate(decompress: &mut Decompress, block: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(4096);
        decompress.decompress_vec(block, &mut out, FlushDecompress::Sync).unwrap();
        out
    }

    #[tokio::test]
    async fn streams_open_with_odd_ids_and_headers_a_zlib_reader_decodes_in_sequence() {
        let mut writer = Writer::new(Vec::new());
        assert_eq!(writer.open(&[("streamtype", "error")]).await.unwrap(), 1);
        assert_eq!(writer.open(&[("streamtype", "stdin")]).await.unwrap(), 3);
        let bytes = writer.io.clone();
        let mut decompress = Decompress::new(true);
        let mut rest = &bytes[..];
        for expected in ["error", "stdin"] {
            assert_eq!(&rest[..4], &[0x80, 0x03, 0x00, 0x01], "a SYN_STREAM of version 3");
            let length = u32::from_be_bytes([0, rest[5], rest[6], rest[7]]) as usize;
            let plain = inflate(&mut decompress, &rest[8 + 10..8 + length]);
            let mut want = vec![0, 0, 0, 1, 0, 0, 0, 10];
            want.extend_from_slice(b"streamtype");
            want.extend_from_slice(&(expected.len() as u32).to_be_bytes());
            want.extend_from_slice(expected.as_bytes());
            assert_eq!(plain, want);
            rest = &rest[8 + length..];
        }
    }

    #[tokio::test]
    async fn frames_read_back_as_written() {
        let mut writer = Writer::new(Vec::new());
        writer.data(5, b"hello", true).await.unwrap();
        writer.pong(7).await.unwrap();
        let mut reader = &writer.io[..];
        let data = read_frame(&mut reader).await.unwrap();
        assert_eq!(data, Some(Frame::Data { stream: 5, payload: Bytes::from_static(b"hello"), fin: true }));
        assert_eq!(read_frame(&mut reader).await.unwrap(), Some(Frame::Ping(7)));
        assert_eq!(read_frame(&mut reader).await.unwrap(), None);
    }
}
