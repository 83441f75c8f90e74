//! watershed: one SQL server over rivers (event streams) and lakes (Delta tables),
//! spoken to over the PostgreSQL wire protocol.
//!
//! A statement travels `server/` (pgwire) -> `session/` (per-connection state, routing)
//! -> `sql/` (our dialect on top of DataFusion's parser) -> `catalog/` (every named
//! relation) -> `lake/` (Delta table providers) and `stream/` (sources, fed by
//! `connectors/`) and back out through `server/`, which encodes Arrow batches with
//! arrow-pg. `model/` learns models from the lake (`CREATE MODEL`) and scores with them
//! (`predict()`). `main.rs` only parses the command line.

pub mod catalog;
pub mod config;
pub mod connectors;
pub mod demo;
pub mod embedded;
pub mod error;
pub mod lake;
pub mod model;
pub mod scan_info;
pub mod server;
pub mod session;
pub mod sql;
pub mod stream;
