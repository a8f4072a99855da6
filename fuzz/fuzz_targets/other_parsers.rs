//! The remaining parsers of bytes others control: rpm header blobs (from a
//! container image's rpmdb), passwd and group (an image's /etc), the bus
//! config a running daemon's `--config-file` names (any user may start a
//! dbus-daemon on a config of their own), and a daemon's argv.
#![no_main]
use libfuzzer_sys::fuzz_target;
use osquery_dbus::sources::{accounts, bus_daemon, packages};

fuzz_target!(|data: &[u8]| {
    let _ = packages::parse_rpm_header(data);
    let _ = accounts::parse_passwd(data);
    let _ = accounts::parse_group(data);
    let _ = bus_daemon::parse_config(data, std::path::Path::new("/etc/dbus-1/fuzz.conf"));
    if let Ok(text) = std::str::from_utf8(data) {
        let args: Vec<String> = text.split('\0').map(str::to_string).collect();
        let _ = bus_daemon::parse_args(&args);
    }
});
