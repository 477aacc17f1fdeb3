//! The PostgreSQL implementation of the metadata store (fleet mode). Work in progress on this
//! branch: the test server harness first.

mod audit;
mod functions;
mod rollouts;
mod schema;
#[cfg(test)]
pub(crate) mod test_server;
mod usage;
