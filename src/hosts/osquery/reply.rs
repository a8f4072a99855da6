//! The extension's request processor, with a hand-written reply path for
//! `call`. Every other method (`ping`, `shutdown`, unknown names) goes to the
//! generated functions in `bindings`, unchanged.
//!
//! Why `call` is written by hand: the generated processor asks the handler
//! for a whole `ExtensionResponse`, i.e. every row as a
//! `BTreeMap<String, String>`, before it writes a byte: a second, larger
//! copy of the whole result (tree nodes and an owned key per cell) held
//! beside the first until the last byte is out. Here the rows are
//! written one at a time from their packed form (`encoded`, filled while
//! the table runs), through the same `TOutputProtocol` calls in the same order as the generated
//! `ExtensionCallResult::write_to_out_protocol`, so the bytes on the wire
//! are identical (the unit tests compare them for the same rows). The
//! bindings themselves stay generated (`scripts/gen-thrift.sh`, checked in
//! CI); only this module knows the shape of the reply.
use super::bindings::{
    ExtensionPluginRequest, ExtensionResponse, ExtensionStatus, ExtensionSyncHandler,
    TExtensionProcessFunctions,
};
use std::collections::BTreeMap;
use thrift::protocol::{
    field_id, verify_required_field_exists, TFieldIdentifier, TInputProtocol, TListIdentifier,
    TMapIdentifier, TMessageIdentifier, TMessageType, TOutputProtocol, TSerializable,
    TStructIdentifier, TType,
};
use thrift::server::TProcessor;
use thrift::{ApplicationError, ApplicationErrorKind};

/// A handler that may write `call`'s reply itself. The default writes the
/// handler's whole `ExtensionResponse`, exactly as the generated processor
/// would; a handler with large results overrides it and streams.
pub trait StreamingHandler: ExtensionSyncHandler {
    /// The answer to a call refused before it reached the handler (a
    /// request over [`MAX_REQUEST_ENTRIES`]): status 1 and `message`.
    fn refused(&self, message: String) -> ExtensionResponse {
        ExtensionResponse::new(ExtensionStatus::new(1, message, 0), Vec::new())
    }

    fn stream_call(
        &self,
        registry: String,
        item: String,
        request: ExtensionPluginRequest,
        reply: Reply<'_>,
    ) -> thrift::Result<()> {
        match self.handle_call(registry, item, request) {
            Ok(response) => reply.whole(&response),
            Err(thrift::Error::Application(e)) => Err(thrift::Error::Application(e)),
            // As the generated processor: any other error becomes an
            // `Unknown` application exception carrying its text.
            Err(e) => Err(thrift::Error::Application(ApplicationError::new(
                ApplicationErrorKind::Unknown,
                e.to_string(),
            ))),
        }
    }
}

/// Where a `call`'s reply goes: the output protocol and the sequence
/// number of the request it answers. Nothing is written until a method
/// is called, so a handler that fails first still gets an exception reply.
pub struct Reply<'o> {
    out: &'o mut dyn TOutputProtocol,
    sequence: i32,
}

impl<'o> Reply<'o> {
    /// The message header and the result struct up to its one field, as
    /// the generated `ExtensionCallResult` writer opens them.
    fn open(self) -> thrift::Result<&'o mut dyn TOutputProtocol> {
        let out = self.out;
        out.write_message_begin(&TMessageIdentifier::new(
            "call",
            TMessageType::Reply,
            self.sequence,
        ))?;
        out.write_struct_begin(&TStructIdentifier::new("ExtensionCallResult"))?;
        out.write_field_begin(&TFieldIdentifier::new("result_value", TType::Struct, 0))?;
        Ok(out)
    }

    /// Opens a reply of `rows` rows after `status`, as the generated
    /// `ExtensionResponse` writer does when both fields are set. The list
    /// size comes first on the wire, hence the count up front.
    pub fn begin(self, status: &ExtensionStatus, rows: usize) -> thrift::Result<RowWriter<'o>> {
        let out = self.open()?;
        out.write_struct_begin(&TStructIdentifier::new("ExtensionResponse"))?;
        out.write_field_begin(&TFieldIdentifier::new("status", TType::Struct, 1))?;
        status.write_to_out_protocol(out)?;
        out.write_field_end()?;
        out.write_field_begin(&TFieldIdentifier::new("response", TType::List, 2))?;
        out.write_list_begin(&TListIdentifier::new(TType::Map, wire_len(rows)?))?;
        Ok(RowWriter {
            out,
            promised: rows,
            written: 0,
        })
    }

    /// A whole response, through the generated serializer.
    pub fn whole(self, response: &ExtensionResponse) -> thrift::Result<()> {
        let out = self.open()?;
        response.write_to_out_protocol(out)?;
        close(out)
    }
}

