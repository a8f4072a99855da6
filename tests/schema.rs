//! The schema is written once, in `tables/*.toml`; these tests fail when
//! anything derived from it drifts: the committed table reference, the
//! `schema` command, or rows carrying columns the spec does not declare.
use osquery_dbus::context::QueryContext;
use osquery_dbus::settings::Settings;
use osquery_dbus::spec;
use osquery_dbus::tables::Registry;
use std::os::unix::fs::chown;
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_osquery-dbus");

#[test]
fn docs_tables_md_is_current() {
    let specs = spec::load_all();
    let want = spec::render_docs(&specs);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/tables.md");
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/tables.md is stale: run `cargo run -- schema --markdown > docs/tables.md`"
    );
}

#[test]
fn schema_command_prints_every_table_from_the_specs() {
    let out = Command::new(BIN)
        .arg("schema")
        .output()
        .expect("run schema");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf-8");
    for s in spec::load_all() {
        assert!(
            text.contains(&format!("{}: ", s.name)),
            "{} missing",
            s.name
        );
        for c in &s.columns {
            assert!(text.contains(&c.name), "{}.{} missing", s.name, c.name);
        }
    }
    let md = Command::new(BIN)
        .args(["schema", "--markdown"])
        .output()
        .expect("run schema --markdown");
    assert!(md.status.success());
    let want = spec::render_docs(&spec::load_all());
    assert_eq!(String::from_utf8(md.stdout).expect("utf-8"), want);

    let missing = Command::new(BIN)
        .args(["schema", "no_such_table"])
        .output()
        .expect("run schema");
    assert!(!missing.status.success());
}

/// A root with something in every place the tables read, so every column
/// has a chance to be filled.
fn populated_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    let r = root.path();
    let write = |rel: &str, body: &str| {
        let p = r.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, body).expect("write");
        p
    };
    write(
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000:Alice:/srv/alice:/bin/sh\n",
    );
    write("etc/group", "root:x:0:\nalice:x:1000:\n");
    write(
        "usr/share/dbus-1/system-services/org.example.Sys.service",
        "[D-BUS Service]\nName=org.example.Sys\nExec=/usr/libexec/sys --flag\nUser=root\n",
    );
    write(
        "etc/dbus-1/system.d/org.example.Sys.conf",
        "<busconfig><policy context=\"default\"><allow own=\"org.example.Sys\" bogus=\"1\"/></policy></busconfig>\n",
    );
    write(
        "usr/share/dbus-1/system-services/org.example.Unit.service",
        "[D-BUS Service]\nName=org.example.Unit\nExec=/bin/false\nSystemdService=unit.service\n",
    );
    write(
        "lib/systemd/system/unit.service",
        "[Service]\nExecStart=/usr/libexec/unitd\nEnvironment=A=1\nUser=root\n",
    );
    write("etc/dbus-1/system.d/org.example.Broken.conf", "<busconfig>");
    write("usr/share/dbus-1/system.conf", "<busconfig/>\n");
    let home = write(
        "srv/alice/.local/share/dbus-1/services/org.example.User.service",
        "[D-BUS Service]\nName=org.example.User\nExec=/srv/alice/bin/run\n",
    );
    chown(&home, Some(1000), Some(1000)).expect("chown (tests run as root)");
    std::os::unix::fs::symlink(
        "/etc/shadow",
        r.join("usr/share/dbus-1/system-services/link.service"),
    )
    .expect("symlink");
    root
}

#[test]
fn generated_rows_only_carry_spec_columns() {
    let root = populated_root();
    let registry = Registry::new(Settings {
        root: root.path().to_path_buf(),
        ..Settings::default()
    })
    .expect("registry");
    for table in registry.tables() {
        let rows = table.generate(&registry.settings, &QueryContext::new());
        // Rows of dbus_daemon_children come from live bus daemons, which a
        // build host may not run; tests/daemon_children_fixture.rs holds that
        // table to its spec over a fixture /proc instead (as
        // tests/activated_processes_fixture.rs does dbus_activated_processes).
        // Evented tables have rows only once a collector ran:
        // tests/process_events.rs and tests/file_events.rs check theirs.
        if matches!(
            table.spec.name.as_str(),
            "dbus_daemon_children"
                | "dbus_activated_processes"
                | "dbus_process_events"
                | "dbus_file_events"
        ) {
            continue;
        }
        assert!(!rows.is_empty(), "{} produced no rows", table.spec.name);
        for row in &rows {
            for col in row.columns() {
                assert!(
                    table.spec.column(col).is_some(),
                    "{} emitted column {col} that its spec lacks",
                    table.spec.name
                );
            }
        }
    }
}
