//! A bounds-checking wrapper around thrift 0.17's binary input protocol.
//!
//! `TBinaryInputProtocol` trusts the sizes on the wire: `read_bytes` and
//! `read_string` allocate `vec![0; len]` from an i32 the peer chose (a
//! negative one becomes a huge `usize`), strict `read_message_begin` reads
//! the method name the same way, and the generated code calls
//! `Vec::with_capacity(size)` for list sizes. Anyone who can connect to our
//! socket could make the process panic or run out of memory. This wrapper
//! checks every size before anything is allocated and reads string bodies
//! incrementally, so memory grows only with bytes that actually arrived.
//! Everything else is delegated unchanged.
use std::io::Read;
use thrift::protocol::{
    TBinaryInputProtocol, TFieldIdentifier, TInputProtocol, TListIdentifier, TMapIdentifier,
    TMessageIdentifier, TMessageType, TSetIdentifier, TStructIdentifier,
};
use thrift::transport::TReadTransport;
use thrift::{ProtocolError, ProtocolErrorKind};

/// Large enough for any real osquery request (a context JSON, a 100 MB
/// string), small enough that one connection cannot exhaust memory. It
/// bounds every string and also all strings of one message together, so a
/// request holds at most this much text however it is split.
pub const MAX_BYTES_LEN: usize = 128 * 1024 * 1024;

/// osquery's requests are maps of a handful of keys and lists of rows; a
/// million elements is far beyond anything legitimate.
pub const MAX_COLLECTION_LEN: usize = 1_000_000;

/// Strict binary protocol version 1, as every osquery build writes it.
const VERSION_MASK: u32 = 0xffff_0000;
const VERSION_1: u32 = 0x8001_0000;

pub struct GuardedInputProtocol<T: TReadTransport> {
    inner: TBinaryInputProtocol<T>,
    max_bytes: usize,
    max_elements: usize,
    /// String bytes read since the current message began.
    message_bytes: usize,
    /// The first read error. The generated processor turns an error while
    /// reading arguments into an exception reply and reports success, so
    /// the server asks here whether the stream is still in step.
    failure: Option<ReadFailure>,
}

/// Why a connection's input became unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadFailure {
    /// The peer hung up (possibly mid-message): routine, not an attack.
    pub eof: bool,
    /// The peer stayed silent past a deadline (see `server::Limits`).
    pub timed_out: bool,
    pub message: String,
}

fn protocol_error(kind: ProtocolErrorKind, message: String) -> thrift::Error {
    thrift::Error::Protocol(ProtocolError { kind, message })
}

impl<T: TReadTransport> GuardedInputProtocol<T> {
    /// Strict mode: a message that does not open with the version header
    /// (garbage, an HTTP probe) is rejected at its first four bytes.
    pub fn new(transport: T) -> Self {
        Self::with_limits(transport, MAX_BYTES_LEN, MAX_COLLECTION_LEN)
    }

    /// Limits are parameters so tests can probe the boundaries without
    /// allocating 128 MiB.
    pub fn with_limits(transport: T, max_bytes: usize, max_elements: usize) -> Self {
        GuardedInputProtocol {
            inner: TBinaryInputProtocol::new(transport, true),
            max_bytes,
            max_elements,
            message_bytes: 0,
            failure: None,
        }
    }

    /// Why reading failed, if it did: after that the connection is out of
    /// step with its peer and must be closed.
    pub fn failure(&self) -> Option<&ReadFailure> {
        self.failure.as_ref()
    }

    fn note<R>(&mut self, result: thrift::Result<R>) -> thrift::Result<R> {
        if let Err(e) = &result {
            if self.failure.is_none() {
                let eof = matches!(
                    e,
                    thrift::Error::Transport(t) if t.kind == thrift::TransportErrorKind::EndOfFile
                );
                let timed_out = matches!(
                    e,
                    thrift::Error::Transport(t) if t.kind == thrift::TransportErrorKind::TimedOut
                );
                // thrift's Display shows only the error kind; the message
                // says which size was wrong.
                let message = match e {
                    thrift::Error::Protocol(p) if !p.message.is_empty() => p.message.clone(),
                    thrift::Error::Transport(t) if !t.message.is_empty() => t.message.clone(),
                    other => other.to_string(),
                };
                self.failure = Some(ReadFailure {
                    eof,
                    timed_out,
                    message,
                });
            }
        }
        result
    }

