//! Packaging without a package manager: the extensions.load editor
//! (`packaging/extensions-load.sh`) on temp files, the generated .deb and
//! .rpm maintainer scripts run against a temp copy of the autoload file, the
//! cargo-deb and cargo-generate-rpm asset lists held to each other, every
//! packaging command taking the shipped binary, and the version the binary
//! reports. `scripts/package-check.sh` does the rest with
//! a real `dpkg -i`.
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const EXT: &str = "/usr/lib/osquery-dbus/dbus.ext";
const AUTOLOAD: &str = "/etc/osquery/extensions.load";

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Runs `sh SCRIPT ARGS…` and fails the test on a non-zero exit.
fn sh(script: &Path, args: &[&str]) {
    let out = Command::new("sh")
        .arg(script)
        .args(args)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "sh {} {args:?} failed ({}): {}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn edit(action: &str, file: &Path, line: &str) {
    sh(
        &repo("packaging/extensions-load.sh"),
        &[action, file.to_str().unwrap(), line],
    );
}

fn read(file: &Path) -> String {
    std::fs::read_to_string(file).unwrap()
}

#[test]
fn add_creates_the_directory_and_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("etc/osquery/extensions.load");
    edit("add", &file, EXT);
    assert_eq!(read(&file), format!("{EXT}\n"));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&file), 0o644);
    assert_eq!(mode(file.parent().unwrap()), 0o755);
}

#[test]
fn add_to_an_empty_file() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("extensions.load");
    std::fs::write(&file, "").unwrap();
    edit("add", &file, EXT);
    assert_eq!(read(&file), format!("{EXT}\n"));
}

#[test]
fn add_is_idempotent_and_keeps_other_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("extensions.load");
    let before = "/opt/a/one.ext\n# a comment\n\n/opt/b/two.ext\n";
    std::fs::write(&file, before).unwrap();
    edit("add", &file, EXT);
    edit("add", &file, EXT);
    assert_eq!(read(&file), format!("{before}{EXT}\n"));
}

#[test]
fn add_after_a_last_line_without_newline() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("extensions.load");
    std::fs::write(&file, "/opt/a/one.ext").unwrap();
    edit("add", &file, EXT);
    assert_eq!(read(&file), format!("/opt/a/one.ext\n{EXT}\n"));
}

#[test]
fn add_when_present_without_newline_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("extensions.load");
    let before = format!("/opt/a/one.ext\n{EXT}");
    std::fs::write(&file, &before).unwrap();
    edit("add", &file, EXT);
    assert_eq!(read(&file), before);
}

#[test]
fn lookalike_lines_are_other_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("extensions.load");
    // A commented-out copy, a longer path, and a regex-looking line.
    let before = format!("#{EXT}\n{EXT}.bak\n/usr/lib/osquery.dbus/dbus.ext\n");
    std::fs::write(&file, &before).unwrap();
    edit("add", &file, EXT);
    assert_eq!(read(&file), format!("{before}{EXT}\n"));
    edit("remove", &file, EXT);
    assert_eq!(read(&file), before);
}

#[test]
fn remove_leaves_other_lines_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("extensions.load");
    std::fs::write(
        &file,
        format!("/opt/a/one.ext\n{EXT}\n# keep me\n{EXT}\n\n/opt/b/two.ext"),
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    edit("remove", &file, EXT);
    // Every copy goes; a last line without a newline gains one.
    assert_eq!(read(&file), "/opt/a/one.ext\n# keep me\n\n/opt/b/two.ext\n");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600, "rewritten in place, mode kept");
}

#[test]
fn remove_without_the_line_touches_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("extensions.load");
    std::fs::write(&file, "/opt/a/one.ext").unwrap();
    edit("remove", &file, EXT);
    assert_eq!(read(&file), "/opt/a/one.ext");
    let missing = tmp.path().join("missing/extensions.load");
    edit("remove", &missing, EXT);
    assert!(!missing.exists() && !missing.parent().unwrap().exists());
}

#[test]
fn remove_of_the_only_line_deletes_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("extensions.load");
    edit("add", &file, EXT);
    edit("remove", &file, EXT);
    assert!(!file.exists());
}

