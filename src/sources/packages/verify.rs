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

/// Whether the file `open` yields matches any digest the owning package
/// manager recorded for its path: `Ok(None)` when nothing is recorded, an
/// error when the file cannot be read. The file is opened once per distinct
/// algorithm recorded, and only when there is something to compare.
pub fn verify(
    owned: Option<&Ownership>,
    path: &Path,
    open: impl Fn() -> Result<std::fs::File, FsError>,
) -> Result<Option<bool>, VerifyError> {
    let Some(owned) = owned else {
        return Ok(None);
    };
    let digests = &owned.digests;
    if digests.is_empty() {
        return Ok(None);
    }
    let mut algos: Vec<Algo> = digests.iter().map(|d| d.algo).collect();
    algos.sort();
    algos.dedup();
    for algo in algos {
        let file = open().map_err(VerifyError::Open)?;
        let got = hash::digest_file(file, algo, path).map_err(VerifyError::Hash)?;
        if digests.iter().any(|d| d.algo == algo && d.hex == got) {
            return Ok(Some(true));
        }
    }
    Ok(Some(false))
}
