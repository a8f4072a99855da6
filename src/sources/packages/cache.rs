//! The process-wide cache of owner maps: whole maps and partial ones
//! (the answers for the paths queries asked), each kept per root and
//! valid while the change times of the databases stay as they were.
use super::dpkg::{DPKG_INFO, DPKG_STATUS};
use super::filter::{Filter, PathSet};
use super::rpm::RPMDB;
use super::{load, scan, spellings, Owners};
use crate::sources::fs_safe::Root;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The spellings a partial map has answered: owners, and digests (read
/// only for callers that verify contents).
#[derive(Debug, Default, Clone)]
pub(super) struct Covered {
    pub(super) owners: PathSet,
    pub(super) digests: PathSet,
}

/// What the cache is valid for: the root and the change times of each
/// database (`None` when absent). `.list` files are replaced by rename,
/// which changes the info directory's mtime.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    root: PathBuf,
    stamps: Vec<Option<(i64, u32, u64)>>,
}

fn stamp(root: &Root, path: &str) -> Option<(i64, u32, u64)> {
    let fd = root.open_path(Path::new(path)).ok()?;
    let st = rustix::fs::fstat(&fd).ok()?;
    let nsec = u32::try_from(st.st_mtime_nsec).unwrap_or(0);
    Some((st.st_mtime, nsec, st.st_ino))
}

struct Cache {
    key: Key,
    owners: Arc<Owners>,
}

/// A few roots at most (the live `/`, perhaps an image or two under
/// test); the least recently built entry goes first.
const CACHED_ROOTS: usize = 4;

static CACHE: Mutex<Vec<Cache>> = Mutex::new(Vec::new());

/// The owners map for `root`, from the cache when the databases have not
/// changed since it was built.
pub fn owners(root: &Root) -> Arc<Owners> {
    let key = key(root);
    // A poisoned lock only means another query panicked mid-build; the
    // entries are still whole (they are replaced, never edited).
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = cache.iter().find(|c| c.key == key) {
        c.owners.report_blind();
        return Arc::clone(&c.owners);
    }
    let owners = Arc::new(load(root));
    remember(&mut cache, key, &owners);
    owners.report_blind();
    owners
}

fn key(root: &Root) -> Key {
    Key {
        root: root.host_path().to_path_buf(),
        stamps: [DPKG_INFO, DPKG_STATUS, RPMDB, "/var/lib/rpm"]
            .iter()
            .map(|p| stamp(root, p))
            .collect(),
    }
}

/// Stores `owners` as the entry of `key`'s root, replacing an older one.
fn remember(cache: &mut Vec<Cache>, key: Key, owners: &Arc<Owners>) {
    cache.retain(|c| c.key.root != key.root);
    if cache.len() >= CACHED_ROOTS {
        cache.remove(0);
    }
    cache.push(Cache {
        key,
        owners: Arc::clone(owners),
    });
}

/// Partial maps, apart from the whole ones: a root can have both.
static PARTIAL: Mutex<Vec<Cache>> = Mutex::new(Vec::new());

/// A map that answers [`Owners::lookup`] for `paths` (either merged-`/usr`
/// spelling; digests too when `digests`), and for no other path. A query
/// that needs a few owners pays one pass over the databases keeping only
/// their lines, not a map of every installed file; answers, "no owner"
/// included, are cached under the same key as [`owners`], so a repeat
/// query reads nothing and a later one scans only for paths not yet asked.
pub fn owners_of<'p>(
    root: &Root,
    paths: impl IntoIterator<Item = &'p [u8]>,
    digests: bool,
) -> Arc<Owners> {
    owners_in(root, paths, [], digests)
}

