//! `dbus_service_units`: for every D-Bus service file with
//! `SystemdService=`, the unit systemd would load and every command it
//! runs after drop-ins, judged as `Exec=` is.
//!
//! The service files come from `dbus_service_files` (its listing is the
//! one that knows every directory a bus reads), asked for the few columns
//! this table needs; the unit from `sources::unit_files`; what a command
//! runs from `sources::launch`; the checks from `sources::exec_target`.
//! The package databases are asked only about the paths the rows name.
use crate::context::QueryContext;
use crate::row::Row;
use crate::settings::Settings;
use crate::sources::accounts;
use crate::sources::exec_target::{self, Target};
use crate::sources::fs_safe::{self, Root};
use crate::sources::launch;
use crate::sources::packages::verify::Verification;
use crate::sources::packages::{self, Owners};
use crate::sources::service_file;
use crate::sources::unit_files::{self, Scope, Setting, Unit};
use crate::spec::columns::dbus_service_units as c;
use crate::tables::dbus_service_files;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One D-Bus service file that hands activation to systemd.
struct Handoff {
    path: String,
    bus: String,
    user_uid: Option<i64>,
    service_name: Option<String>,
    systemd_service: String,
}

/// One command of a resolved unit, with what it runs.
struct Command<'u> {
    directive: &'static str,
    setting: &'u Setting,
    launch: launch::Launch,
}

pub fn generate(settings: &Settings, ctx: &QueryContext) -> Vec<Row> {
    let root = match super::open_root(settings) {
        Ok(r) => r,
        Err(e) => {
            let mut row = Row::new(&c::SCHEMA);
            row.set(c::PATH, "/").set(c::ERROR, e.to_string());
            return vec![row];
        }
    };
    let want_paths = ctx.eq_values("path");
    let handoffs: Vec<Handoff> = handoffs(settings)
        .into_iter()
        .filter(|h| want_paths.as_ref().is_none_or(|w| w.contains(&h.path)))
        .collect();
    let passwd = accounts::read_passwd(root.host_path())
        .map(|p| p.entries)
        .unwrap_or_default();
    let mut resolved: Vec<(Handoff, Result<Option<Unit>, String>)> = Vec::new();
    for h in handoffs {
        let scope = scope_of(&h, &passwd);
        let unit =
            unit_files::resolve(&root, &h.systemd_service, &scope).map_err(|e| e.to_string());
        resolved.push((h, unit));
    }
    let packages = ctx.used(&c::ALL).any(&c::NEEDS_PACKAGES);
    let owners = packages.then(|| {
        let mut asked: Vec<PathBuf> = Vec::new();
        for (_, unit) in &resolved {
            let Ok(Some(u)) = unit else { continue };
            asked.push(u.path.clone());
            asked.extend(u.dropins.iter().cloned());
            // Where a packaged unit of the same name could be shadowed.
            if let Some(name) = u.path.file_name() {
                for scope in [
                    Scope::System,
                    Scope::User {
                        uid: None,
                        home: None,
                    },
                ] {
                    asked.extend(
                        unit_files::search_path(&scope)
                            .into_iter()
                            .map(|d| d.join(name)),
                    );
                }
            }
            for (_, s) in &u.service.commands {
                let l = launch_of(&s.value);
                if let Some(written) = exec_target::program_path(&l.program) {
                    if let Some(canonical) = canonical(&root, &written) {
                        asked.push(canonical);
                    }
                    asked.push(written);
                }
            }
        }
        packages::owners_of(&root, asked.iter().map(|p| p.as_os_str().as_bytes()), true)
    });
    let mut rows = Vec::new();
    for (h, unit) in &resolved {
        match unit {
            Err(e) => {
                let mut row = base_row(h);
                row.set(c::ERROR, e.as_str());
                rows.push(row);
            }
            Ok(None) => {}
            Ok(Some(u)) => unit_rows(&root, h, u, &passwd, owners.as_deref(), &mut rows),
        }
    }
    rows
}

/// The service files with `SystemdService=`, from `dbus_service_files`.
fn handoffs(settings: &Settings) -> Vec<Handoff> {
    let mut ctx = QueryContext::new();
    ctx.set_cols_used([
        "path",
        "bus",
        "kind",
        "user_uid",
        "service_name",
        "systemd_service",
    ]);
    dbus_service_files::generate(settings, &ctx)
        .into_iter()
        .filter(|r| r.text("kind") == Some("service"))
        .filter_map(|r| {
            Some(Handoff {
                systemd_service: r.text("systemd_service")?.to_string(),
                path: r.text("path")?.to_string(),
                bus: r.text("bus").unwrap_or_default().to_string(),
                user_uid: r.int("user_uid"),
                service_name: r.text("service_name").map(String::from),
            })
        })
        .collect()
}

