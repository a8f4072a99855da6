//! The `.service` key-file parsers (dbus-daemon's reading and
//! dbus-broker's), their comparison, and both `Exec=` splitters: bytes from
//! any file a user can drop into a service directory.
#![no_main]
use libfuzzer_sys::fuzz_target;
use osquery_dbus::sources::service_file;

fuzz_target!(|data: &[u8]| {
    let parsed = service_file::parse(data);
    if let Ok(f) = &parsed {
        for exec in [&f.exec, &f.exec_as_written].into_iter().flatten() {
            if let Ok(argv) = service_file::split_exec(exec) {
                assert!(!argv.is_empty());
            }
        }
    }
    let broker = service_file::parse_broker(data);
    if let Some(exec) = broker.as_ref().and_then(|b| b.exec.as_deref()) {
        if let Ok(argv) = service_file::split_exec_broker(exec) {
            assert!(!argv.is_empty());
        }
    }
    let differences =
        service_file::differences(&parsed, &broker, data.len() as u64, b"fuzz.service");
    // A program only dbus-broker runs is always one of the differences.
    if service_file::broker_program(&parsed, &broker, b"fuzz.service").is_some() {
        assert!(!differences.is_empty());
    }
    // The splitters on raw text too, not only on values the parsers let through.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = service_file::split_exec(text);
        let _ = service_file::split_exec_broker(text);
    }
});
