//! `dbus_service_files`: one row per entry in a D-Bus service, policy or
//! config directory, so a hunt sees everything a bus could read: who owns
//! it, when it was born and changed, what a `.service` file would start,
//! and whether a package ships it.
//!
//! Discovery and listing belong to `sources::service_dirs` (and through it
//! `sources::bus_config`), metadata to `sources::stat`, root confinement,
//! no-follow reads and name rendering to `sources::fs_safe`, key parsing to
//! `sources::service_file`, hashing to `sources::hash`, ownership to
//! `sources::packages`, what a service runs to `sources::exec_target`.
//! This module narrows the scan from the query's `path =` / `directory =`
//! constraints and decides from `colsUsed` which costly columns to fill
//! (`plan`), walks the directories (`listing`), and turns what the sources
//! found into rows (`row`, with `service`, `exec` and `integrity` for the
//! columns that read more than the entry's `statx`).
use crate::blind;
use crate::context::QueryContext;
use crate::row::{Row, RowSink};
use crate::settings::Settings;
use crate::sources::{service_dirs, service_file};
use crate::spec::columns::dbus_service_files as c;

mod exec;
mod integrity;
mod link;
mod listing;
mod plan;
mod row;
mod service;
#[cfg(test)]
mod test_support;

pub use row::writable_by_non_root;

/// A service file is small; dbus-daemon's own files are under 1 KiB.
pub const MAX_SERVICE_BYTES: u64 = service_file::MAX_SERVICE_FILE_BYTES;

/// Every row at once (the embedded host, tests).
pub fn generate(settings: &Settings, ctx: &QueryContext) -> Vec<Row> {
    let mut rows = Vec::new();
    generate_into(settings, ctx, &mut rows);
    rows
}

/// The rows, each handed to `sink` once made: a host that encodes them
/// as they come never holds a whole scan's rows.
///
/// A query that reads `btime` where the kernel gives no birth times
/// (`statx` missing) is blind in that column: every row says NULL with the
/// reason, and the query is reported blind too, so a check that looks for
/// backdated files cannot pass for one that found none.
pub fn generate_into(settings: &Settings, ctx: &QueryContext, sink: &mut dyn RowSink) {
    scan_into(settings, ctx, sink);
    if ctx.uses(c::BTIME) && crate::sources::stat::statx_missing() {
        blind::report_column(
            c::BTIME.name,
            "cannot read file birth times",
            &crate::sources::stat::BTIME_NO_STATX,
        );
    }
}

fn scan_into(settings: &Settings, ctx: &QueryContext, sink: &mut dyn RowSink) {
    let root = match super::open_root(settings) {
        Ok(r) => r,
        Err(e) => {
            let mut row = Row::new(&c::SCHEMA);
            row.set(c::PATH, "/").set(c::ERROR, e.to_string());
            sink.push(row);
            return;
        }
    };
    let pushdown = plan::Pushdown::new(ctx);
    let found = pushdown.discover(&root);
    let mut scan = plan::Scan::new(&root, ctx, &found.config_errors);
    // The shadow columns need the service files that can change the wanted
    // rows' verdicts resolved by name before the first row goes out.
    let names = scan
        .used
        .any(&c::NEEDS_SHADOW)
        .then(|| pushdown.names(&root, &found));
    let shadows = names.as_ref().map(listing::Shadows);
    let mut rows = listing::Emit {
        sink,
        shadows: shadows.as_ref(),
    };
    // Every directory up to the last one a constraint can reach is opened,
    // so that one reached through a duplicate path is dropped exactly as in
    // a full scan (the first path wins: later ones cannot change that).
    // Directories discovery found absent are not walked again.
    let take = found.present_through_last_reachable();
    // What the services run, and where links lead, is known only once
    // each entry is read, so the exec and script columns and
    // `target_package` take
    // the whole index (loaded on first use); the entries' own package
    // columns are answered up front for their paths.
    let targets = scan.used.has(c::TARGET_PACKAGE) || scan.script_integrity;
    if scan.want_packages && !scan.exec_integrity && !targets {
        scan.packages = Some(pushdown.entry_owners(&root, &found, take, scan.integrity));
    }
    service_dirs::visit(&root, found.present().take(take), |dir, opened| {
        listing::list_dir(&mut scan, &pushdown, dir, opened, &mut rows)
    });
}

#[cfg(test)]
mod tests {
    use super::c;
    use crate::context::QueryContext;
    use crate::tables::dbus_service_files::generate;
    use crate::tables::dbus_service_files::test_support::*;

