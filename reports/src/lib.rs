//! raftbus-reports: the results model and everything drawn from it.
//!
//! - [`model`] — the results directory as data (`summary.json`, `timeseries.json`, file
//!   names, hlog tags). The harness writes through it; reports read only through it.
pub mod model;
