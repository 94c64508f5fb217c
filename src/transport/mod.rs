//! HTTP between hosts: the wire types, the block/manifest server and the client.

pub mod auth;
pub mod client;
pub mod server;
pub mod wire;
