//! Shared setup for integration tests that need a real peer: a Python venv
//! holding the PyPI `osquery` package (osquery's own generated Thrift code)
//! and the `thrift` runtime, built on first use so `cargo test` works on a
//! fresh machine with nothing but python3 and access to PyPI.
#![allow(dead_code)] // each test binary uses its own subset

pub mod bus;
pub mod cli;
pub mod ext;
pub mod hunt_root;
pub mod planted;
pub mod procfs;

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The pinned peer packages: `osquery` 3.1.1 is the newest on PyPI; `thrift`
/// is pinned to the version checked to import alongside it.
const PEER_PACKAGES: &[&str] = &["osquery==3.1.1", "thrift==0.25.0"];

/// Proves the venv is usable: the imports the fake core needs.
const PROBE: &str = "from osquery.extensions import ExtensionManager, Extension\n\
from osquery.extensions.ttypes import ExtensionStatus\n\
from thrift.transport import TSocket, TTransport\n\
from thrift.protocol import TBinaryProtocol\n";

/// `target/`, whatever `CARGO_TARGET_DIR` says.
pub fn target_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).to_path_buf()
}

fn works(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", PROBE])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn build_venv() -> PathBuf {
    let venv = target_dir().join("peer-venv");
    let python = venv.join("bin").join("python");
    // One builder at a time across test threads *and* test processes: an
    // exclusive flock on a file next to the venv, held until we return.
    std::fs::create_dir_all(target_dir()).expect("target dir");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(target_dir().join("peer-venv.lock"))
        .expect("open venv lock");
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).expect("lock venv");
    if works(&python) {
        return python;
    }
    run(Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(&venv));
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(PEER_PACKAGES));
    assert!(works(&python), "peer venv built but its imports fail");
    python
}

/// The venv's python, with the peer packages importable.
pub fn peer_python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(build_venv).clone()
}

/// Files under `tests/peer/`.
pub fn peer_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("peer")
        .join(name)
}