    fn check_size(&self, size: i32, limit: usize, what: &str) -> thrift::Result<usize> {
        let size = usize::try_from(size).map_err(|_| {
            protocol_error(
                ProtocolErrorKind::NegativeSize,
                format!("negative {what} size {size}"),
            )
        })?;
        if size > limit {
            return Err(protocol_error(
                ProtocolErrorKind::SizeLimit,
                format!("{what} size {size} exceeds the limit of {limit}"),
            ));
        }
        Ok(size)
    }

    fn check_elements(&self, size: i32, what: &str) -> thrift::Result<()> {
        self.check_size(size, self.max_elements, what).map(|_| ())
    }

    /// Reads a length-prefixed byte string. `Read::take` + `read_to_end`
    /// grows the buffer as data arrives, so a peer that claims 100 MB and
    /// sends ten bytes costs ten bytes, not 100 MB.
    fn read_bounded_bytes(&mut self) -> thrift::Result<Vec<u8>> {
        let len = self.inner.read_i32()?;
        let len = self.check_size(len, self.max_bytes, "string")?;
        let left = self.max_bytes.saturating_sub(self.message_bytes);
        if len > left {
            return Err(protocol_error(
                ProtocolErrorKind::SizeLimit,
                format!(
                    "a message holds more than {} bytes of strings",
                    self.max_bytes
                ),
            ));
        }
        self.message_bytes += len;
        let mut buf = Vec::new();
        let limit = u64::try_from(len).unwrap_or(u64::MAX);
        (&mut self.inner.transport)
            .take(limit)
            .read_to_end(&mut buf)?;
        if buf.len() != len {
            return Err(thrift::Error::Transport(thrift::TransportError::new(
                thrift::TransportErrorKind::EndOfFile,
                format!("string truncated: {} of {len} bytes", buf.len()),
            )));
        }
        Ok(buf)
    }
}

/// The checked reads. The trait impl below wraps each one so that any
/// failure, checked here or in the inner protocol, is remembered.
impl<T: TReadTransport> GuardedInputProtocol<T> {
    /// Reimplemented rather than delegated: the inner version reads the
    /// method name with its own unbounded `read_string`.
    fn raw_read_message_begin(&mut self) -> thrift::Result<TMessageIdentifier> {
        let header = self.inner.read_i32()? as u32;
        if header & VERSION_MASK != VERSION_1 {
            return Err(protocol_error(
                ProtocolErrorKind::BadVersion,
                format!("bad message header {header:#010x}"),
            ));
        }
        let message_type = TMessageType::try_from((header & 0xff) as u8)?;
        self.message_bytes = 0;
        let name = self.raw_read_string()?;
        let sequence_number = self.inner.read_i32()?;
        Ok(TMessageIdentifier::new(name, message_type, sequence_number))
    }

    fn raw_read_message_end(&mut self) -> thrift::Result<()> {
        self.inner.read_message_end()
    }

    fn raw_read_struct_begin(&mut self) -> thrift::Result<Option<TStructIdentifier>> {
        self.inner.read_struct_begin()
    }

    fn raw_read_struct_end(&mut self) -> thrift::Result<()> {
        self.inner.read_struct_end()
    }

    fn raw_read_field_begin(&mut self) -> thrift::Result<TFieldIdentifier> {
        self.inner.read_field_begin()
    }

    fn raw_read_field_end(&mut self) -> thrift::Result<()> {
        self.inner.read_field_end()
    }

    fn raw_read_bool(&mut self) -> thrift::Result<bool> {
        self.inner.read_bool()
    }

    fn raw_read_bytes(&mut self) -> thrift::Result<Vec<u8>> {
        self.read_bounded_bytes()
    }

    fn raw_read_i8(&mut self) -> thrift::Result<i8> {
        self.inner.read_i8()
    }

    fn raw_read_i16(&mut self) -> thrift::Result<i16> {
        self.inner.read_i16()
    }

    fn raw_read_i32(&mut self) -> thrift::Result<i32> {
        self.inner.read_i32()
    }

    fn raw_read_i64(&mut self) -> thrift::Result<i64> {
        self.inner.read_i64()
    }

    fn raw_read_double(&mut self) -> thrift::Result<f64> {
        self.inner.read_double()
    }