/// [`owners_of`] for `paths` and for every entry directly in `dirs`
/// (paths inside the root, no trailing `/`). A table that asks for its
/// directories before listing them needs no listing of its own for the
/// lookups, and a repeat query finds every entry answered, new ones too.
pub fn owners_in<'p, 'd>(
    root: &Root,
    paths: impl IntoIterator<Item = &'p [u8]>,
    dirs: impl IntoIterator<Item = &'d [u8]>,
    digests: bool,
) -> Arc<Owners> {
    let key = key(root);
    let mut cache = PARTIAL.lock().unwrap_or_else(|p| p.into_inner());
    let cached = cache.iter().find(|c| c.key == key).map(|c| &c.owners);
    let covered = cached.and_then(|o| o.covered.as_ref());
    let (mut want_owners, mut want_digests) = (PathSet::default(), PathSet::default());
    for path in paths {
        for p in spellings(path) {
            if covered.is_none_or(|c| !c.owners.contains(p.as_slice())) {
                want_owners.insert(p.clone().into());
            }
            if digests && covered.is_none_or(|c| !c.digests.contains(p.as_slice())) {
                want_digests.insert(p.into());
            }
        }
    }
    for dir in dirs {
        // An entry's parent is the directory without a trailing `/`; spelled
        // with one here so that a directory at a merged prefix itself
        // (`/lib`) gets its other spelling too.
        let end = dir.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
        let mut slashed = dir[..end].to_vec();
        slashed.push(b'/');
        for mut d in spellings(&slashed) {
            d.pop();
            if covered.is_none_or(|c| !c.owners.dirs.contains(&d)) {
                want_owners.insert_dir(d.clone().into());
            }
            if digests && covered.is_none_or(|c| !c.digests.dirs.contains(&d)) {
                want_digests.insert_dir(d.into());
            }
        }
    }
    if let Some(o) = cached {
        if want_owners.is_empty() && want_digests.is_empty() {
            o.report_blind();
            return Arc::clone(o);
        }
    }
    let mut owners = cached.map_or_else(Owners::default, |o| Owners::clone(o));
    scan(
        root,
        &mut owners,
        Filter::Only {
            owners: &want_owners,
            digests: &want_digests,
        },
    );
    let covered = owners.covered.get_or_insert_with(Covered::default);
    covered.owners.extend(want_owners);
    covered.digests.extend(want_digests);
    let owners = Arc::new(owners);
    remember(&mut cache, key, &owners);
    owners.report_blind();
    owners
}

#[cfg(test)]
mod tests {
    use super::super::test_files::write;
    use super::*;

    /// Installs package `b` with `list` as dpkg writes it (a rename into
    /// place), moving the directory's mtime even on coarse clocks.
    fn install_b(r: &Path, list: &[u8]) {
        write(r, "var/lib/dpkg/info/b.tmp", list);
        std::fs::rename(
            r.join("var/lib/dpkg/info/b.tmp"),
            r.join("var/lib/dpkg/info/b.list"),
        )
        .unwrap();
        let t = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::open(r.join("var/lib/dpkg/info"))
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    #[test]
    fn cache_is_reused_and_invalidated() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        write(r, "var/lib/dpkg/info/a.list", b"/x\n");
        let root = Root::open(r).unwrap();
        let first = owners(&root);
        assert!(Arc::ptr_eq(&first, &owners(&root)));
        install_b(r, b"/y\n");
        let second = owners(&root);
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(second.owner(b"/y").unwrap(), "b");
    }

