//! The exec columns: `sources::exec_target`'s answer about the program a
//! service runs (whether it exists, its owner, mode and hash, its package,
//! whether it is verified, whether it is hijackable), mapped to the row,
//! and the one thing only the table knows, the account the service runs
//! as.
use super::plan::Scan;
use super::row::Errors;
use crate::row::{Row, Value};
use crate::sources::accounts::{self, Account};
use crate::sources::exec_target::{self, Target};
use crate::sources::fs_safe::Root;
use crate::sources::launch::Launch;
use crate::sources::packages::verify::Verification;
use crate::sources::service_dirs::{self, ServiceDir};
use crate::spec::columns::dbus_service_files as c;

/// `exec_exists`, `exec_uid`, `exec_mode` and (when used) `exec_sha256`
/// of the program an `Exec=` line starts, resolved inside the root
/// *following* symlinks: the bus execs the link's target, so that is the
/// program to describe. A relative program counts from `/`, the bus's
/// working directory.
pub(super) fn target_columns(scan: &Scan, program: &str, row: &mut Row, errors: &mut Errors) {
    match exec_target::examine(scan.root, program, scan.exec_sha256) {
        None => {}
        Some(Target::Missing) => {
            row.set(c::EXEC_EXISTS, false);
        }
        Some(Target::Unreachable(e)) => errors.push(e),
        Some(Target::Found { meta, sha256 }) => {
            match meta {
                Ok(m) => {
                    row.set(c::EXEC_EXISTS, true)
                        .set(c::EXEC_UID, m.uid)
                        .set(c::EXEC_MODE, m.mode_string());
                }
                Err(e) => errors.push(e),
            }
            match sha256 {
                Some(Ok(h)) => {
                    row.set(c::EXEC_SHA256, h);
                }
                Some(Err(e)) => errors.push(e),
                None => {}
            }
        }
    }
}

/// `exec_package`, `exec_provenance`, `exec_verified` and
/// `exec_hijackable` for the program a service runs, resolved inside the
/// root through every symlink (the bus, or systemd, runs the final file).
/// A program that cannot be opened gets none of them: `exec_exists` says
/// it is missing, and there is nothing to attribute.
pub(super) fn integrity_columns(
    scan: &mut Scan,
    dir: &ServiceDir,
    program: &str,
    row: &mut Row,
    errors: &mut Errors,
) {
    let Some(a) = attribute(scan, dir, program, row) else {
        if let Some(written) = exec_target::program_path(program) {
            if scan.root.open_path(&written).is_err() {
                let runner = row_runner(scan, dir, row);
                row.set(
                    c::EXEC_CREATABLE,
                    exec_target::creatable(scan.root, &written, runner),
                );
            }
        }
        return;
    };
    if let Some(p) = a.packaged {
        let verified = p.verified.unwrap_or_else(|e| {
            errors.push(e);
            Verification::Unrecorded
        });
        row.set(c::EXEC_PACKAGE, p.names.map(|n| n.join(", ")))
            .set(c::EXEC_VERIFIED, verified.verified())
            .set(c::EXEC_VERIFY_REASON, verified.reason());
    }
    row.set(c::EXEC_PROVENANCE, a.provenance.map(|p| p.as_str()))
        .set(c::EXEC_HIJACKABLE, a.hijackable);
}

/// `exec_env`, `exec_inline` and `exec_script`: what the command runs once
/// `env` and interpreters are looked through.
pub(super) fn launch_columns(launch: &Launch, row: &mut Row) {
    row.set(c::EXEC_ENV, launch.via_env.then(|| launch.env.join(" ")))
        .set(c::EXEC_INLINE, launch.inline)
        .set(c::EXEC_SCRIPT, launch.script.as_deref());
}

