//! The `.service` key-file parser and the `Exec=` splitter: bytes from any
//! file a user can drop into a service directory.
#![no_main]
use libfuzzer_sys::fuzz_target;
use osquery_dbus::sources::service_file;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = service_file::parse(data) {
        for exec in [&f.exec, &f.exec_as_written].into_iter().flatten() {
            if let Ok(argv) = service_file::split_exec(exec) {
                assert!(!argv.is_empty());
            }
        }
    }
    // The splitter on raw text too, not only on values the parser let through.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = service_file::split_exec(text);
    }
});
