//! Where the tables read the system from: the run's settings, shared by
//! the tables, the collectors and the hosts. A leaf module.
use std::path::{Path, PathBuf};

/// Where a table reads the system from: the live host by default, or a
/// mounted image / container rootfs (`--root`) and another `/proc` (`--proc`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub root: PathBuf,
    pub proc: PathBuf,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            root: PathBuf::from("/"),
            proc: PathBuf::from("/proc"),
        }
    }
}

impl Settings {
    /// A path as seen inside the root, e.g. `/etc/passwd` under `--root`.
    pub fn under_root(&self, path: impl AsRef<Path>) -> PathBuf {
        let rel = path.as_ref().strip_prefix("/").unwrap_or(path.as_ref());
        self.root.join(rel)
    }
}