/// The program checks for the script an interpreter runs: whether it
/// exists, its package, whether it verifies, whether another account
/// could replace it.
pub(super) fn script_columns(
    scan: &mut Scan,
    dir: &ServiceDir,
    script: &str,
    row: &mut Row,
    errors: &mut Errors,
) {
    let root = scan.root;
    match exec_target::examine(root, script, false) {
        Some(Target::Missing) => {
            row.set(c::EXEC_SCRIPT_EXISTS, false);
            return;
        }
        Some(Target::Found { .. }) => {
            row.set(c::EXEC_SCRIPT_EXISTS, true);
        }
        Some(Target::Unreachable(e)) => {
            errors.push(e);
            return;
        }
        None => return,
    }
    let Some(a) = attribute(scan, dir, script, row) else {
        return;
    };
    if let Some(p) = a.packaged {
        let verified = p.verified.unwrap_or_else(|e| {
            errors.push(e);
            Verification::Unrecorded
        });
        row.set(c::EXEC_SCRIPT_PACKAGE, p.names.map(|n| n.join(", ")))
            .set(c::EXEC_SCRIPT_VERIFIED, verified.verified());
    }
    row.set(c::EXEC_SCRIPT_HIJACKABLE, a.hijackable);
}

/// What the checks of the exec columns find about another program than
/// `exec_path` (the one dbus-broker would run), in words: whether it
/// exists, its owner and mode; and when the query reads the exec package
/// columns (which load the whole package map), its provenance, package,
/// verification and whether it is hijackable.
/// Failures are named in the text, not in `error`, as the row's program is
/// not this one.
pub(super) fn describe_program(
    scan: &mut Scan,
    dir: &ServiceDir,
    program: &str,
    row: &Row,
) -> String {
    let mut out = match exec_target::examine(scan.root, program, false) {
        None => return "not a path".into(),
        Some(Target::Missing) => return "does not exist".into(),
        Some(Target::Unreachable(e)) => return format!("cannot be checked: {e}"),
        Some(Target::Found { meta: Ok(m), .. }) => {
            format!("exists, owner uid {}, mode {}", m.uid, m.mode_string())
        }
        Some(Target::Found { meta: Err(e), .. }) => format!("exists, cannot be stated: {e}"),
    };
    if !scan.exec_integrity {
        return out;
    }
    if let Some(a) = attribute(scan, dir, program, row) {
        if let Some(p) = a.provenance {
            out.push_str(&format!(", provenance {}", p.as_str()));
        }
        if let Some(p) = a.packaged {
            if let Some(names) = p.names.filter(|n| !n.is_empty()) {
                out.push_str(&format!(", package {}", names.join(", ")));
            }
            match p.verified {
                Ok(v) => match (v.verified(), v.reason()) {
                    (Some(true), _) => out.push_str(", verified"),
                    (_, Some(why)) => out.push_str(&format!(", does not verify: {why}")),
                    _ => {}
                },
                Err(e) => out.push_str(&format!(", cannot be verified: {e}")),
            }
        }
        if a.hijackable == Some(true) {
            out.push_str(", hijackable");
        }
    }
    out
}

/// [`exec_target::attribute`] for a program of this row's service: the
/// account it runs as is looked up (the root's passwd read once per scan)
/// only for a program that opens.
fn attribute(
    scan: &mut Scan,
    dir: &ServiceDir,
    program: &str,
    row: &Row,
) -> Option<exec_target::Attribution> {
    let root = scan.root;
    let user = run_as_user(row);
    // Taken out for the call, so that the passwd cache and the package
    // databases (both loaded on first use) can be lent at once.
    let mut accounts = scan.accounts.take();
    let found = exec_target::attribute(
        root,
        program,
        || scan.owners(),
        || runner_uid(root, &mut accounts, dir, user.as_deref()),
    );
    scan.accounts = accounts;
    found
}

/// The uid this row's service runs as (see [`runner_uid`]).
fn row_runner(scan: &mut Scan, dir: &ServiceDir, row: &Row) -> Option<u32> {
    let user = run_as_user(row);
    let mut accounts = scan.accounts.take();
    let uid = runner_uid(scan.root, &mut accounts, dir, user.as_deref());
    scan.accounts = accounts;
    uid
}

