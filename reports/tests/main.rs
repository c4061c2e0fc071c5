//! Integration tests of raftbus-reports, one binary (see `util` for the synthetic runs).

mod browser;
mod compare;
mod hlog;
mod render;
mod trend;
mod util;