/// Which systemd instance starts the unit: pid 1 for the system bus, the
/// account's own manager (its home's unit directories included) for a
/// per-user session file, any user's manager for a system-wide one.
fn scope_of(h: &Handoff, passwd: &[accounts::Account]) -> Scope {
    if h.bus == "system" {
        return Scope::System;
    }
    let uid = h.user_uid.and_then(|u| u32::try_from(u).ok());
    let home = uid.and_then(|u| {
        passwd
            .iter()
            .find(|a| a.uid == u && !a.directory.is_empty())
            .map(|a| Path::new("/").join(&a.directory))
    });
    Scope::User { uid, home }
}

fn launch_of(command: &str) -> launch::Launch {
    let rest = command
        .trim_start()
        .trim_start_matches(['-', '@', '+', '!', ':', '|']);
    launch::analyse(&service_file::split_exec(rest).unwrap_or_default())
}

fn canonical(root: &Root, written: &Path) -> Option<PathBuf> {
    let fd = root.open_path(written).ok()?;
    root.inner_path(rustix::fd::AsFd::as_fd(&fd))
}

fn base_row(h: &Handoff) -> Row {
    let mut row = Row::new(&c::SCHEMA);
    row.set(c::PATH, h.path.as_str())
        .set(c::BUS, h.bus.as_str())
        .set(c::USER_UID, h.user_uid)
        .set(c::SERVICE_NAME, h.service_name.as_deref())
        .set(c::SYSTEMD_SERVICE, h.systemd_service.as_str());
    row
}

fn owner_of(owners: Option<&Owners>, path: &Path) -> Option<String> {
    owners?.owner(path.as_os_str().as_bytes())
}