fn run_as_user(row: &Row) -> Option<String> {
    match row.get(c::RUN_AS_USER) {
        Some(Value::Text(u)) => Some(u.clone()),
        _ => None,
    }
}

/// The uid a service runs as, when it is one account: `User=` (root when
/// absent) on the system bus, the home's owner for a per-user session
/// file. `None` for a system-wide session file, which every user's session
/// may run: then only root may own what it runs. The root's passwd is read
/// into `known` on first use.
fn runner_uid(
    root: &Root,
    known: &mut Option<Vec<Account>>,
    dir: &ServiceDir,
    user: Option<&str>,
) -> Option<u32> {
    match dir.bus {
        service_dirs::Bus::Session => dir.owner.as_ref().map(|o| o.uid),
        service_dirs::Bus::System => {
            let Some(user) = user else {
                return Some(0);
            };
            let host = root.host_path().to_path_buf();
            let known = known.get_or_insert_with(|| {
                accounts::read_passwd(&host)
                    .map(|p| p.entries)
                    .unwrap_or_default()
            });
            known
                .iter()
                .find(|a| a.username == user)
                .map(|a| a.uid)
                .or_else(|| user.parse().ok())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::QueryContext;
    use crate::tables::dbus_service_files::generate;
    use crate::tables::dbus_service_files::service::exec_start_program;
    use crate::tables::dbus_service_files::test_support::*;

    use std::os::unix::fs::{symlink, PermissionsExt};

    /// The program `Exec=` names is looked up only for the columns about
    /// it; a query of the parsed keys alone neither fills them nor reports
    /// their failures (a symlink loop here), and agrees with the full scan
    /// on everything else.
    #[test]
    fn exec_target_only_when_its_columns_are_used() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        let d = r.join("usr/share/dbus-1/services");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::create_dir_all(r.join("usr/bin")).unwrap();
        std::fs::write(r.join("usr/bin/okd"), b"#!/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("/usr/bin/loop", r.join("usr/bin/loop")).unwrap();
        for (name, exec) in [
            ("org.ok", "/usr/bin/okd --x"),
            ("org.loop", "/usr/bin/loop"),
        ] {
            let body = format!("[D-BUS Service]\nName={name}\nExec={exec}\n");
            std::fs::write(d.join(format!("{name}.service")), body).unwrap();
        }
        let full = by_path(&generate(&settings(r), &QueryContext::new()));
        let mut ctx = QueryContext::new();
        ctx.set_cols_used(["path", "service_name", "exec_path", "error"]);
        let narrow = by_path(&generate(&settings(r), &ctx));
        let ok = "/usr/share/dbus-1/services/org.ok.service";
        let lp = "/usr/share/dbus-1/services/org.loop.service";
        assert_eq!(full[ok].get(c::EXEC_EXISTS), Some(&Value::from(true)));
        assert!(text(&full[lp], c::ERROR).unwrap().contains("Exec target"));
        for path in [ok, lp] {
            for c in [
                "exec_exists",
                "exec_uid",
                "exec_mode",
                "exec_sha256",
                "error",
            ] {
                assert_eq!(narrow[path].get(c), None, "{path}: {c}");
            }
            for c in ["service_name", "exec_path"] {
                assert_eq!(narrow[path].get(c), full[path].get(c), "{path}: {c}");
            }
        }
        ctx.set_cols_used(["path", "exec_mode"]);
        let mode = by_path(&generate(&settings(r), &ctx));
        assert_eq!(mode[ok].get(c::EXEC_MODE), full[ok].get(c::EXEC_MODE));
    }

    /// Root services and what they run: a packaged program left alone, one
    /// made world-writable, one in a directory a user owns, one replaced,
    /// and a SystemdService= unit whose ExecStart is followed instead.
    #[test]
    fn exec_integrity_columns() {
        use std::os::unix::fs::chown;
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        let w = |p: &str, b: &[u8], mode: u32| {
            let p = r.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, b).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        w("etc/passwd", b"root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\nsvc:x:998:998::/:/bin/false\n", 0o644);
        let svc = |name: &str, body: &str| {
            w(
                &format!("usr/share/dbus-1/system-services/{name}.service"),
                format!("[D-BUS Service]\nName={name}\n{body}\n").as_bytes(),
                0o644,
            )
        };
        svc("ok", "Exec=/bin/okd --x\nUser=root");
        svc("open", "Exec=/usr/bin/opend\nUser=root");
        svc("userdir", "Exec=/opt/alice/bin/run\nUser=root");
        svc("own", "Exec=/opt/svc/run\nUser=svc");
        svc("replaced", "Exec=/usr/bin/repd\nUser=root");
        svc(
            "unit",
            "Exec=/bin/false\nUser=root\nSystemdService=u.service",
        );
        svc("gone", "Exec=/nowhere\nUser=root");
        w("usr/bin/okd", b"ok", 0o755);
        w("usr/bin/opend", b"open", 0o777);
        w("usr/bin/repd", b"evil", 0o755);
        w("usr/bin/false", b"f", 0o755);
        w("usr/libexec/unitd", b"u", 0o755);
        w("opt/alice/bin/run", b"r", 0o755);
        chown(r.join("opt/alice"), Some(1000), Some(1000)).unwrap();
        w("opt/svc/run", b"s", 0o755);
        chown(r.join("opt/svc/run"), Some(998), Some(998)).unwrap();
        symlink("usr/bin", r.join("bin")).unwrap();
        w(
            "usr/lib/systemd/system/u.service",
            b"[Service]\nExecStart=-!/usr/libexec/unitd --flag\n",
            0o644,
        );
        w(
            "var/lib/dpkg/info/p.list",
            b"/usr/bin/okd\n/usr/bin/opend\n/usr/bin/repd\n/usr/libexec/unitd\n",
            0o644,
        );
        w(
            "var/lib/dpkg/info/p.md5sums",
            format!(
                "{}  usr/bin/okd\n{}  usr/bin/opend\n{}  usr/bin/repd\n{}  usr/libexec/unitd\n",
                md5_hex(b"ok"),
                md5_hex(b"open"),
                md5_hex(b"original"),
                md5_hex(b"u")
            )
            .as_bytes(),
            0o644,
        );
        let mut ctx = QueryContext::new();
        ctx.set_cols_used([
            "path",
            "exec_package",
            "exec_provenance",
            "exec_verified",
            "exec_hijackable",
        ]);
        let m = by_path(&generate(&settings(r), &ctx));
        let cols = |n: &str| {
            let row = &m[&format!("/usr/share/dbus-1/system-services/{n}.service")];
            (
                text(row, c::EXEC_PACKAGE),
                text(row, c::EXEC_PROVENANCE),
                int(row, c::EXEC_VERIFIED),
                int(row, c::EXEC_HIJACKABLE),
            )
        };
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            cols("ok"),
            (s("p"), s("dpkg"), Some(1), Some(0)),
            "via /bin"
        );
        assert_eq!(cols("open"), (s("p"), s("dpkg"), Some(1), Some(1)));
        assert_eq!(cols("userdir"), (s(""), s("none"), None, Some(1)));
        assert_eq!(
            cols("own"),
            (s(""), s("none"), None, Some(0)),
            "its own user"
        );
        assert_eq!(cols("replaced"), (s("p"), s("dpkg"), Some(0), Some(0)));
        assert_eq!(
            cols("unit"),
            (s("p"), s("dpkg"), Some(1), Some(0)),
            "ExecStart"
        );
        assert_eq!(cols("gone"), (None, None, None, None));
        assert_eq!(
            exec_start_program("@-/usr/bin/x a b").as_deref(),
            Some("/usr/bin/x")
        );
        assert_eq!(exec_start_program("-").as_deref(), None);
    }
}