#[test]
fn bad_usage_exits_2() {
    for args in [&[][..], &["add"], &["frob", "a", "b"], &["add", "", "x"]] {
        let out = Command::new("sh")
            .arg(repo("packaging/extensions-load.sh"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("usage:"));
    }
}

#[test]
fn maintainer_scripts_are_current() {
    let out = Command::new(repo("scripts/gen-maintainer-scripts.sh"))
        .arg("--check")
        .output()
        .expect("run gen-maintainer-scripts.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A maintainer script with the autoload path pointed at `file`, and the
/// directories an rpm erase removes moved under `dir` (`pkg/a/b`, `pkg/a`):
/// the test must not touch the host.
fn retargeted(script: &str, file: &Path, dir: &Path) -> PathBuf {
    let mut text = read(&repo(script));
    let needle = format!("EXTENSIONS_LOAD={AUTOLOAD}\n");
    assert_eq!(text.matches(&needle).count(), 1, "{script}");
    text = text.replace(&needle, &format!("EXTENSIONS_LOAD={}\n", file.display()));
    if let Some(line) = text.lines().find(|l| l.starts_with("RPM_DIRS=")) {
        let pkg = dir.join("pkg");
        let ours = format!(
            "RPM_DIRS=\"{} {}\"",
            pkg.join("a/b").display(),
            pkg.join("a").display()
        );
        text = text.replace(line, &ours);
    }
    let out = dir.join(Path::new(script).file_name().unwrap());
    std::fs::write(&out, text).unwrap();
    out
}

#[test]
fn deb_scripts_add_on_first_configure_and_remove_on_purge() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("etc/osquery/extensions.load");
    let postinst = retargeted("packaging/deb/postinst", &file, tmp.path());
    let postrm = retargeted("packaging/deb/postrm", &file, tmp.path());

    sh(&postinst, &["configure", ""]);
    assert_eq!(read(&file), format!("{EXT}\n"));
    std::fs::write(&file, format!("/opt/a/one.ext\n{EXT}\n/opt/b/two.ext")).unwrap();
    sh(&postinst, &["configure", ""]); // reinstall after a purge: no duplicate
    sh(&postrm, &["remove"]); // plain remove keeps the line
    sh(&postrm, &["upgrade", "0.0.9"]);
    assert_eq!(
        read(&file),
        format!("/opt/a/one.ext\n{EXT}\n/opt/b/two.ext")
    );
    sh(&postrm, &["purge"]);
    assert_eq!(read(&file), "/opt/a/one.ext\n/opt/b/two.ext\n");
    // An upgrade does not bring back a line the admin took out.
    sh(&postinst, &["configure", "0.0.9"]);
    assert_eq!(read(&file), "/opt/a/one.ext\n/opt/b/two.ext\n");
    sh(&postinst, &["abort-upgrade", "0.0.9"]);
    assert_eq!(read(&file), "/opt/a/one.ext\n/opt/b/two.ext\n");
}

#[test]
fn rpm_scripts_add_on_install_and_remove_on_erase() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("etc/osquery/extensions.load");
    let post = retargeted("packaging/rpm/post.sh", &file, tmp.path());
    let postun = retargeted("packaging/rpm/postun.sh", &file, tmp.path());

    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, "/opt/a/one.ext").unwrap();
    sh(&post, &["1"]);
    assert_eq!(read(&file), format!("/opt/a/one.ext\n{EXT}\n"));
    sh(&postun, &["1"]); // upgrade: the old package's %postun keeps the line
    sh(&post, &["2"]);
    assert_eq!(read(&file), format!("/opt/a/one.ext\n{EXT}\n"));
    let pkg = tmp.path().join("pkg");
    std::fs::create_dir_all(pkg.join("a/b")).unwrap();
    std::fs::write(pkg.join("kept"), "").unwrap();
    sh(&postun, &["0"]);
    assert_eq!(read(&file), "/opt/a/one.ext\n");
    // Its empty directories go, a non-empty one stays.
    assert!(!pkg.join("a").exists());
    assert!(pkg.join("kept").exists());
}

/// (source, dest, mode) of the files in one packager's asset list, sorted.
fn assets(meta: &toml::Value, tool: &str) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = meta[tool]["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| match a {
            toml::Value::Array(t) => (
                t[0].as_str().unwrap().to_string(),
                format!("/{}", t[1].as_str().unwrap()),
                t[2].as_str().unwrap().to_string(),
            ),
            toml::Value::Table(t) => {
                assert_eq!(t["user"].as_str(), Some("root"), "{t:?}");
                assert_eq!(t["group"].as_str(), Some("root"), "{t:?}");
                (
                    t["source"].as_str().unwrap().to_string(),
                    t["dest"].as_str().unwrap().to_string(),
                    t["mode"].as_str().unwrap().to_string(),
                )
            }
            other => panic!("unexpected asset {other}"),
        })
        .collect();
    out.sort();
    out
}

