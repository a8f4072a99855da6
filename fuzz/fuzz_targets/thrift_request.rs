//! Bytes a peer writes to the extension socket, through the guarded Thrift
//! input protocol and the generated request decoding, as a connection
//! thread reads them.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    osquery_dbus::hosts::osquery::fuzzing::serve_bytes(data);
});
