//! The vocabulary shared by filters, router, upstream, streams and hosts (MOSN's `mosn/api`):
//! response flags, the verdicts a host acts on, local replies and per-request metadata.
//!
//! A leaf module: it depends on nothing else in the crate but [`crate::headers`]'s string type.

mod action;
pub mod flags;
mod reply;

pub use action::{Action, NoHost, UpstreamOutcome};
pub use reply::LocalReply;

use crate::headers::SharedStr;

/// Values filters recorded for logs, hosts and subset criteria (e.g. `unit` → `s1`).
pub type Metadata = smallvec::SmallVec<[(SharedStr, SharedStr); 2]>;