#[test]
fn deb_and_rpm_install_the_same_files() {
    let manifest: toml::Value = toml::from_str(&read(&repo("Cargo.toml"))).unwrap();
    let meta = &manifest["package"]["metadata"];
    let deb = assets(meta, "deb");
    let rpm = assets(meta, "generate-rpm");
    assert_eq!(deb, rpm);
    // Both packagers read `target/release/` as `target/<triple>/release/`
    // when given `--target` (cargo-deb accepts no other prefix for built
    // files): see packaging_commands_take_the_shipped_binary.
    let binary = (
        "target/release/osquery-dbus".to_string(),
        EXT.to_string(),
        "755".to_string(),
    );
    assert!(deb.contains(&binary), "{deb:?}");
    for (source, dest, mode) in &deb {
        if !source.starts_with("target/") {
            assert!(repo(source).is_file(), "{source} missing");
        }
        let want = if dest.starts_with("/usr/lib/osquery-dbus/") {
            "755"
        } else {
            "644"
        };
        assert_eq!(mode, want, "{dest}");
        assert!(
            [
                "/usr/lib/osquery-dbus/",
                "/usr/share/osquery-dbus/packs/",
                "/usr/share/doc/osquery-dbus/",
            ]
            .iter()
            .any(|p| dest.starts_with(p)),
            "{dest}"
        );
    }
    for pack in ["dbus-persistence.conf", "fleet/dbus-persistence.yml"] {
        let dest = format!("/usr/share/osquery-dbus/packs/{pack}");
        assert!(deb.iter().any(|(_, d, _)| *d == dest), "{dest}");
    }
    // cargo-generate-rpm 0.21 cannot make the rpm own directories, so its
    // %postun removes them (when empty) on erase: every one must be listed.
    let postun = read(&repo("packaging/rpm/postun.sh"));
    let listed: Vec<&Path> = postun
        .lines()
        .find_map(|l| l.strip_prefix("RPM_DIRS=\""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("RPM_DIRS in postun.sh")
        .split_whitespace()
        .map(Path::new)
        .collect();
    for (_, dest, _) in &rpm {
        let mut dir = Path::new(dest).parent();
        while let Some(d) = dir.filter(|d| d.to_str().unwrap().contains("osquery-dbus")) {
            let at = listed.iter().position(|l| *l == d);
            assert!(at.is_some(), "%postun does not remove {}", d.display());
            // Deepest first: a directory comes before its parent.
            if let Some(parent) = listed.iter().position(|l| Some(*l) == d.parent()) {
                assert!(at < Some(parent), "{} after its parent", d.display());
            }
            dir = d.parent();
        }
    }
    // The scripts the metadata names are the generated ones.
    assert_eq!(
        meta["deb"]["maintainer-scripts"].as_str(),
        Some("packaging/deb/")
    );
    for key in ["post_install_script", "post_uninstall_script"] {
        let path = meta["generate-rpm"][key].as_str().unwrap();
        assert!(repo(path).is_file(), "{key}: {path}");
    }
}

/// The triple whose release directory holds the shipped binary.
const TRIPLE: &str = "x86_64-unknown-linux-gnu";

/// Every `cargo deb` / `cargo generate-rpm` command in the scripts and docs
/// packages the shipped binary (scripts/build-shipped.sh's glibc 2.17
/// build): it passes `--target x86_64-unknown-linux-gnu`, so the asset
/// `target/release/osquery-dbus` is read from
/// `target/x86_64-unknown-linux-gnu/release/`, which is where that script
/// builds it; a plain `cargo deb` would build and ship a binary that needs
/// the build host's glibc. cargo-deb must not build it (`--no-build`): its
/// own `cargo build --target` would relink the same path with the host's
/// linker. The rpm's payload is gzip: rpm before 4.14 (RHEL/CentOS 7)
/// cannot read cargo-generate-rpm's default, zstd.
#[test]
fn packaging_commands_take_the_shipped_binary() {
    let script = read(&repo("scripts/build-shipped.sh"));
    assert!(
        script
            .lines()
            .any(|l| l == "BIN=target/$TRIPLE/release/osquery-dbus"),
        "scripts/build-shipped.sh builds elsewhere"
    );
    assert!(
        script.contains("--target \"$TRIPLE.$GLIBC_BASELINE\"")
            && script.contains(&format!("TRIPLE={TRIPLE}\n"))
            && script.contains("GLIBC_BASELINE=2.17\n"),
        "scripts/build-shipped.sh no longer builds for {TRIPLE}.2.17"
    );
    // The .deb's dependency is the baseline the script checks the symbols
    // against (set by hand: dpkg-shlibdeps would read the build host's glibc).
    let manifest: toml::Value = toml::from_str(&read(&repo("Cargo.toml"))).unwrap();
    assert_eq!(
        manifest["package"]["metadata"]["deb"]["depends"].as_str(),
        Some("libc6 (>= 2.17)")
    );
    let target = [format!("--target {TRIPLE}"), "--target \"$TRIPLE\"".into()];
    let mut seen = 0;
    for file in ["scripts/package-check.sh", "README.md", "docs/deploy.md"] {
        for line in read(&repo(file)).lines() {
            let line = line.trim_start();
            // Commands, as the docs and scripts write them (`cargo deb
            // --version` and messages are not).
            let deb = line.contains("cargo deb --locked");
            let rpm = line.contains("cargo generate-rpm");
            if !(deb || rpm) || line.starts_with('#') || line.contains("cargo install") {
                continue;
            }
            seen += 1;
            assert!(
                target.iter().any(|t| line.contains(t.as_str())),
                "{file}: packages without --target {TRIPLE}: {line}"
            );
            if deb {
                assert!(line.contains("--no-build"), "{file}: {line}");
            }
            // zstd, the default payload, needs rpm 4.14 (not on RHEL 7).
            if rpm {
                assert!(line.contains("--payload-compress gzip"), "{file}: {line}");
            }
        }
    }
    assert!(seen >= 3, "found only {seen} packaging commands");
}

#[test]
fn version_flag_prints_the_crate_version() {
    let out = Command::new(env!("CARGO_BIN_EXE_osquery-dbus"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("osquery-dbus {}\n", env!("CARGO_PKG_VERSION"))
    );
}
