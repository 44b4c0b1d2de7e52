//! Upstream: clusters of hosts and the load balancers that pick one (MOSN's
//! `pkg/upstream/cluster`).
//!
//! - [`cluster`]: a cluster, its hosts and its balancer;
//! - [`host`]: one host and its counters;
//! - [`in_flight`]: requests and attempts in flight, limited or only counted;
//! - [`rows`]: per-thread rows of counters;
//! - [`lb`]: the balancers, one file per `lb_type`;
//! - [`state`]: where the mutable state lives.
//!
//! A [`Cluster`] is shared by every worker (Envoy's worker threads call into the same
//! object), so its mutable state is atomics only: round-robin cursors, host health and
//! per-host counters. No lock is taken on the request path. Those atomics live in the
//! config's [`StateBlock`], which nginx moves into memory shared by its worker processes.

pub mod cluster;
pub mod dns;
pub mod hash;
pub mod health_check;
pub mod host;
pub mod in_flight;
pub mod lb;
pub mod mirror;
pub mod outlier;
pub mod rows;
pub mod state;
pub mod subset;
pub mod word;

pub use cluster::{Cluster, ClusterStats, NoHostReason};
pub use host::{Host, HostState};
pub use lb::TriedHosts;
pub use state::StateBlock;
pub use subset::Criteria;