    #[test]
    fn full_scan_of_a_fixture_root() {
        let (tmp, _outside) = fixture();
        let rows = generate(&settings(tmp.path()), &QueryContext::new());
        let m = by_path(&rows);
        assert_eq!(m.len(), rows.len(), "no duplicate rows");
        let paths: Vec<&str> = m.keys().map(String::as_str).collect();
        assert_eq!(
            paths,
            [
                "/etc/dbus-1/system.conf",
                "/etc/dbus-1/system.d/README",
                "/etc/dbus-1/system.d/evil.conf",
                "/home/eve/.local/share/dbus-1/services/org.rootish.service",
                "/lib/dbus-1/system-services/org.lib.service",
                "/srv/alice/.local/share/dbus-1/services/org.alice.service",
                "/usr/share/dbus-1/services/bad\\xfe.service",
                "/usr/share/dbus-1/services/bad\\xff.service",
                "/usr/share/dbus-1/services/link.service",
                "/usr/share/dbus-1/services/pipe.service",
                "/usr/share/dbus-1/services/sock",
                "/usr/share/dbus-1/services/subdir",
                "/usr/share/dbus-1/services/suid.service",
                "/usr/share/dbus-1/session.conf",
                "/usr/share/dbus-1/system-services/.hidden.service",
                "/usr/share/dbus-1/system-services/org.a.service",
            ]
        );
        // eve's home links to `/`, meaning the image's `/`; toor's home is
        // that same directory, so only eve's (first) path lists it.
        let rootish = &m["/home/eve/.local/share/dbus-1/services/org.rootish.service"];
        assert_eq!(int(rootish, c::USER_UID), Some(1002));
        assert_eq!(
            text(rootish, c::DIRECTORY).unwrap(),
            "/home/eve/.local/share/dbus-1/services"
        );
        // The fixture's service files are empty: a parse error each; the
        // link to `/etc/shadow` leads to nothing inside the image, which is
        // said; nothing else went wrong.
        for r in &rows {
            if let Some(e) = text(r, c::ERROR) {
                assert!(
                    e.ends_with(": no [D-BUS Service] group")
                        || e.starts_with("/usr/share/dbus-1/services/link.service: symlink to nothing inside the root"),
                    "{e}"
                );
                assert_eq!(text(r, c::KIND).unwrap(), "service");
            }
        }

        let evil = &m["/etc/dbus-1/system.d/evil.conf"];
        assert_eq!(text(evil, c::DIRECTORY).unwrap(), "/etc/dbus-1/system.d");
        assert_eq!(text(evil, c::FILENAME).unwrap(), "evil.conf");
        assert_eq!(text(evil, c::BUS).unwrap(), "system");
        assert_eq!(text(evil, c::KIND).unwrap(), "policy");
        assert_eq!(text(evil, c::TYPE).unwrap(), "regular");
        assert_eq!(
            text(&m["/etc/dbus-1/system.d/README"], c::KIND).unwrap(),
            "other"
        );
        let conf = &m["/etc/dbus-1/system.conf"];
        assert_eq!(text(conf, c::KIND).unwrap(), "config");
        assert_eq!(text(conf, c::DIRECTORY).unwrap(), "/etc/dbus-1");
        let sess = &m["/usr/share/dbus-1/session.conf"];
        assert_eq!(text(sess, c::BUS).unwrap(), "session");
        assert_eq!(text(sess, c::KIND).unwrap(), "config");

        let suid = &m["/usr/share/dbus-1/services/suid.service"];
        assert_eq!(text(suid, c::MODE).unwrap(), "4755");
        assert_eq!(int(suid, c::UID), Some(4242));
        assert_eq!(int(suid, c::GID), Some(4243));
        assert_eq!(int(suid, c::SIZE), Some(5));
        assert_eq!(text(suid, c::KIND).unwrap(), "service");
        assert_eq!(text(suid, c::BUS).unwrap(), "session");
        assert_eq!(int(suid, c::USER_UID), None);
        // A birth time, or NULL with the reason (tmpfs records none; a
        // kernel without statx gives none).
        match int(suid, c::BTIME) {
            Some(b) => assert!(b > 1_600_000_000 && text(suid, c::BTIME_MISSING).is_none()),
            None => assert!(text(suid, c::BTIME_MISSING).is_some_and(|w| !w.is_empty())),
        }
        assert!(int(suid, c::MTIME).unwrap() > 1_600_000_000);
        let ty = |p: &str| text(&m[&format!("/usr/share/dbus-1/services/{p}")], c::TYPE);
        assert_eq!(ty("link.service").unwrap(), "symlink");
        assert_eq!(ty("pipe.service").unwrap(), "fifo");
        assert_eq!(ty("sock").unwrap(), "socket");
        assert_eq!(ty("subdir").unwrap(), "directory");
        assert_eq!(
            text(&m["/usr/share/dbus-1/services/sock"], c::KIND).unwrap(),
            "other"
        );
        let bad = &m["/usr/share/dbus-1/services/bad\\xff.service"];
        assert_eq!(text(bad, c::FILENAME).unwrap(), "bad\\xff.service");
        assert_eq!(text(bad, c::KIND).unwrap(), "service");

        let alice = &m["/srv/alice/.local/share/dbus-1/services/org.alice.service"];
        assert_eq!(int(alice, c::USER_UID), Some(1000));
        assert_eq!(text(alice, c::BUS).unwrap(), "session");
        let lib = &m["/lib/dbus-1/system-services/org.lib.service"];
        assert_eq!(
            text(lib, c::DIRECTORY).unwrap(),
            "/lib/dbus-1/system-services"
        );
        assert_eq!(
            text(
                &m["/usr/share/dbus-1/system-services/.hidden.service"],
                "kind"
            )
            .unwrap(),
            "service"
        );
    }
}
