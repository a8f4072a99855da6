//! The verdict of Elastic's detection rule "Unusual D-Bus Daemon Child
//! Process" (rule id 9705b458-689a-4ec6-afe8-b4648d090612), as data plus one
//! function, so a table can say *why* a bus child is or is not unusual.
//!
//! Knows nothing of SQL or `/proc`: callers hand in the facts. The rule, in
//! short: a process whose parent is `dbus-daemon`, with more than one
//! argument, fires unless the parent runs with `--session`, or one of its
//! arguments is an excepted script, or its name is a known helper, or its
//! executable lies under a library path (compared case-insensitively, as the
//! rule's `like~` does). Name and argument matches are exact, as its `in`.

/// Program names the rule accepts as ordinary bus-activated helpers.
pub const KNOWN_HELPERS: &[&str] = &[
    "dbus-daemon-launch-helper",
    "gnome-keyring-daemon",
    "abrt-dbus",
    "aptd",
    "usb-creator-helper",
];

/// Scripts the rule excepts when any argument names them exactly.
pub const EXCEPTED_ARGS: &[&str] = &[
    "/usr/lib/software-properties/software-properties-dbus",
    "/usr/share/backintime/qt/serviceHelper.py",
];

/// Executable path prefixes the rule treats as packaged code. Lower case:
/// compared case-insensitively.
pub const LIBRARY_PREFIXES: &[&str] = &[
    "/usr/lib/",
    "/usr/local/lib/",
    "/usr/libexec/",
    "/tmp/newroot/",
];

/// The library path an executable lies under, compared as the rule's
/// `like~` does (case-insensitively); `None` when it lies under none.
pub fn library_prefix(exe: &str) -> Option<&'static str> {
    let lower = exe.to_lowercase();
    LIBRARY_PREFIXES
        .iter()
        .find(|p| lower.starts_with(*p))
        .copied()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub unusual: bool,
    /// Which condition decided, for a human reading the row.
    pub reason: String,
}

fn settled(reason: String) -> Verdict {
    Verdict {
        unusual: false,
        reason,
    }
}

/// Applies the rule to one process: `args` is its full argv (the rule's
/// `process.args`), `name` its program name, `exe` its executable path
/// (`None` when unknown: then no library path can excuse it), and
/// `bus_is_session` whether the bus that started it runs with `--session`.
pub fn assess(args: &[String], name: &str, exe: Option<&str>, bus_is_session: bool) -> Verdict {
    let n = args.len();
    let plural = if n == 1 { "arg" } else { "args" };
    if n <= 1 {
        return settled(format!("{n} {plural}: the rule needs more than one"));
    }
    if bus_is_session {
        return settled("started by a --session bus".into());
    }
    if KNOWN_HELPERS.contains(&name) {
        return settled(format!("{name} is a known helper"));
    }
    if let Some(arg) = args.iter().find(|a| EXCEPTED_ARGS.contains(&a.as_str())) {
        return settled(format!("runs the excepted script {arg}"));
    }
    if let Some(prefix) = exe.and_then(library_prefix) {
        let exe = exe.unwrap_or_default();
        return settled(format!("{exe} is under the library path {prefix}"));
    }
    let what = exe.unwrap_or("an unknown executable");
    Verdict {
        unusual: true,
        reason: format!(
            "{n} {plural} from {what} ({name}) on a bus without --session: \
             not a known helper, no excepted script, not under a library path"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn fires_on_a_planted_script() {
        let v = assess(
            &args(&["/bin/sh", "/tmp/x.sh", "a", "b"]),
            "x.sh",
            Some("/usr/bin/dash"),
            false,
        );
        assert!(v.unusual, "{v:?}");
        assert!(v.reason.contains("4 args"), "{}", v.reason);
        assert!(v.reason.contains("/usr/bin/dash"));
        let v = assess(&args(&["/tmp/x", "a"]), "x", None, false);
        assert!(v.unusual);
        assert!(v.reason.contains("unknown executable"));
    }

    #[test]
    fn one_argument_or_session_bus_never_fires() {
        let v = assess(&args(&["/tmp/x"]), "x", Some("/tmp/x"), false);
        assert!(!v.unusual);
        assert!(v.reason.contains("1 arg"));
        assert!(!assess(&[], "x", Some("/tmp/x"), false).unusual);
        let v = assess(&args(&["/tmp/x", "a"]), "x", Some("/tmp/x"), true);
        assert!(!v.unusual);
        assert!(v.reason.contains("--session"));
    }

    #[test]
    fn each_known_helper_is_excepted_by_exact_name() {
        for name in KNOWN_HELPERS {
            let v = assess(&args(&["/tmp/h", "a"]), name, Some("/tmp/h"), false);
            assert!(!v.unusual, "{name}");
            assert!(v.reason.contains("known helper"));
        }
        assert!(assess(&args(&["/tmp/h", "a"]), "APTD", Some("/tmp/h"), false).unusual);
    }

    #[test]
    fn each_excepted_script_is_excepted_in_any_position() {
        for script in EXCEPTED_ARGS {
            let v = assess(
                &args(&["/usr/bin/python3", script, "--x"]),
                "python3",
                Some("/usr/bin/python3.11"),
                false,
            );
            assert!(!v.unusual, "{script}");
            assert!(v.reason.contains("excepted script"));
        }
        let prefixed = format!("{}x", EXCEPTED_ARGS[1]);
        assert!(
            assess(
                &args(&["/usr/bin/python3", &prefixed]),
                "p",
                Some("/usr/bin/p"),
                false
            )
            .unusual
        );
    }

    #[test]
    fn library_paths_are_case_insensitive_prefixes() {
        for exe in [
            "/usr/lib/x/helper",
            "/USR/LIB/x/helper",
            "/usr/local/lib/h",
            "/usr/libexec/h",
            "/tmp/newroot/bin/h",
            "/Usr/LibExec/h",
        ] {
            let v = assess(&args(&["h", "a"]), "h", Some(exe), false);
            assert!(!v.unusual, "{exe}");
            assert!(v.reason.contains("library path"));
        }
        for exe in [
            "/usr/lib",
            "/usr/lib64/h",
            "/usr/bin/h",
            "/tmp/newroot",
            "/home/u/usr/lib/h",
        ] {
            assert!(
                assess(&args(&["h", "a"]), "h", Some(exe), false).unusual,
                "{exe}"
            );
        }
    }
}
