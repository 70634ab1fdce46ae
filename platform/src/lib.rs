//! What every ticket service shares: configuration, telemetry, RocketMQ messaging, the
//! transactional outbox and inbox, dead letters, Postgres access, the gRPC bootstrap, the admin
//! HTTP port and its metrics, and the checks of what clients send (identifiers, a buyer's
//! contact).
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod auth;
pub mod binary;
pub mod config;
pub mod contact;
pub mod db;
pub mod dead_letter;
pub mod fields;
pub mod group_commit;
pub mod grpc;
pub mod grpc_client;
pub mod handover;
pub mod inbox;
pub mod messaging;
pub mod metrics;
pub mod migration;
pub mod outbox;
pub mod participant;
pub mod rate_limit;
pub mod readiness;
pub mod recordset;
pub mod redis;
pub mod service;
pub mod shutdown;
pub mod stock_keys;
pub mod telemetry;
pub mod time;
pub mod transport;

/// Every binary built on the platform allocates with mimalloc: a gRPC request and its Redis and
/// Postgres round trips allocate and free many small buffers across threads. Under load, the
/// system allocator took about 7% of the stock bench's samples (see docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
