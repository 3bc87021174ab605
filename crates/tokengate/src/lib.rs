//! tokengate: a self-hosted API-token gateway.
//!
//! Layers, bottom up: [`tokengate_core`] (formats and policy, no IO) → [`store`]
//! (SQLite / PostgreSQL) → [`state`] (the in-memory view the hot path reads) and
//! [`usage`] (counters) → [`gateway`] (the request pipeline) and [`service`] (admin
//! operations) → [`api`] (HTTP) → [`server`] (start-up and accept loop) → [`cli`].

pub mod admin_commands;
pub mod api;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod data_dir;
pub mod drain;
pub mod egress;
pub mod error_chain;
pub mod gateway;
pub mod import_file;
pub mod limits;
pub mod linger;
pub mod master_key;
pub mod oauth;
pub mod outbound;
pub mod ratelimit;
pub mod room;
pub mod server;
pub mod service;
pub mod state;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod tls;
pub mod usage;
pub mod webhooks;
