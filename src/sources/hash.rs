//! SHA-256 (and the digests package databases record: MD5 for dpkg,
//! MD5/SHA-256/384/512 for rpm) of a file, read the safe way.
//!
//! Hunts compare service files and the programs they start against known
//! hashes; osquery's `hash` table would follow symlinks and open FIFOs.
//! Here the caller hands over a file already opened by `sources::fs_safe`
//! (regular only, `O_NONBLOCK`, root-confined, `O_NOFOLLOW` where the
//! caller wants it), and the whole file is streamed through `sha2` up to
//! [`MAX_HASH_BYTES`]; a larger file is reported, not hashed.
use sha2::{Digest, Sha256, Sha384, Sha512};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Hashing stops here: nothing D-Bus reads or runs is this large, and a
/// bigger file would make one query slow for every host in a fleet.
pub const MAX_HASH_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("{}: larger than {limit} bytes; not hashed", crate::sources::fs_safe::render_path(.path))]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{}: read failed: {source}", crate::sources::fs_safe::render_path(.path))]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A digest algorithm a package database may record for a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algo {
    Md5,
    Sha256,
    Sha384,
    Sha512,
}

/// Lowercase hex SHA-256 of everything `reader` yields, at most `limit`
/// bytes.
pub fn sha256_reader(reader: impl Read, limit: u64, shown: &Path) -> Result<String, HashError> {
    digest_reader::<Sha256>(reader, limit, shown)
}

/// Lowercase hex digest with `algo` of an opened file, at most
/// [`MAX_HASH_BYTES`].
pub fn digest_file(file: std::fs::File, algo: Algo, shown: &Path) -> Result<String, HashError> {
    match algo {
        Algo::Md5 => digest_reader::<md5::Md5>(file, MAX_HASH_BYTES, shown),
        Algo::Sha256 => digest_reader::<Sha256>(file, MAX_HASH_BYTES, shown),
        Algo::Sha384 => digest_reader::<Sha384>(file, MAX_HASH_BYTES, shown),
        Algo::Sha512 => digest_reader::<Sha512>(file, MAX_HASH_BYTES, shown),
    }
}

fn digest_reader<D: Digest>(
    mut reader: impl Read,
    limit: u64,
    shown: &Path,
) -> Result<String, HashError> {
    let mut hasher = D::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total: u64 = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(HashError::Read {
                    path: shown.to_path_buf(),
                    source,
                })
            }
        };
        total = total.saturating_add(n as u64);
        if total > limit {
            return Err(HashError::TooLarge {
                path: shown.to_path_buf(),
                limit,
            });
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// SHA-256 of an opened file, see [`sha256_reader`].
/// A file whose size already exceeds the cap is refused before a byte is
/// read: otherwise a (possibly sparse) file past the cap would be read and
/// hashed up to the cap only to discard the digest. The streaming check
/// still guards a file that grows while it is read.
pub fn sha256_file(file: std::fs::File, shown: &Path) -> Result<String, HashError> {
    let size = file.metadata().map_err(|source| HashError::Read {
        path: shown.to_path_buf(),
        source,
    })?;
    if size.len() > MAX_HASH_BYTES {
        return Err(HashError::TooLarge {
            path: shown.to_path_buf(),
            limit: MAX_HASH_BYTES,
        });
    }
    sha256_reader(file, MAX_HASH_BYTES, shown)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests_and_the_limit() {
        let p = Path::new("x");
        assert_eq!(
            sha256_reader(&b""[..], 10, p).unwrap(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_reader(&b"abc"[..], 10, p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let e = sha256_reader(&b"abcdef"[..], 5, p).unwrap_err();
        assert!(matches!(e, HashError::TooLarge { .. }), "{e}");
        assert!(e.to_string().starts_with("x: larger than 5 bytes"));
        assert_eq!(
            digest_reader::<md5::Md5>(&b"abc"[..], 10, p).unwrap(),
            "900150983cd24fb0d6963f7d28e17f72"
        );
    }

    /// Found by tests/hostile_tree.rs: a 2 GiB sparse `.service` file made
    /// `SELECT sha256` read (and hash) up to the cap before refusing it; a
    /// file already over the cap must be refused before its first read.
    #[test]
    fn sha256_of_a_sparse_file_over_the_cap_reads_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("huge");
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(2 * 1024 * 1024 * 1024).unwrap();
        let start = std::time::Instant::now();
        let e = sha256_file(std::fs::File::open(&path).unwrap(), &path).unwrap_err();
        assert!(matches!(e, HashError::TooLarge { .. }), "{e}");
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
    }
}
