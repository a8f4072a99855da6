//! rpm's sqlite database (`rpmdb.sqlite`): one header blob per package,
//! parsed here for the name, the file paths (`DIRNAMES`, `BASENAMES`,
//! `DIRINDEXES`), their digests and the install time.
use super::filter::{normalized, Filter};
use super::{Format, Owners, Package, PackagesError};
use crate::sources::fs_safe::Root;
use crate::sources::hash::Algo;
use std::collections::HashMap;
use std::path::Path;

pub(super) const RPMDB: &str = "/var/lib/rpm/rpmdb.sqlite";

/// rpm header tags and types used here (`rpmtag.h`).
const TAG_NAME: u32 = 1000;
const TAG_INSTALLTIME: u32 = 1008;
const TAG_FILEDIGESTS: u32 = 1035;
const TAG_FILEDIGESTALGO: u32 = 5011;
const TAG_DIRINDEXES: u32 = 1116;
const TAG_BASENAMES: u32 = 1117;
const TAG_DIRNAMES: u32 = 1118;
const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_STRING_ARRAY: u32 = 8;
const TYPE_I18NSTRING: u32 = 9;

/// What is read from one rpm header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpmHeader {
    pub name: String,
    pub paths: Vec<Vec<u8>>,
    /// Hex digests parallel to `paths` ("" for directories and links);
    /// empty when the header records none.
    pub digests: Vec<Vec<u8>>,
    /// `FILEDIGESTALGO` (`PGPHASHALGO_*`): MD5 when absent, as rpm assumes;
    /// `None` for an algorithm not supported here (SHA-1 and others).
    pub algo: Option<Algo>,
    pub install_time: Option<i64>,
}

/// rpm's `PGPHASHALGO_*` numbers.
fn rpm_algo(n: u32) -> Option<Algo> {
    match n {
        1 => Some(Algo::Md5),
        8 => Some(Algo::Sha256),
        9 => Some(Algo::Sha384),
        10 => Some(Algo::Sha512),
        _ => None,
    }
}

/// The package name, file paths, digests and install time of one rpm
/// header blob (the form the sqlite backend stores: index count, data
/// length, 16-byte index entries, data). `None` when the blob is
/// malformed.
pub fn parse_rpm_header(blob: &[u8]) -> Option<RpmHeader> {
    let be32 = |b: &[u8], at: usize| -> Option<u32> {
        b.get(at..at.checked_add(4)?)
            .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    };
    let il = usize::try_from(be32(blob, 0)?).ok()?;
    let dl = usize::try_from(be32(blob, 4)?).ok()?;
    let data_start = 8usize.checked_add(il.checked_mul(16)?)?;
    let data = blob.get(data_start..data_start.checked_add(dl)?)?;
    let mut entries = HashMap::new();
    for i in 0..il {
        let at = 8 + i * 16;
        let tag = be32(blob, at)?;
        let ty = be32(blob, at + 4)?;
        let off = usize::try_from(be32(blob, at + 8)?).ok()?;
        let count = usize::try_from(be32(blob, at + 12)?).ok()?;
        entries.insert(tag, (ty, off, count));
    }
    let strings = |tag: u32| -> Option<Vec<&[u8]>> {
        let &(ty, off, count) = entries.get(&tag)?;
        if ty != TYPE_STRING && ty != TYPE_STRING_ARRAY && ty != TYPE_I18NSTRING {
            return None;
        }
        let mut out = Vec::with_capacity(count.min(1 << 16));
        let mut pos = off;
        for _ in 0..count {
            let rest = data.get(pos..)?;
            let len = rest.iter().position(|b| *b == 0)?;
            out.push(&rest[..len]);
            pos += len + 1;
        }
        Some(out)
    };
    let int32 = |tag: u32| -> Option<u32> {
        let &(ty, off, count) = entries.get(&tag)?;
        if ty != TYPE_INT32 || count == 0 {
            return None;
        }
        be32(data, off)
    };
    let name = String::from_utf8_lossy(strings(TAG_NAME)?.first()?).into_owned();
    let mut paths = Vec::new();
    if let (Some(base), Some(dirs), Some(&(ty, off, count))) = (
        strings(TAG_BASENAMES),
        strings(TAG_DIRNAMES),
        entries.get(&TAG_DIRINDEXES),
    ) {
        if ty != TYPE_INT32 || count != base.len() {
            return None;
        }
        for (i, b) in base.iter().enumerate() {
            let idx = usize::try_from(be32(data, off + 4 * i)?).ok()?;
            let mut p = dirs.get(idx)?.to_vec();
            p.extend_from_slice(b);
            paths.push(p);
        }
    }
    let digests: Vec<Vec<u8>> = match strings(TAG_FILEDIGESTS) {
        Some(d) if d.len() == paths.len() => d.into_iter().map(<[u8]>::to_vec).collect(),
        _ => Vec::new(),
    };
    Some(RpmHeader {
        name,
        paths,
        digests,
        algo: int32(TAG_FILEDIGESTALGO).map_or(Some(Algo::Md5), rpm_algo),
        install_time: int32(TAG_INSTALLTIME).map(i64::from),
    })
}

