//! mosn-extension: MOSN's stream filters, router and upstream as a library that a host
//! proxy (Envoy, Nginx, or any C program through [`ffi`]) drives per request.
//!
//! Layers, each in its own module:
//! - [`config`]: MOSN JSON → validated plain data, errors with JSON paths;
//! - [`filter`]: the stream filter chain and its filters (`metadata`/`UNIT`, `fault`);
//! - [`router`]: virtual hosts and routes;
//! - [`upstream`]: clusters, hosts and load balancing;
//! - [`stream`]: one request's life, the vocabulary hosts speak;
//! - [`ffi`]: the versioned C ABI (`include/mosn_extension.h`).

pub mod config;
pub mod engine;
pub mod ffi;
pub mod filter;
pub mod headers;
pub mod hostgen;
pub mod logging;
pub mod router;
pub mod stream;
pub mod timer;
pub mod upstream;
pub mod wake;

pub use engine::Engine;
pub use stream::{Action, Stream, UpstreamOutcome};
