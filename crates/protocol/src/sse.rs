//! Server-Sent Events: the parser (for upstream streams) and the writer (for the
//! front door), following the WHATWG event-stream rules.
//!
//! The parser is incremental: feed it bytes as they arrive in any chunking and it yields
//! complete events. It accepts `\n`, `\r\n` and `\r` line endings, skips comments and a
//! leading BOM, and bounds the size of one event.
//!
//! Its cost is linear in its input however the input is cut: the search for a line's
//! end resumes where the last chunk's search stopped (a stream sent one byte at a time
//! with no newline costs one look at each byte, not one look at the whole buffer per
//! chunk), and a chunk that would grow an event past the limit is refused before it is
//! buffered.

use bytes::{BufMut, BytesMut};

/// One dispatched event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// `event:`; empty means the default type, `message`.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The last event id in force when the event was dispatched.
    pub id: Option<String>,
    /// A `retry:` reconnection delay, in milliseconds, if this event set one.
    pub retry: Option<u64>,
}

impl Event {
    /// The event type, `message` by default.
    pub fn kind(&self) -> &str {
        if self.event.is_empty() {
            "message"
        } else {
            &self.event
        }
    }
}

/// Why a stream could not be parsed further.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseError {
    /// One event grew past the limit.
    TooLarge(usize),
}

impl std::fmt::Display for SseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SseError::TooLarge(max) => write!(f, "an event is larger than {max} bytes"),
        }
    }
}

impl std::error::Error for SseError {}

/// An incremental event-stream parser.
#[derive(Debug)]
pub struct Parser {
    buf: BytesMut,
    max: usize,
    started: bool,
    /// The previous chunk ended in `\r`; a `\n` at the start of the next one belongs to it.
    after_cr: bool,
    /// How much of `buf` is known to hold no line ending: the next search starts there.
    scanned: usize,
    /// Bytes examined by line-end searches, to test that the cost stays linear.
    #[cfg(test)]
    examined: usize,
    event: String,
    data: String,
    has_data: bool,
    retry: Option<u64>,
    last_id: Option<String>,
}

impl Parser {
    /// A parser that refuses events larger than `max` bytes.
    pub fn new(max: usize) -> Self {
        Parser {
            buf: BytesMut::new(),
            max,
            started: false,
            after_cr: false,
            scanned: 0,
            #[cfg(test)]
            examined: 0,
            event: String::new(),
            data: String::new(),
            has_data: false,
            retry: None,
            last_id: None,
        }
    }

    /// The last event id seen, for `Last-Event-ID` on reconnection.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// Feeds bytes; returns the events they complete.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<Vec<Event>, SseError> {
        if self.after_cr {
            self.after_cr = false;
            if chunk.first() == Some(&b'\n') {
                chunk = &chunk[1..];
            }
        }
        // The part of the chunk that extends the line in progress: refused before it is
        // buffered when it would take the event past the limit.
        let extends = memchr::memchr2(b'\n', b'\r', chunk).unwrap_or(chunk.len());
        if self.buf.len() + extends + self.data.len() + self.event.len() > self.max {
            self.buf.clear();
            self.scanned = 0;
            self.reset();
            return Err(SseError::TooLarge(self.max));
        }
        self.buf.put_slice(chunk);
        if !self.started && self.buf.len() >= 3 {
            self.started = true;
            if self.buf.starts_with(b"\xEF\xBB\xBF") {
                let _ = self.buf.split_to(3);
                self.scanned = self.scanned.saturating_sub(3);
            }
        }
        let mut events = Vec::new();
        loop {
            let rest = &self.buf[self.scanned..];
            let found = memchr::memchr2(b'\n', b'\r', rest);
            #[cfg(test)]
            {
                self.examined += found.map_or(rest.len(), |i| i + 1);
            }
            let Some(found) = found else { break };
            let end = self.scanned + found;
            self.scanned = 0;
            let line = self.buf.split_to(end);
            let terminator = self.buf.split_to(1);
            if terminator[0] == b'\r' {
                match self.buf.first() {
                    Some(b'\n') => {
                        let _ = self.buf.split_to(1);
                    }
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            let line = String::from_utf8_lossy(&line);
            if let Some(event) = self.line(&line) {
                events.push(event);
            }
        }
        self.scanned = self.buf.len();
        let pending = self.buf.len() + self.data.len() + self.event.len();
        if pending > self.max {
            self.buf.clear();
            self.scanned = 0;
            self.reset();
            return Err(SseError::TooLarge(self.max));
        }
        Ok(events)
    }

    fn reset(&mut self) {
        self.event.clear();
        self.data.clear();
        self.has_data = false;
        self.retry = None;
    }

    fn line(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = value.parse().ok();
            }
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<Event> {
        let retry = self.retry.take();
        if !self.has_data {
            self.event.clear();
            // No data means no event, but a `retry:` still matters to the reader.
            return retry.map(|retry| Event {
                event: String::new(),
                data: String::new(),
                id: self.last_id.clone(),
                retry: Some(retry),
            });
        }
        let event = Event {
            event: std::mem::take(&mut self.event),
            data: std::mem::take(&mut self.data),
            id: self.last_id.clone(),
            retry,
        };
        self.has_data = false;
        Some(event)
    }
}

/// Writes one event. `data` may contain newlines; each line becomes a `data:` line.
pub fn write_event(out: &mut Vec<u8>, id: Option<&str>, event: Option<&str>, data: &[u8]) {
    if let Some(event) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(event.as_bytes());
        out.push(b'\n');
    }
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.push(b'\n');
    }
    for line in data.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.push(b'\n');
}