/// Closes the result struct and the message, and flushes.
fn close(out: &mut dyn TOutputProtocol) -> thrift::Result<()> {
    out.write_field_end()?;
    out.write_field_stop()?;
    out.write_struct_end()?;
    out.write_message_end()?;
    out.flush()
}

/// The open list of rows of a reply.
pub struct RowWriter<'o> {
    out: &'o mut dyn TOutputProtocol,
    promised: usize,
    written: usize,
}

impl RowWriter<'_> {
    /// One row: `len` cells, keys in ascending order (the order a
    /// `BTreeMap` iterates, so the bytes match the generated writer's).
    pub fn row<K, V>(
        &mut self,
        len: usize,
        cells: impl Iterator<Item = (K, V)>,
    ) -> thrift::Result<()>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        if self.written == self.promised {
            return Err(miscount("more rows than announced"));
        }
        self.out.write_map_begin(&TMapIdentifier::new(
            TType::String,
            TType::String,
            wire_len(len)?,
        ))?;
        let mut n = 0;
        for (k, v) in cells {
            self.out.write_string(k.as_ref())?;
            self.out.write_string(v.as_ref())?;
            n += 1;
        }
        if n != len {
            return Err(miscount("a row's cells differ from its count"));
        }
        self.out.write_map_end()?;
        self.written += 1;
        Ok(())
    }

    /// Closes the list, the structs and the message, and flushes.
    pub fn finish(self) -> thrift::Result<()> {
        if self.written != self.promised {
            return Err(miscount("fewer rows than announced"));
        }
        let out = self.out;
        out.write_list_end()?;
        out.write_field_end()?;
        out.write_field_stop()?;
        out.write_struct_end()?;
        close(out)
    }
}

/// A reply whose counts went wrong cannot be repaired once its header is
/// on the wire: the error ends the connection (the peer sees it close)
/// rather than leaving it out of step.
pub(super) fn miscount(what: &str) -> thrift::Error {
    thrift::Error::Transport(thrift::TransportError::new(
        thrift::TransportErrorKind::Unknown,
        format!("call reply: {what}"),
    ))
}

fn wire_len(n: usize) -> thrift::Result<i32> {
    i32::try_from(n).map_err(|_| miscount("more than i32::MAX elements"))
}

/// Most entries a `call`'s request map may hold: osquery's table calls
/// send two (`action`, `context`). Entries past it are read and dropped at
/// once, so the call is refused with a status and the connection stays in
/// step, without a million-entry map ever being built.
pub const MAX_REQUEST_ENTRIES: usize = 1024;

/// A `call`'s arguments, or the reason the request was refused.
type CallArgs = (String, String, Result<ExtensionPluginRequest, String>);

