//! The bus-config XML parser (DOCTYPE blanking, roxmltree, includes and
//! servicedirs): bytes from `system.d`/`session.d` fragments and the like.
#![no_main]
use libfuzzer_sys::fuzz_target;
use osquery_dbus::sources::bus_config;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let _ = bus_config::parse(data, Path::new("/etc/dbus-1/system.d/fuzz.conf"));
    // A relative location exercises the directory anchoring too.
    let _ = bus_config::parse(data, Path::new("fuzz.conf"));
});
