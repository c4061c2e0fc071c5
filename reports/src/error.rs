//! The one error type of this crate.

use std::path::PathBuf;

use crate::model::ModelError;

/// Everything that can go wrong while writing or reading results and rendering reports.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A results file could not be read, written or parsed.
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("malformed histogram log {path}: {reason}")]
    Hlog { path: PathBuf, reason: String },
    #[error("cannot encode histogram for tag {tag}: {reason}")]
    HistogramEncode { tag: String, reason: String },
    #[error("invalid histogram tag {0:?}: tags must be non-empty and contain no comma, space or newline")]
    InvalidTag(String),
    #[error("cannot draw chart {chart}: {reason}")]
    Plot { chart: String, reason: String },
    #[error("{0} is not a results directory: no summary.json, and no bus/ or redis/ subdirectory with one")]
    NotAResultsDir(PathBuf),
    #[error("no runs found under {0}")]
    NoRuns(PathBuf),
    #[error("invalid threshold {0}: expected a fraction between 0 and 10 (0.1 = 10%)")]
    InvalidThreshold(f64),
}

impl ReportError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ReportError::Io {
            path: path.into(),
            source,
        }
    }
}
