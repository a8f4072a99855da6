//! Where a symlinked entry leads, judged as a file of its own: the bus
//! reads the target, so the link's place (a package's directory, a
//! package's own path) lends it no trust. `target_path`, `target_uid`,
//! `target_hijackable`, `target_package`.
use super::plan::Scan;
use super::row::Entry;
use crate::row::Row;
use crate::sources::exec_target;
use crate::sources::stat::{self, FileKind};
use crate::spec::columns::dbus_service_files as c;
use std::os::unix::ffi::OsStrExt;

/// The target columns of a symlink entry whose target exists inside the
/// root; nothing for other entries.
pub(super) fn columns(scan: &mut Scan, entry: &Entry, row: &mut Row) {
    if entry.meta.kind != FileKind::Symlink {
        return;
    }
    let root = scan.root;
    let Ok(fd) = root.open_path(entry.path) else {
        return;
    };
    let Some(target) = root.inner_path(rustix::fd::AsFd::as_fd(&fd)) else {
        return;
    };
    let uid = stat::stat_fd(&fd, target.clone()).ok().map(|m| m.uid);
    // Only root may replace what a system directory's link leads to; in an
    // account's own directory, that account may too.
    let runner = entry.dir.owner.as_ref().map(|o| o.uid);
    row.set(
        c::TARGET_PATH,
        crate::sources::fs_safe::render_path(&target),
    )
    .set(c::TARGET_UID, uid)
    .set(
        c::TARGET_HIJACKABLE,
        exec_target::hijackable(root, entry.path, &target, runner),
    );
    if scan.used.has(c::TARGET_PACKAGE) {
        if let Some(owners) = scan.owners() {
            row.set(
                c::TARGET_PACKAGE,
                owners.owner(target.as_os_str().as_bytes()),
            );
        }
    }
}