fn joined(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| fs_safe::render_path(p))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The rows of one resolved unit: one per command, or one without a
/// directive when it runs nothing.
fn unit_rows(
    root: &Root,
    h: &Handoff,
    u: &Unit,
    passwd: &[accounts::Account],
    owners: Option<&Owners>,
    rows: &mut Vec<Row>,
) {
    let s = &u.service;
    let unit_package = owner_of(owners, &u.path);
    let unpackaged = |p: &Path| owner_of(owners, p).is_some_and(|o| o.is_empty());
    let unpackaged_dropins: Option<Vec<PathBuf>> = owners.map(|_| {
        u.dropins
            .iter()
            .filter(|d| unpackaged(d))
            .cloned()
            .collect()
    });
    // Unit-wide changes an unpackaged file makes to a packaged unit.
    let packaged_unit = unit_package.as_deref().is_some_and(|p| !p.is_empty());
    let mut unit_changes: Vec<String> = Vec::new();
    if packaged_unit {
        if let Some(user) = &s.user {
            if unpackaged(&user.from) {
                unit_changes.push(format!(
                    "User={} from {}",
                    user.value,
                    fs_safe::render_path(&user.from)
                ));
            }
        }
        for e in s.environment.iter().chain(&s.environment_files) {
            if unpackaged(&e.from) {
                let key = if s.environment.contains(e) {
                    "Environment"
                } else {
                    "EnvironmentFile"
                };
                unit_changes.push(format!(
                    "{key}={} from {}",
                    e.value,
                    fs_safe::render_path(&e.from)
                ));
            }
        }
    } else if unit_package.as_deref() == Some("") {
        if let Some(shadowed) = packaged_shadow(root, h, u, owners) {
            unit_changes.push(format!(
                "the unit file no package owns shadows {}",
                fs_safe::render_path(&shadowed)
            ));
        }
    }
    let runner = match &s.user {
        Some(user) => passwd
            .iter()
            .find(|a| a.username == user.value)
            .map(|a| a.uid)
            .or_else(|| user.value.parse().ok()),
        None if h.bus == "system" => Some(0),
        None => h.user_uid.and_then(|u| u32::try_from(u).ok()),
    };
    let unit_env: Vec<&str> = s.environment.iter().map(|e| e.value.as_str()).collect();
    let fill_unit = |row: &mut Row| {
        row.set(c::UNIT_PATH, fs_safe::render_path(&u.path))
            .set(c::UNIT_PACKAGE, unit_package.as_deref())
            .set(c::MASKED, u.masked)
            .set(c::DROPINS, joined(&u.dropins))
            .set(
                c::UNPACKAGED_DROPINS,
                unpackaged_dropins.as_deref().map(joined),
            )
            .set(c::RUN_AS, s.user.as_ref().map(|x| x.value.as_str()))
            .set(
                c::ENVIRONMENT_FILES,
                (!s.environment_files.is_empty()).then(|| {
                    s.environment_files
                        .iter()
                        .map(|e| e.value.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }),
            );
    };
    let commands: Vec<Command> = s
        .commands
        .iter()
        .map(|(directive, setting)| Command {
            directive,
            setting,
            launch: launch_of(&setting.value),
        })
        .collect();
    if commands.is_empty() || u.masked {
        let mut row = base_row(h);
        fill_unit(&mut row);
        environment_columns(&mut row, &unit_env, &[]);
        if owners.is_some() {
            row.set(
                c::UNPACKAGED_CHANGE,
                (!unit_changes.is_empty()).then(|| unit_changes.join("; ")),
            );
        }
        rows.push(row);
        return;
    }
    for cmd in &commands {
        let mut row = base_row(h);
        fill_unit(&mut row);
        row.set(c::DIRECTIVE, cmd.directive)
            .set(c::COMMAND, cmd.setting.value.as_str())
            .set(c::PROGRAM, cmd.launch.program.as_str())
            .set(c::DEFINED_IN, fs_safe::render_path(&cmd.setting.from))
            .set(c::DEFINED_IN_PACKAGE, owner_of(owners, &cmd.setting.from));
        let env_wrapper: Vec<&str> = cmd.launch.env.iter().map(String::as_str).collect();
        environment_columns(&mut row, &unit_env, &env_wrapper);
        program_columns(root, &cmd.launch.program, runner, owners, &mut row);
        if owners.is_some() {
            let mut changes = Vec::new();
            if packaged_unit && unpackaged(&cmd.setting.from) {
                changes.push(format!(
                    "{} from {}",
                    cmd.directive,
                    fs_safe::render_path(&cmd.setting.from)
                ));
            }
            changes.extend(unit_changes.iter().cloned());
            row.set(
                c::UNPACKAGED_CHANGE,
                (!changes.is_empty()).then(|| changes.join("; ")),
            );
        }
        rows.push(row);
    }
}

/// `environment` and `code_variables` from the unit's `Environment=` and a
/// command's `env` wrapper.
fn environment_columns(row: &mut Row, unit_env: &[&str], wrapper: &[&str]) {
    let all: Vec<&str> = unit_env.iter().chain(wrapper).copied().collect();
    let code: Vec<&str> = all
        .iter()
        .copied()
        .filter(|a| {
            a.split_once('=')
                .is_some_and(|(n, _)| launch::CODE_VARIABLES.contains(&n))
        })
        .collect();
    row.set(c::ENVIRONMENT, (!all.is_empty()).then(|| all.join(" ")))
        .set(
            c::CODE_VARIABLES,
            (!code.is_empty()).then(|| code.join(" ")),
        );
}

/// The program checks `dbus_service_files` gives `Exec=`.
fn program_columns(
    root: &Root,
    program: &str,
    runner: Option<u32>,
    owners: Option<&Owners>,
    row: &mut Row,
) {
    match exec_target::examine(root, program, false) {
        Some(Target::Missing) => {
            row.set(c::PROGRAM_EXISTS, false);
            return;
        }
        Some(Target::Found { .. }) => {
            row.set(c::PROGRAM_EXISTS, true);
        }
        Some(Target::Unreachable(e)) => {
            row.set(c::ERROR, e.to_string());
            return;
        }
        None => return,
    }
    let Some(a) = exec_target::attribute(root, program, || owners, || runner) else {
        return;
    };
    row.set(c::PROGRAM_HIJACKABLE, a.hijackable)
        .set(c::PROGRAM_PROVENANCE, a.provenance.map(|p| p.as_str()));
    if let Some(p) = a.packaged {
        let verified = p.verified.unwrap_or(Verification::Unrecorded);
        row.set(c::PROGRAM_PACKAGE, p.names.map(|n| n.join(", ")))
            .set(c::PROGRAM_VERIFIED, verified.verified());
    }
}

/// A packaged unit of the same name later in the search path than the
/// unpackaged one systemd loads: the packaged one it hides.
fn packaged_shadow(root: &Root, h: &Handoff, u: &Unit, owners: Option<&Owners>) -> Option<PathBuf> {
    let owners = owners?;
    let name = u.path.file_name()?;
    let scope = if h.bus == "system" {
        Scope::System
    } else {
        Scope::User {
            uid: None,
            home: None,
        }
    };
    unit_files::search_path(&scope)
        .into_iter()
        .map(|d| d.join(name))
        .filter(|p| *p != u.path)
        .find(|p| {
            root.open_path(p).is_ok()
                && owners
                    .lookup(p.as_os_str().as_bytes())
                    .is_some_and(|o| !o.packages.is_empty())
        })
}
