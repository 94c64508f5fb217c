//! Helpers shared by the integration tests. Each test binary declares `mod common;` and uses
//! what it needs.

pub mod archive;
pub mod lab;
