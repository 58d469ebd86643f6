//! Newline-delimited JSON framing, as MCP's stdio transport uses.
//!
//! Messages are one per line and never contain a raw newline. The reader copes with
//! partial reads, strips `\r`, and bounds memory: a line longer than the limit is
//! skipped to its end and reported as [`Line::Oversized`], without losing the stream.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// One framed item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A complete line without its terminator (never empty).
    Message(Bytes),
    /// A line longer than the limit, skipped; carries how many bytes it had.
    Oversized(usize),
}

/// Reads newline-delimited messages from a byte stream.
#[derive(Debug)]
pub struct LineReader<R> {
    inner: R,
    buf: BytesMut,
    max: usize,
    /// Bytes of an oversized line seen so far, while skipping it.
    skipping: Option<usize>,
    eof: bool,
    /// How much of `buf` is known to hold no newline: the next search starts there.
    scanned: usize,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// A reader that accepts lines of at most `max` bytes.
    pub fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner,
            buf: BytesMut::with_capacity(8 * 1024),
            max,
            skipping: None,
            eof: false,
            scanned: 0,
        }
    }

    /// The next line, `Ok(None)` at end of stream. Blank lines are skipped. A final
    /// line without a newline is returned at end of stream.
    pub async fn next(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            if let Some(line) = self.take_line() {
                match line {
                    Line::Message(m) if m.is_empty() => continue,
                    other => return Ok(Some(other)),
                }
            }
            if self.eof {
                if let Some(seen) = self.skipping.take() {
                    return Ok(Some(Line::Oversized(seen + self.buf.len())));
                }
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let rest = trim_cr(self.buf.split().freeze());
                if rest.iter().all(u8::is_ascii_whitespace) {
                    return Ok(None);
                }
                return Ok(Some(Line::Message(rest)));
            }
            self.buf.reserve(8 * 1024);
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                self.eof = true;
            }
        }
    }

    fn take_line(&mut self) -> Option<Line> {
        // The search resumes past what earlier searches saw: a line that arrives a byte
        // at a time costs one look at each byte, not one look at the line per read.
        let found = memchr::memchr(b'\n', &self.buf[self.scanned.min(self.buf.len())..]);
        match found.map(|i| self.scanned.min(self.buf.len()) + i) {
            Some(i) => {
                self.scanned = 0;
                let line = self.buf.split_to(i + 1);
                if let Some(seen) = self.skipping.take() {
                    return Some(Line::Oversized(seen + line.len() - 1));
                }
                if line.len() - 1 > self.max {
                    return Some(Line::Oversized(line.len() - 1));
                }
                let mut line = line.freeze();
                line.truncate(line.len() - 1);
                Some(Line::Message(trim_cr(line)))
            }
            None => {
                if self.buf.len() > self.max {
                    // Drop what we have of the oversized line and keep skipping.
                    *self.skipping.get_or_insert(0) += self.buf.len();
                    self.buf.clear();
                }
                self.scanned = self.buf.len();
                None
            }
        }
    }
}

fn trim_cr(mut line: Bytes) -> Bytes {
    if line.last() == Some(&b'\r') {
        line.truncate(line.len() - 1);
    }
    line
}

/// Frames one message: the bytes (raw newlines turned into spaces) and a `\n`.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 1);
    out.extend_from_slice(message);
    crate::jsonrpc::compact_newlines(&mut out);
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A reader that hands out its data in the given chunk sizes.
    struct Chunked {
        data: Vec<u8>,
        pos: usize,
        sizes: Vec<usize>,
        turn: usize,
    }

    impl AsyncRead for Chunked {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            let size = self.sizes[self.turn % self.sizes.len()].max(1);
            self.turn += 1;
            let end = (self.pos + size)
                .min(self.data.len())
                .min(self.pos + buf.remaining());
            let chunk = self.data[self.pos..end].to_vec();
            buf.put_slice(&chunk);
            self.pos = end;
            std::task::Poll::Ready(Ok(()))
        }
    }

    fn read_all(data: &[u8], sizes: Vec<usize>, max: usize) -> Vec<Line> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut reader = LineReader::new(
                Chunked {
                    data: data.to_vec(),
                    pos: 0,
                    sizes,
                    turn: 0,
                },
                max,
            );
            let mut out = Vec::new();
            while let Some(line) = reader.next().await.unwrap() {
                out.push(line);
            }
            out
        })
    }

    #[test]
    fn frames_lines_across_partial_reads() {
        let lines = read_all(b"{\"a\":1}\r\n\n{\"b\":2}\n{\"c\":3}", vec![1, 2, 3], 100);
        assert_eq!(
            lines,
            vec![
                Line::Message(Bytes::from_static(b"{\"a\":1}")),
                Line::Message(Bytes::from_static(b"{\"b\":2}")),
                Line::Message(Bytes::from_static(b"{\"c\":3}")),
            ]
        );
    }

    #[test]
    fn skips_oversized_lines_without_losing_the_stream() {
        let mut data = vec![b'x'; 50];
        data.extend_from_slice(b"\nok\n");
        data.extend_from_slice(&[b'y'; 30]);
        let lines = read_all(&data, vec![7], 10);
        assert_eq!(
            lines,
            vec![
                Line::Oversized(50),
                Line::Message(Bytes::from_static(b"ok")),
                Line::Oversized(30)
            ]
        );
    }

    proptest! {
        /// The same property as the `ndjson` fuzz target, on stable.
        #[test]
        fn arbitrary_bytes_frame_within_the_limit(data in prop::collection::vec(any::<u8>(), 0..400), sizes in prop::collection::vec(1usize..50, 1..4)) {
            for line in read_all(&data, sizes, 64) {
                if let Line::Message(bytes) = line {
                    prop_assert!(bytes.len() <= 64 && !bytes.contains(&b'\n'));
                }
            }
        }

        #[test]
        fn any_messages_round_trip_through_framing(
            messages in prop::collection::vec("[a-z{}\":, \\n\\r]{1,40}", 0..20),
            sizes in prop::collection::vec(1usize..64, 1..5),
        ) {
            let mut data = Vec::new();
            for m in &messages {
                data.extend(frame(m.as_bytes()));
            }
            let lines = read_all(&data, sizes, 1 << 20);
            let expected: Vec<Line> = messages
                .iter()
                .map(|m| m.replace(['\n', '\r'], " "))
                .filter(|m| !m.is_empty())
                .map(|m| Line::Message(Bytes::from(m)))
                .collect();
            prop_assert_eq!(lines, expected);
        }
    }
}