    /// A partial map answers as the whole one for what it was asked,
    /// digests included, and is reused until a path it has not answered
    /// comes, or the database changes.
    #[test]
    fn partial_maps_answer_as_the_whole_one() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        write(
            r,
            "var/lib/dpkg/info/dbus.list",
            b"/.\n/usr\n/usr/share/dbus-1/x.service\n/lib/dbus-1/y\n/etc/a.conf\n/usr/share/doc/dbus\n",
        );
        write(
            r,
            "var/lib/dpkg/info/libx:amd64.list",
            b"/usr/lib/dbus-1/y\n",
        );
        write(
            r,
            "var/lib/dpkg/info/dbus.md5sums",
            b"0123456789abcdef0123456789abcdef  usr/share/dbus-1/x.service\n",
        );
        write(
            r,
            "var/lib/dpkg/status",
            b"Package: dbus\nConffiles:\n /etc/a.conf 11111111111111111111111111111111\n",
        );
        let root = Root::open(r).unwrap();
        let whole = load(&root);
        let asked: [&[u8]; 6] = [
            b"/usr/share/dbus-1/x.service",
            b"/usr/lib/dbus-1/y",
            b"/lib/dbus-1/y",
            b"/etc/a.conf",
            b"/nowhere",
            b"/usr",
        ];
        let part = owners_of(&root, asked, true);
        for p in asked {
            assert_eq!(
                part.lookup(p),
                whole.lookup(p),
                "{}",
                String::from_utf8_lossy(p)
            );
        }
        assert_eq!(whole.by_path.len(), 6);
        assert_eq!(part.by_path.len(), 5, "only what was asked is kept");
        assert!(Arc::ptr_eq(&part, &owners_of(&root, asked, true)));
        let fewer = owners_of(&root, [&b"/etc/a.conf"[..]], false);
        assert!(Arc::ptr_eq(&part, &fewer), "a subset reads nothing");
        let more = owners_of(&root, [&b"/etc/b.conf"[..]], false);
        assert!(!Arc::ptr_eq(&part, &more));
        assert_eq!(more.owner(b"/etc/b.conf").unwrap(), "");
        assert_eq!(more.owner(b"/lib/dbus-1/y").unwrap(), "dbus, libx:amd64");
        // A package install invalidates every answer.
        install_b(r, b"/etc/b.conf\n");
        let after = owners_of(&root, [&b"/etc/b.conf"[..]], false);
        assert_eq!(after.owner(b"/etc/b.conf").unwrap(), "b");
        let empty = tempfile::tempdir().unwrap();
        let none = owners_of(&Root::open(empty.path()).unwrap(), [&b"/x"[..]], false);
        assert_eq!(none.owner(b"/x"), None);
    }

    /// A directory asked for stands for every entry directly in it, in
    /// either merged-`/usr` spelling and with or without a trailing `/`:
    /// those answer as the whole map does, entries of its subdirectories
    /// and of other directories are not kept, and a later query for any
    /// entry of it (one never listed included) reads nothing.
    #[test]
    fn directories_answer_for_their_entries() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        write(
            r,
            "var/lib/dpkg/info/dbus.list",
            b"/.\n/usr\n/usr/share/dbus-1/services\n/usr/share/dbus-1/services/x.service\n\
              /usr/share/dbus-1/services/sub/deeper\n/lib/dbus-1/system-services/y.service\n\
              /usr/share/dbus-1/system.d/z.conf\n/etc/a.conf\n",
        );
        write(
            r,
            "var/lib/dpkg/info/libx:amd64.list",
            b"/usr/lib/dbus-1/system-services/y.service\n",
        );
        write(
            r,
            "var/lib/dpkg/info/dbus.md5sums",
            b"0123456789abcdef0123456789abcdef  usr/share/dbus-1/services/x.service\n",
        );
        let root = Root::open(r).unwrap();
        let whole = load(&root);
        let dirs: [&[u8]; 2] = [
            b"/usr/share/dbus-1/services/",
            b"/usr/lib/dbus-1/system-services",
        ];
        let part = owners_in(&root, [&b"/etc/a.conf"[..]], dirs, true);
        let answered: [&[u8]; 7] = [
            b"/usr/share/dbus-1/services/x.service",
            b"/usr/share/dbus-1/services/sub",
            b"/usr/share/dbus-1/services/never-listed.service",
            b"/usr/lib/dbus-1/system-services/y.service",
            b"/lib/dbus-1/system-services/y.service",
            b"/lib/dbus-1/system-services/z.service",
            b"/etc/a.conf",
        ];
        for p in answered {
            assert_eq!(
                part.lookup(p),
                whole.lookup(p),
                "{}",
                String::from_utf8_lossy(p)
            );
        }
        assert_eq!(
            part.owner(b"/lib/dbus-1/system-services/y.service")
                .unwrap(),
            "dbus, libx:amd64"
        );
        assert_eq!(
            part.lookup(b"/usr/share/dbus-1/services/x.service")
                .unwrap()
                .digests
                .len(),
            1
        );
        assert!(!part
            .by_path
            .contains_key(&b"/usr/share/dbus-1/services/sub/deeper"[..]));
        assert!(!part
            .by_path
            .contains_key(&b"/usr/share/dbus-1/system.d/z.conf"[..]));
        let again = owners_of(&root, answered, true);
        assert!(
            Arc::ptr_eq(&part, &again),
            "entries of asked directories read nothing"
        );
        let same_dirs = owners_in(&root, [], [&b"/lib/dbus-1/system-services"[..]], false);
        assert!(
            Arc::ptr_eq(&part, &same_dirs),
            "either spelling of an asked directory"
        );
        let other = owners_of(&root, [&b"/usr/share/dbus-1/system.d/z.conf"[..]], false);
        assert!(!Arc::ptr_eq(&part, &other));
        assert_eq!(
            other.owner(b"/usr/share/dbus-1/system.d/z.conf").unwrap(),
            "dbus"
        );
    }
}
