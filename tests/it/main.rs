//! The integration tests, one binary so the suite links once: each module drives real fnhost
//! processes (built from this crate, with functions built from functions/) over HTTP.

mod common;
/// The real PostgreSQL server the unit tests use, shared so both start it the same way.
#[path = "../../src/store/postgres/test_server.rs"]
mod postgres_server;

mod architecture;

mod admin_api;
mod aliases;
mod asynchronous;
mod cli;
mod console;
mod crash;
mod events;
mod faults;
mod fleet;
mod hardening;
mod invoke;
mod isolation;
mod keyvalue;
mod languages;
mod manifest;
mod metering;
mod properties;
mod registry;
mod restart;
mod rollout;
mod routes;
mod s3;
mod scaling;
mod shadow;
mod teams;
mod traces;
mod wasi_p3;
