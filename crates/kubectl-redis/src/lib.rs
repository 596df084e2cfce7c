//! `kubectl redis`: the RedisCluster plugin for kubectl (docs/kubectl-plugin.md).
//!
//! - [`view`] and [`render`]: what `status` shows, pure (golden files in `tests/golden/`).
//! - [`actions`]: when `promote`/`demote` may patch and how far they got, pure.
//! - [`redact`]: the support bundle's redaction, pure.
//! - [`api`] and [`bundle`]: the calls to the API server (thin).

pub mod actions;
pub mod api;
pub mod bundle;
pub mod redact;
pub mod render;
pub mod view;
