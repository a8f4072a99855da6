//! Whether a file still matches what its package recorded for it: the one
//! question both a service file and the program it starts ask of the
//! package databases, answered here so the two answers cannot drift.
use super::Ownership;
use crate::sources::fs_safe::FsError;
use crate::sources::hash::{self, Algo, HashError};
use std::path::Path;

/// Why a file with recorded digests could not be checked against them.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("verify: {0}")]
    Open(#[source] FsError),
    #[error("verify: {0}")]
    Hash(#[source] HashError),
}

/// What checking a file against its package's records found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// It matches a recorded digest.
    Matches,
    /// It matches none of them: edited in place.
    Differs,
    /// Nothing to compare: no package owns it, or none recorded a digest
    /// (directories, symlinks, unchecksummed conffiles).
    Unrecorded,
    /// The package recorded a regular file (it has a digest for it) and
    /// the path is now something else, a link most dangerously: what is
    /// read or run is no longer the package's.
    Replaced { now: String },
    /// The owning package's digest list changed after its install, so its
    /// digests prove nothing.
    DigestsRewritten { package: String },
}

impl Verification {
    /// The `*_verified` column: 1, 0, or NULL when it cannot be said.
    pub fn verified(&self) -> Option<bool> {
        match self {
            Verification::Matches => Some(true),
            Verification::Differs | Verification::Replaced { .. } => Some(false),
            Verification::Unrecorded | Verification::DigestsRewritten { .. } => None,
        }
    }

    /// Why the file does not verify, or why it cannot be verified although
    /// a package owns it; `None` when it matches or nothing was recorded.
    pub fn reason(&self) -> Option<String> {
        match self {
            Verification::Matches | Verification::Unrecorded => None,
            Verification::Differs => {
                Some("content matches no digest its package recorded".to_string())
            }
            Verification::Replaced { now } => {
                Some(format!("its package recorded a regular file; now {now}"))
            }
            Verification::DigestsRewritten { package } => Some(format!(
                "the digest list of {package} changed after its install, so its digests are not trusted"
            )),
        }
    }
}

/// Checks a path that is no longer a regular file (`now` says what it is)
/// against the records: replaced when a package recorded a digest there.
pub fn verify_not_regular(owned: Option<&Ownership>, now: impl FnOnce() -> String) -> Verification {
    match owned {
        Some(o) if !o.digests.is_empty() => Verification::Replaced { now: now() },
        _ => Verification::Unrecorded,
    }
}

/// Whether the file `open` yields matches any digest the owning package
/// manager recorded for its path; an error when the file cannot be read.
/// The file is opened once per distinct algorithm recorded, and only when
/// there is something to compare and the records can be trusted.
pub fn verify(
    owned: Option<&Ownership>,
    path: &Path,
    open: impl Fn() -> Result<std::fs::File, FsError>,
) -> Result<Verification, VerifyError> {
    let Some(owned) = owned else {
        return Ok(Verification::Unrecorded);
    };
    let digests = &owned.digests;
    if digests.is_empty() {
        return Ok(Verification::Unrecorded);
    }
    if let Some(p) = owned
        .packages
        .iter()
        .find(|p| p.digests_rewritten.is_some())
    {
        return Ok(Verification::DigestsRewritten {
            package: p.name.clone(),
        });
    }
    let mut algos: Vec<Algo> = digests.iter().map(|d| d.algo).collect();
    algos.sort();
    algos.dedup();
    for algo in algos {
        let file = open().map_err(VerifyError::Open)?;
        let got = hash::digest_file(file, algo, path).map_err(VerifyError::Hash)?;
        if digests.iter().any(|d| d.algo == algo && d.hex == got) {
            return Ok(Verification::Matches);
        }
    }
    Ok(Verification::Differs)
}
