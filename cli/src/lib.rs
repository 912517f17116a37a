//! The ipcq programs, `ipcq-broker` (the broker process, `src/bin/ipcq-broker.rs`) and
//! `ipcq` (the command line, `src/bin/ipcq.rs`), live in this package so that an
//! application linking the `ipcq` library compiles none of what only they need (clap,
//! anyhow, serde_json, tracing-subscriber).
//!
//! The library part is what the command line shows:
//! - [`stats`]: `ipcq stats` as aligned tables and as JSON.

pub mod stats;