/// The `call` arguments, read exactly as the generated (private)
/// `ExtensionCallArgs` reader does: unknown fields skipped, all three
/// required; the request map bounded by [`MAX_REQUEST_ENTRIES`].
fn read_call_args(i: &mut dyn TInputProtocol) -> thrift::Result<CallArgs> {
    i.read_struct_begin()?;
    let (mut registry, mut item, mut request) = (None, None, None);
    loop {
        let field = i.read_field_begin()?;
        if field.field_type == TType::Stop {
            break;
        }
        let id = field_id(&field)?;
        // A known field of another type is refused, not read as this one
        // (which left the stream out of step) nor skipped: osquery's own
        // server then fails the call for its missing field and closes.
        let expected = match id {
            1 | 2 => Some(TType::String),
            3 => Some(TType::Map),
            _ => None,
        };
        if let Some(t) = expected.filter(|t| *t != field.field_type) {
            return Err(invalid(format!(
                "call field {id} is {:?}, not {t:?}",
                field.field_type
            )));
        }
        match id {
            1 => registry = Some(i.read_string()?),
            2 => item = Some(i.read_string()?),
            3 => {
                let map = i.read_map_begin()?;
                if map.size > 0
                    && (map.key_type != Some(TType::String)
                        || map.value_type != Some(TType::String))
                {
                    return Err(invalid(format!(
                        "call request is a map of {:?} to {:?}, not of strings",
                        map.key_type, map.value_type
                    )));
                }
                let mut val = BTreeMap::new();
                let over = usize::try_from(map.size).unwrap_or(0) > MAX_REQUEST_ENTRIES;
                for _ in 0..map.size {
                    let k = i.read_string()?;
                    let v = i.read_string()?;
                    if !over {
                        val.insert(k, v);
                    }
                }
                i.read_map_end()?;
                request = Some(if over {
                    Err(format!(
                        "request has {} entries, more than the {MAX_REQUEST_ENTRIES} accepted",
                        map.size
                    ))
                } else {
                    Ok(val)
                });
            }
            _ => i.skip(field.field_type)?,
        }
        i.read_field_end()?;
    }
    i.read_struct_end()?;
    verify_required_field_exists("ExtensionCallArgs.registry", &registry)?;
    verify_required_field_exists("ExtensionCallArgs.item", &item)?;
    verify_required_field_exists("ExtensionCallArgs.request", &request)?;
    match (registry, item, request) {
        (Some(r), Some(it), Some(req)) => Ok((r, it, req)),
        _ => Err(thrift::Error::Protocol(thrift::ProtocolError::new(
            thrift::ProtocolErrorKind::InvalidData,
            "missing required field",
        ))),
    }
}

fn invalid(message: String) -> thrift::Error {
    thrift::Error::Protocol(thrift::ProtocolError::new(
        thrift::ProtocolErrorKind::InvalidData,
        message,
    ))
}

/// The `Extension` service's processor: the generated one's dispatch, with
/// `call` answered through [`StreamingHandler::stream_call`].
///
/// As strict as osquery's own (C++) server: a message that is not a call
/// (a REPLY, EXCEPTION or ONEWAY; no method of the service is one-way) and
/// a `call` whose arguments do not decode end the connection without a
/// reply, as the stream can no longer be trusted to be in step; an unknown
/// method's arguments are skipped and answered with an exception.
pub struct Processor<H> {
    handler: H,
}

impl<H: StreamingHandler> Processor<H> {
    pub fn new(handler: H) -> Processor<H> {
        Processor { handler }
    }
}

impl<H: StreamingHandler> TProcessor for Processor<H> {
    fn process(
        &self,
        i: &mut dyn TInputProtocol,
        out: &mut dyn TOutputProtocol,
    ) -> thrift::Result<()> {
        let ident = i.read_message_begin()?;
        if ident.message_type != TMessageType::Call {
            return Err(invalid(format!(
                "{:?} message for {:?}: only calls are served",
                ident.message_type,
                ident.name.chars().take(64).collect::<String>()
            )));
        }
        let seq = ident.sequence_number;
        let res = match &*ident.name {
            "call" => {
                // Arguments that do not decode close the connection: the
                // error goes to the server, not into an exception reply.
                let (registry, item, request) = read_call_args(i)?;
                let reply = Reply { out, sequence: seq };
                match request {
                    Ok(request) => self.handler.stream_call(registry, item, request, reply),
                    Err(why) => reply.whole(&self.handler.refused(why)),
                }
            }
            "ping" => TExtensionProcessFunctions::process_ping(&self.handler, seq, i, out),
            "shutdown" => TExtensionProcessFunctions::process_shutdown(&self.handler, seq, i, out),
            method => {
                i.skip(TType::Struct)?;
                i.read_message_end()?;
                Err(thrift::Error::Application(ApplicationError::new(
                    ApplicationErrorKind::UnknownMethod,
                    format!(
                        "unknown method {}",
                        method.chars().take(64).collect::<String>()
                    ),
                )))
            }
        };
        thrift::server::handle_process_result(&ident, res, out)
    }
}
