//! The HTTP API and the `bookingd` binary.
//!
//! # Layout
//!
//! * [`startup`]: wires pool, NATS, the write side, the relay and the router;
//!   [`integrations`]: the external clients and the saga workers over them.
//! * [`config`]: the command line and environment, one typed struct per sub-command.
//! * [`routes`]: one module per resource, each with its `router()`.
//! * [`auth`], [`idempotency`]: API keys, the operator token, `Idempotency-Key`.
//! * [`error`]: the error envelope and every mapping to HTTP.
//! * [`views`]: response shapes; [`openapi`]: the document generated from them.
//! * [`cli`], [`demo`]: the non-server sub-commands.

pub mod auth;
pub mod calls;
pub mod cli;
pub mod config;
pub mod consistency;
pub mod demo;
pub mod error;
pub mod idempotency;
pub mod integrations;
pub mod mcp;
pub mod metrics;
pub mod openapi;
pub mod rate_limit;
pub mod reads;
pub mod routes;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod views;

pub use startup::Application;