/// Reads rpm's sqlite database, opened through the root (confined, regular
/// only) and handed to SQLite as `/proc/self/fd/N`, read-only and
/// `immutable` so SQLite takes no lock and writes nothing; changes still in
/// a WAL file are not seen.
pub(super) fn load(root: &Root, owners: &mut Owners, filter: Filter) -> Result<(), PackagesError> {
    let path = Path::new(RPMDB);
    let file = match root.open_regular(path) {
        Ok(f) => f,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    owners.has_database = true;
    if filter.nothing() {
        return Ok(());
    }
    let rpm = |source| PackagesError::Rpm {
        path: path.to_path_buf(),
        source,
    };
    use std::os::fd::AsRawFd;
    let uri = format!("file:/proc/self/fd/{}?immutable=1", file.as_raw_fd());
    let conn = rusqlite::Connection::open_with_flags(
        uri,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
            | rusqlite::OpenFlags::SQLITE_OPEN_URI
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(rpm)?;
    let mut index: HashMap<Package, u32> = owners.packages.iter().cloned().zip(0..).collect();
    let mut stmt = conn.prepare("SELECT blob FROM Packages").map_err(rpm)?;
    let mut rows = stmt.query([]).map_err(rpm)?;
    while let Some(row) = rows.next().map_err(rpm)? {
        let blob: Vec<u8> = row.get(0).map_err(rpm)?;
        match parse_rpm_header(&blob) {
            Some(h) => {
                let mut kept = h
                    .paths
                    .iter()
                    .filter(|p| normalized(p).is_some_and(|p| filter.owner(p)))
                    .peekable();
                if kept.peek().is_some() {
                    let pkg = owners.package_interned(
                        Package {
                            name: h.name,
                            format: Format::Rpm,
                            installed: h.install_time,
                            // The header is one blob of the database: its
                            // digests change only with the package.
                            digests_rewritten: None,
                        },
                        &mut index,
                    );
                    for p in kept {
                        owners.add(pkg, p);
                    }
                }
                if let Some(algo) = h.algo {
                    for (p, d) in h.paths.iter().zip(&h.digests) {
                        if filter.digest(p) {
                            owners.add_digest(p, algo, d);
                        }
                    }
                }
            }
            None => owners
                .errors
                .push(format!("{RPMDB}: a malformed package header was skipped")),
        }
    }
    drop(file);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{load, owners_of};
    use super::*;

    /// Builds a header blob the way rpm lays one out.
    pub(crate) fn rpm_header(name: &str, dirs: &[&str], files: &[(u32, &str)]) -> Vec<u8> {
        rpm_header_full(name, dirs, files, &[], None, None)
    }

    /// [`rpm_header`] with `FILEDIGESTS` (when not empty),
    /// `FILEDIGESTALGO` and `INSTALLTIME`.
    pub(crate) fn rpm_header_full(
        name: &str,
        dirs: &[&str],
        files: &[(u32, &str)],
        digests: &[&str],
        algo: Option<u32>,
        installed: Option<u32>,
    ) -> Vec<u8> {
        let mut data = Vec::new();
        let mut index = Vec::new();
        let mut put = |tag: u32, ty: u32, count: usize, bytes: &[u8], data: &mut Vec<u8>| {
            if ty == TYPE_INT32 {
                while data.len() % 4 != 0 {
                    data.push(0);
                }
            }
            index.push((tag, ty, data.len(), count));
            data.extend_from_slice(bytes);
        };
        let strs = |v: &[&str]| {
            v.iter()
                .flat_map(|s| s.bytes().chain([0]))
                .collect::<Vec<u8>>()
        };
        put(TAG_NAME, TYPE_STRING, 1, &strs(&[name]), &mut data);
        let base: Vec<&str> = files.iter().map(|f| f.1).collect();
        put(
            TAG_BASENAMES,
            TYPE_STRING_ARRAY,
            base.len(),
            &strs(&base),
            &mut data,
        );
        put(
            TAG_DIRNAMES,
            TYPE_STRING_ARRAY,
            dirs.len(),
            &strs(dirs),
            &mut data,
        );
        let idx: Vec<u8> = files.iter().flat_map(|f| f.0.to_be_bytes()).collect();
        put(TAG_DIRINDEXES, TYPE_INT32, files.len(), &idx, &mut data);
        if !digests.is_empty() {
            put(
                TAG_FILEDIGESTS,
                TYPE_STRING_ARRAY,
                digests.len(),
                &strs(digests),
                &mut data,
            );
        }
        if let Some(a) = algo {
            put(
                TAG_FILEDIGESTALGO,
                TYPE_INT32,
                1,
                &a.to_be_bytes(),
                &mut data,
            );
        }
        if let Some(t) = installed {
            put(TAG_INSTALLTIME, TYPE_INT32, 1, &t.to_be_bytes(), &mut data);
        }
        let mut blob = Vec::new();
        blob.extend_from_slice(&(index.len() as u32).to_be_bytes());
        blob.extend_from_slice(&(data.len() as u32).to_be_bytes());
        for (tag, ty, off, count) in index {
            for v in [tag, ty, off as u32, count as u32] {
                blob.extend_from_slice(&v.to_be_bytes());
            }
        }
        blob.extend_from_slice(&data);
        blob
    }

    #[test]
    fn rpm_headers_from_sqlite() {
        let blob = rpm_header(
            "dbus-common",
            &["/usr/share/dbus-1/", "/usr/lib/"],
            &[(0, "system.conf"), (1, "x.so")],
        );
        let h = parse_rpm_header(&blob).unwrap();
        assert_eq!(h.name, "dbus-common");
        assert!(h.digests.is_empty());
        assert_eq!(h.algo, Some(Algo::Md5), "rpm's default");
        assert_eq!(h.install_time, None);
        assert_eq!(
            h.paths,
            [
                b"/usr/share/dbus-1/system.conf".to_vec(),
                b"/usr/lib/x.so".to_vec()
            ]
        );
        for cut in [0, 3, 8, 20, blob.len() - 1] {
            assert!(parse_rpm_header(&blob[..cut]).is_none(), "{cut}");
        }
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        std::fs::create_dir_all(r.join("var/lib/rpm")).unwrap();
        let db = rusqlite::Connection::open(r.join("var/lib/rpm/rpmdb.sqlite")).unwrap();
        db.execute_batch(
            "CREATE TABLE Packages (hnum INTEGER PRIMARY KEY NOT NULL, blob BLOB NOT NULL);",
        )
        .unwrap();
        db.execute("INSERT INTO Packages (blob) VALUES (?1)", [&blob])
            .unwrap();
        db.execute("INSERT INTO Packages (blob) VALUES (?1)", [&b"junk"[..]])
            .unwrap();
        drop(db);
        let root = Root::open(r).unwrap();
        let o = load(&root);
        let part = owners_of(&root, [&b"/lib/x.so"[..], b"/etc/evil.conf"], false);
        assert_eq!(part.owner(b"/lib/x.so").unwrap(), "dbus-common");
        assert_eq!(part.owner(b"/etc/evil.conf").unwrap(), "");
        assert_eq!(part.by_path.len(), 1);
        assert_eq!(
            o.owner(b"/usr/share/dbus-1/system.conf").unwrap(),
            "dbus-common"
        );
        assert_eq!(o.owner(b"/lib/x.so").unwrap(), "dbus-common");
        assert_eq!(o.owner(b"/etc/evil.conf").unwrap(), "");
        assert_eq!(o.errors.len(), 1, "{:?}", o.errors);
    }

    #[test]
    fn rpm_digests_algorithms_and_install_time() {
        let sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let blob = rpm_header_full(
            "p",
            &["/usr/share/dbus-1/", "/lib/"],
            &[(0, "a.conf"), (1, "d")],
            &[sha, ""],
            Some(8),
            Some(1_700_000_000),
        );
        let h = parse_rpm_header(&blob).unwrap();
        assert_eq!(h.algo, Some(Algo::Sha256));
        assert_eq!(h.install_time, Some(1_700_000_000));
        assert_eq!(h.digests, [sha.as_bytes().to_vec(), Vec::new()]);
        // SHA-1 (2) is not checked: no digests kept.
        let sha1 = rpm_header_full("q", &["/x/"], &[(0, "f")], &["aa"], Some(2), None);
        assert_eq!(parse_rpm_header(&sha1).unwrap().algo, None);
        // A digest list that does not match the files is ignored.
        let odd = rpm_header_full("q", &["/x/"], &[(0, "f")], &["aa", "bb"], None, None);
        assert!(parse_rpm_header(&odd).unwrap().digests.is_empty());

        let mut o = Owners {
            has_database: true,
            ..Owners::default()
        };
        let pkg = o.package(Package {
            name: "p".into(),
            format: Format::Rpm,
            installed: h.install_time,
            digests_rewritten: None,
        });
        for (p, d) in h.paths.iter().zip(&h.digests) {
            o.add(pkg, p);
            o.add_digest(p, Algo::Sha256, d);
        }
        let l = o.lookup(b"/usr/lib/d").unwrap();
        assert_eq!(l.packages.len(), 1);
        assert!(l.digests.is_empty(), "a directory has no digest");
        let l = o.lookup(b"/usr/share/dbus-1/a.conf").unwrap();
        assert_eq!(l.digests[0].hex, sha);
        assert_eq!(l.installed(), Some(1_700_000_000));
    }
}
