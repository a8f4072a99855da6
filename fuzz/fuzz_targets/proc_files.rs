//! The `/proc/<pid>` parsers: `stat` and `cmdline` hold text a process
//! chose (its comm, its argv), `status` and the rest are kernel text that a
//! `--proc` fixture tree may replace with anything.
#![no_main]
use libfuzzer_sys::fuzz_target;
use osquery_dbus::sources::proc;

fuzz_target!(|data: &[u8]| {
    if let Ok(stat) = proc::parse_stat(data) {
        assert!(stat.comm.len() <= data.len() * 3);
    }
    let _ = proc::parse_status(data);
    let args = proc::parse_cmdline(data);
    assert!(args.len() <= data.len() + 1);
    let _ = proc::parse_children(data);
    let _ = proc::parse_btime(data);
    let _ = proc::parse_environ_var(data, "DBUS_STARTER_ADDRESS");
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = proc::parse_exe_link(text);
    }
});
