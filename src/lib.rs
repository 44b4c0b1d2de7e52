//! mosn-extension: MOSN's stream filters, router and upstream as a library that a host
//! proxy (Envoy, Nginx, or any C program through the `mosn-extension-ffi` crate) drives
//! per request.
//!
//! Layers, each depending only on the ones above it (no cycles):
//! - [`config`]: MOSN JSON → plain data, errors with JSON paths, the field table;
//! - [`headers`], [`api`], [`variable`], [`wake`]: shared vocabulary (header maps and
//!   mutations, header matchers, response flags, verdicts, local replies, MOSN's request
//!   variables, the wake handshake);
//! - [`filter`], [`router`], [`upstream`]: MOSN's stream filters, router and upstream;
//! - [`listener`], [`stream`]: one listener's chain, one request's life;
//! - [`engine`]: a loaded config snapshot;
//! - [`route_check`]: `mosn-ext route-check` (a route table tested before it is deployed);
//! - [`hostgen`]: host configs generated from mosn.json.

pub mod admin;
pub mod api;
pub mod config;
pub mod engine;
pub mod filter;
pub mod headers;
pub mod hostgen;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod route_check;
pub mod router;
pub mod stream;
pub mod timer;
pub mod upstream;
pub mod variable;
pub mod wake;

pub use api::{Action, NoHost, UpstreamOutcome};
pub use engine::Engine;
pub use stream::Stream;