    fn raw_read_string(&mut self) -> thrift::Result<String> {
        let bytes = self.read_bounded_bytes()?;
        String::from_utf8(bytes).map_err(From::from)
    }

    fn raw_read_list_begin(&mut self) -> thrift::Result<TListIdentifier> {
        let ident = self.inner.read_list_begin()?;
        self.check_elements(ident.size, "list")?;
        Ok(ident)
    }

    fn raw_read_list_end(&mut self) -> thrift::Result<()> {
        self.inner.read_list_end()
    }

    fn raw_read_set_begin(&mut self) -> thrift::Result<TSetIdentifier> {
        let ident = self.inner.read_set_begin()?;
        self.check_elements(ident.size, "set")?;
        Ok(ident)
    }

    fn raw_read_set_end(&mut self) -> thrift::Result<()> {
        self.inner.read_set_end()
    }

    fn raw_read_map_begin(&mut self) -> thrift::Result<TMapIdentifier> {
        let ident = self.inner.read_map_begin()?;
        self.check_elements(ident.size, "map")?;
        Ok(ident)
    }

    fn raw_read_map_end(&mut self) -> thrift::Result<()> {
        self.inner.read_map_end()
    }

    fn raw_read_byte(&mut self) -> thrift::Result<u8> {
        self.inner.read_byte()
    }
}

impl<T: TReadTransport> TInputProtocol for GuardedInputProtocol<T> {
    fn read_message_begin(&mut self) -> thrift::Result<TMessageIdentifier> {
        let result = self.raw_read_message_begin();
        self.note(result)
    }

    fn read_message_end(&mut self) -> thrift::Result<()> {
        let result = self.raw_read_message_end();
        self.note(result)
    }

    fn read_struct_begin(&mut self) -> thrift::Result<Option<TStructIdentifier>> {
        let result = self.raw_read_struct_begin();
        self.note(result)
    }

    fn read_struct_end(&mut self) -> thrift::Result<()> {
        let result = self.raw_read_struct_end();
        self.note(result)
    }

    fn read_field_begin(&mut self) -> thrift::Result<TFieldIdentifier> {
        let result = self.raw_read_field_begin();
        self.note(result)
    }

    fn read_field_end(&mut self) -> thrift::Result<()> {
        let result = self.raw_read_field_end();
        self.note(result)
    }

    fn read_bool(&mut self) -> thrift::Result<bool> {
        let result = self.raw_read_bool();
        self.note(result)
    }

    fn read_bytes(&mut self) -> thrift::Result<Vec<u8>> {
        let result = self.raw_read_bytes();
        self.note(result)
    }

    fn read_i8(&mut self) -> thrift::Result<i8> {
        let result = self.raw_read_i8();
        self.note(result)
    }

    fn read_i16(&mut self) -> thrift::Result<i16> {
        let result = self.raw_read_i16();
        self.note(result)
    }

    fn read_i32(&mut self) -> thrift::Result<i32> {
        let result = self.raw_read_i32();
        self.note(result)
    }

    fn read_i64(&mut self) -> thrift::Result<i64> {
        let result = self.raw_read_i64();
        self.note(result)
    }

    fn read_double(&mut self) -> thrift::Result<f64> {
        let result = self.raw_read_double();
        self.note(result)
    }

    fn read_string(&mut self) -> thrift::Result<String> {
        let result = self.raw_read_string();
        self.note(result)
    }

    fn read_list_begin(&mut self) -> thrift::Result<TListIdentifier> {
        let result = self.raw_read_list_begin();
        self.note(result)
    }

    fn read_list_end(&mut self) -> thrift::Result<()> {
        let result = self.raw_read_list_end();
        self.note(result)
    }

    fn read_set_begin(&mut self) -> thrift::Result<TSetIdentifier> {
        let result = self.raw_read_set_begin();
        self.note(result)
    }

    fn read_set_end(&mut self) -> thrift::Result<()> {
        let result = self.raw_read_set_end();
        self.note(result)
    }

    fn read_map_begin(&mut self) -> thrift::Result<TMapIdentifier> {
        let result = self.raw_read_map_begin();
        self.note(result)
    }

    fn read_map_end(&mut self) -> thrift::Result<()> {
        let result = self.raw_read_map_end();
        self.note(result)
    }

