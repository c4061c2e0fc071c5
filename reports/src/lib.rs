//! raftbus-reports: the results model and everything drawn from it.
//!
//! - [`model`] — the results directory as data (`summary.json`, `timeseries.json`, file
//!   names, hlog tags). The harness writes through it; reports read only through it.
//! - [`hlog`] — HdrHistogram interval logs (`latency.hlog`): [`hlog::HlogWriter`] for the
//!   harness, [`hlog::Hlog`] / [`hlog::read_hlog`] for reports.
//! - [`run`] — one results directory loaded ([`run::RunData`]) and the series charts use.
//! - [`plot`] — the charts, one file each, behind [`plot::Chart`]; PNG + SVG.
//! - [`html`] — the self-contained `report.html` (single run and `both` comparison).
//! - [`markdown`] — `summary.md` for CI comments.
//! - [`cost`] — the cost of a message: CPU, RSS, disk writes and fsyncs of the target's
//!   processes, in total and per 1,000 acknowledged messages; tables and words.
//! - [`render`] — [`render_run`]: a results directory in, report files out.
//! - [`mod@compare`] — [`compare()`]: deltas between two runs, `regressed` beyond a threshold.
//! - [`mod@trend`] — [`trend()`]: every run under a root, `index.html` with trend charts.
//! - [`sweep`] — the report of a capacity sweep (`sweep.json`): capacity per target,
//!   steps, the latency-vs-offered chart.
//! - [`synthetic`] — plausible fake results directories for tests, benches and demos.
//! - [`error`] — [`ReportError`], the crate's one error type.
pub mod compare;
pub mod cost;
pub mod durability;
pub mod error;
pub mod hlog;
pub mod html;
pub mod markdown;
pub mod model;
pub mod plot;
pub mod render;
pub mod run;
pub mod sweep;
pub mod synthetic;
pub mod trend;

pub use compare::{compare, Comparison, DEFAULT_THRESHOLD};
pub use error::ReportError;
pub use render::{render_run, RenderedReport};
pub use sweep::render_sweep;
pub use trend::{trend, TrendReport};