/// One event as bytes.
pub fn event_bytes(id: Option<&str>, event: Option<&str>, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 32);
    write_event(&mut out, id, event, data);
    out
}

/// A priming event (an id and empty data), as 2025-11-25 servers send first, with an
/// optional `retry` hint.
pub fn priming_event(id: &str, retry_ms: Option<u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(48);
    out.extend_from_slice(b"id: ");
    out.extend_from_slice(id.as_bytes());
    out.push(b'\n');
    if let Some(retry) = retry_ms {
        out.extend_from_slice(format!("retry: {retry}\n").as_bytes());
    }
    out.extend_from_slice(b"data: \n\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(input: &[u8], chunk: usize) -> Vec<Event> {
        let mut parser = Parser::new(1 << 20);
        let mut out = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            out.extend(parser.feed(piece).unwrap());
        }
        out
    }

    #[test]
    fn parses_fields_comments_and_line_endings() {
        let input = b"\xEF\xBB\xBF: comment\r\nevent: endpoint\r\ndata: /messages?session_id=1\r\n\r\nid: 7\rdata: a\rdata:b\r\rretry: 1500\ndata\n\n";
        for chunk in [1, 2, 5, 1000] {
            let events = parse_all(input, chunk);
            assert_eq!(events.len(), 3, "chunk {chunk}: {events:?}");
            assert_eq!(events[0].kind(), "endpoint");
            assert_eq!(events[0].data, "/messages?session_id=1");
            assert_eq!(events[1].data, "a\nb");
            assert_eq!(events[1].id.as_deref(), Some("7"));
            assert_eq!(events[1].kind(), "message");
            assert_eq!(events[2].data, "");
            assert_eq!(events[2].retry, Some(1500));
            assert_eq!(
                events[2].id.as_deref(),
                Some("7"),
                "the last id stays in force"
            );
        }
    }

    #[test]
    fn a_priming_event_sets_the_last_id() {
        let mut parser = Parser::new(1024);
        let events = parser.feed(&priming_event("s1-0", None)).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "");
        assert_eq!(parser.last_event_id(), Some("s1-0"));
    }

    #[test]
    fn a_line_sent_in_tiny_pieces_costs_one_look_per_byte() {
        // 1 MB in 16-byte pieces with no line end (the stream that froze a gateway):
        // rescanning the buffer on every piece would examine 32 GB; each byte is
        // examined once.
        let mut parser = Parser::new(8 << 20);
        let piece = [b'x'; 16];
        parser.feed(b"data: ").unwrap();
        for _ in 0..(1 << 20) / 16 {
            assert!(parser.feed(&piece).unwrap().is_empty());
        }
        let events = parser.feed(b"\n\n").unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data.len(), 1 << 20);
        let fed = 6 + (1 << 20) + 2;
        assert!(
            parser.examined <= fed,
            "{} examined for {fed} fed",
            parser.examined
        );
    }

    #[test]
    fn a_chunk_that_would_pass_the_limit_is_refused_before_it_is_kept() {
        let mut parser = Parser::new(100);
        parser.feed(&[b'a'; 60]).unwrap();
        assert_eq!(parser.feed(&[b'b'; 60]), Err(SseError::TooLarge(100)));
        assert!(parser.buf.capacity() < 200, "{}", parser.buf.capacity());
        // Complete small events in one chunk larger than the limit are fine.
        let mut many = Vec::new();
        for _ in 0..20 {
            many.extend_from_slice(b"data: 0123456789\n\n");
        }
        let mut parser = Parser::new(100);
        assert_eq!(parser.feed(&many).unwrap().len(), 20);
    }

    #[test]
    fn oversized_events_are_refused() {
        let mut parser = Parser::new(16);
        assert_eq!(
            parser.feed(b"data: 0123456789abcdefghij"),
            Err(SseError::TooLarge(16))
        );
        assert_eq!(parser.feed(b"data: ok\n\n").unwrap()[0].data, "ok");
    }

    proptest! {
        #[test]
        fn written_events_parse_back(
            events in prop::collection::vec(("[a-z]{0,8}", "[ -~\\n]{0,60}", prop::option::of("[a-z0-9]{1,6}")), 1..8),
            chunk in 1usize..40,
        ) {
            let mut bytes = Vec::new();
            for (kind, data, id) in &events {
                let kind = (!kind.is_empty()).then_some(kind.as_str());
                write_event(&mut bytes, id.as_deref(), kind, data.as_bytes());
            }
            let parsed = parse_all(&bytes, chunk);
            prop_assert_eq!(parsed.len(), events.len());
            for (p, (kind, data, _)) in parsed.iter().zip(&events) {
                prop_assert_eq!(&p.event, kind);
                prop_assert_eq!(&p.data, data);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..300), chunk in 1usize..50) {
            let mut parser = Parser::new(128);
            for piece in input.chunks(chunk) {
                let _ = parser.feed(piece);
            }
        }
    }
}