    fn read_byte(&mut self) -> thrift::Result<u8> {
        let result = self.raw_read_byte();
        self.note(result)
    }

    // `skip`/`skip_till_depth` keep their default bodies on purpose: those
    // call back into the guarded methods above, and stop at a depth limit.
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use thrift::protocol::{TBinaryOutputProtocol, TOutputProtocol, TType};

    fn guarded(bytes: Vec<u8>) -> GuardedInputProtocol<Cursor<Vec<u8>>> {
        GuardedInputProtocol::with_limits(Cursor::new(bytes), 1024, 100)
    }

    /// A strict call header for method `name`, as osquery writes it.
    fn header(name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut p = TBinaryOutputProtocol::new(&mut out, true);
            p.write_message_begin(&TMessageIdentifier::new(name, TMessageType::Call, 7))
                .unwrap();
            p.flush().unwrap();
        }
        out
    }

    fn kind(err: thrift::Error) -> Option<ProtocolErrorKind> {
        match err {
            thrift::Error::Protocol(p) => Some(p.kind),
            _ => None,
        }
    }

    #[test]
    fn reads_a_well_formed_message() {
        let mut bytes = header("ping");
        bytes.extend([0x0b, 0, 1, 0, 0, 0, 2, b'h', b'i', 0x00]);
        let mut p = guarded(bytes);
        let ident = p.read_message_begin().unwrap();
        assert_eq!(ident.name, "ping");
        assert_eq!(ident.sequence_number, 7);
        let field = p.read_field_begin().unwrap();
        assert_eq!(field.field_type, TType::String);
        assert_eq!(p.read_string().unwrap(), "hi");
        assert_eq!(p.read_field_begin().unwrap().field_type, TType::Stop);
    }

    #[test]
    fn rejects_negative_string_length() {
        let mut p = guarded(vec![0xff, 0xff, 0xff, 0xfe, b'x']);
        assert_eq!(
            kind(p.read_string().unwrap_err()),
            Some(ProtocolErrorKind::NegativeSize)
        );
        let mut p = guarded(vec![0x80, 0, 0, 0]);
        assert_eq!(
            kind(p.read_bytes().unwrap_err()),
            Some(ProtocolErrorKind::NegativeSize)
        );
    }

    #[test]
    fn rejects_huge_string_length_without_allocating() {
        let mut p = guarded(vec![0x7f, 0xff, 0xff, 0xff, b'x']);
        assert_eq!(
            kind(p.read_string().unwrap_err()),
            Some(ProtocolErrorKind::SizeLimit)
        );
        // The default limits too: a 2 GB claim in a method name.
        let mut bytes = vec![0x80, 0x01, 0x00, 0x01, 0x7f, 0xff, 0xff, 0xff];
        bytes.extend(b"call");
        let mut p = GuardedInputProtocol::new(Cursor::new(bytes));
        assert_eq!(
            kind(p.read_message_begin().unwrap_err()),
            Some(ProtocolErrorKind::SizeLimit)
        );
    }

    #[test]
    fn string_at_the_limit_is_accepted() {
        let mut bytes = vec![0, 0, 4, 0];
        bytes.extend(std::iter::repeat_n(b'a', 1024));
        assert_eq!(guarded(bytes).read_string().unwrap().len(), 1024);
        let mut bytes = vec![0, 0, 4, 1];
        bytes.extend(std::iter::repeat_n(b'a', 1025));
        assert!(guarded(bytes).read_string().is_err());
    }

    #[test]
    fn default_limit_admits_a_100_mb_string() {
        let len: usize = 100 * 1024 * 1024;
        let mut bytes = Vec::with_capacity(len + 4);
        bytes.extend((len as i32).to_be_bytes());
        bytes.resize(len + 4, b'x');
        let mut p = GuardedInputProtocol::new(Cursor::new(bytes));
        assert_eq!(p.read_string().unwrap().len(), len);
    }

    #[test]
    fn strings_of_one_message_share_the_limit() {
        let mut bytes = header("call");
        for _ in 0..3 {
            bytes.extend([0, 0, 1, 144]); // 400 bytes
            bytes.extend(std::iter::repeat_n(b'a', 400));
        }
        let mut p = guarded(bytes.clone());
        p.read_message_begin().unwrap();
        p.read_string().unwrap();
        p.read_string().unwrap();
        assert_eq!(
            kind(p.read_string().unwrap_err()),
            Some(ProtocolErrorKind::SizeLimit)
        );
        // The next message starts afresh.
        let mut twice = header("call");
        twice.extend([0, 0, 1, 144]);
        twice.extend(std::iter::repeat_n(b'a', 400));
        twice.extend(twice.clone());
        let mut p = guarded(twice);
        for _ in 0..2 {
            p.read_message_begin().unwrap();
            p.read_string().unwrap();
        }
    }

    #[test]
    fn truncated_string_is_an_error() {
        let mut p = guarded(vec![0, 0, 0, 10, b'a', b'b']);
        assert!(matches!(
            p.read_string().unwrap_err(),
            thrift::Error::Transport(_)
        ));
        let mut bytes = header("call");
        bytes.truncate(bytes.len() - 3);
        assert!(guarded(bytes).read_message_begin().is_err());
        assert!(guarded(Vec::new()).read_message_begin().is_err());
    }

    #[test]
    fn rejects_bad_collection_sizes() {
        // list<string> of 2^31-1 elements, negative map, oversized set.
        let mut p = guarded(vec![0x0b, 0x7f, 0xff, 0xff, 0xff]);
        assert_eq!(
            kind(p.read_list_begin().unwrap_err()),
            Some(ProtocolErrorKind::SizeLimit)
        );
        let mut p = guarded(vec![0x0b, 0x0b, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            kind(p.read_map_begin().unwrap_err()),
            Some(ProtocolErrorKind::NegativeSize)
        );
        let mut p = guarded(vec![0x08, 0, 0, 0, 101]);
        assert_eq!(
            kind(p.read_set_begin().unwrap_err()),
            Some(ProtocolErrorKind::SizeLimit)
        );
        let mut p = guarded(vec![0x08, 0, 0, 0, 100]);
        assert_eq!(p.read_set_begin().unwrap().size, 100);
    }

    #[test]
    fn garbage_is_rejected_at_the_header() {
        for garbage in [
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            vec![0x80, 0x02, 0x00, 0x01, 0, 0, 0, 0],
            vec![
                0x00, 0x00, 0x00, 0x04, b'p', b'i', b'n', b'g', 1, 0, 0, 0, 0,
            ],
            vec![0xff; 64],
        ] {
            assert!(guarded(garbage).read_message_begin().is_err());
        }
    }

    #[test]
    fn skip_goes_through_the_guard() {
        // A struct holding a string field that claims 2 GB.
        let mut p = guarded(vec![0x0b, 0, 1, 0x7f, 0xff, 0xff, 0xff, 0]);
        assert_eq!(
            kind(p.skip(TType::Struct).unwrap_err()),
            Some(ProtocolErrorKind::SizeLimit)
        );
    }

    #[test]
    fn processor_survives_hostile_call_arguments() {
        use super::super::bindings::{
            ExtensionPluginRequest, ExtensionResponse, ExtensionStatus, ExtensionSyncHandler,
            ExtensionSyncProcessor,
        };
        use thrift::server::TProcessor;
        struct Nop;
        impl ExtensionSyncHandler for Nop {
            fn handle_ping(&self) -> thrift::Result<ExtensionStatus> {
                Ok(ExtensionStatus::default())
            }
            fn handle_call(
                &self,
                _: String,
                _: String,
                _: ExtensionPluginRequest,
            ) -> thrift::Result<ExtensionResponse> {
                Ok(ExtensionResponse::default())
            }
            fn handle_shutdown(&self) -> thrift::Result<()> {
                Ok(())
            }
        }
        let processor = ExtensionSyncProcessor::new(Nop);
        // call(registry, item, request) with a request map claiming -1 and
        // then 2^31-1 entries.
        for size in [[0xff, 0xff, 0xff, 0xff], [0x7f, 0xff, 0xff, 0xff]] {
            let mut bytes = header("call");
            bytes.extend([0x0d, 0, 3, 0x0b, 0x0b]);
            bytes.extend(size);
            let mut input = guarded(bytes);
            let mut out = Vec::new();
            let mut output = TBinaryOutputProtocol::new(&mut out, true);
            // The processor answers with an exception and reports success;
            // the guard remembers that the stream is now unusable.
            let _ = processor.process(&mut input, &mut output);
            assert!(input.failure().is_some());
        }
    }
}
