//! The osquery host: registers the tables with an osquery core over its
//! Thrift extension socket and serves `generate`/`columns` calls. (Stub.)
use crate::tables::Registry;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[allow(clippy::all)]
mod bindings;

pub struct ExtensionOptions {
    pub socket: PathBuf,
    pub timeout: Duration,
    pub interval: Duration,
    pub verbose: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum OsqueryHostError {
    #[error("not implemented")]
    Unimplemented,
}

pub fn run(registry: Arc<Registry>, opts: ExtensionOptions) -> Result<(), OsqueryHostError> {
    let _ = (registry, opts);
    Err(OsqueryHostError::Unimplemented)
}
