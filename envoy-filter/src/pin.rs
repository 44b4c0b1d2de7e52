//! The first attempt's host, handed from the HTTP filter to the cluster LB on the worker
//! thread, when the filter config says Envoy's router follows (`"router_follows": true`,
//! which the generated config sets: no filter after this one up to the router holds a
//! request's headers; the generated chain has none, or Envoy's compressor, which only
//! reads them).
//!
//! A request the core can not retry gets its host from the core in the filter
//! ([`crate::http_logic`], `hand_over`). Envoy must then connect to exactly that host. Two
//! ways reach Envoy:
//! - **the override host** (`set_upstream_override_host`): Envoy parses the `ip:port` text
//!   into an address object and later finds the host by it, about 1.7k instructions per
//!   request (docs/benchmarks.md);
//! - **this slot**: the filter leaves the choice here as the last thing it does before it
//!   lets the request go on, and the LB of the cluster takes it when the router asks for
//!   the host. About 200 instructions (the LB hook included).
//!
//! The slot is sound only because nothing runs on the thread between the two: when the
//! router follows, Envoy calls the router's `decodeHeaders` as soon as the filter's hook
//! returns (or inside `continue_decoding`), and the router chooses the host there,
//! synchronously, before it returns. A filter in between that holds the headers (an
//! authorization call, say) would let other requests run first, one of which could take
//! the slot; that is why the filter uses the slot only when its config says the router
//! follows, and the override host otherwise.
//!
//! Belt and braces:
//! - the LB takes the slot only for a request (a context), and uses the choice only if it is
//!   of its own cluster (another's is dropped, with an error in Envoy's log);
//! - the filter clears a choice the LB did not take at its next hook (Envoy's local reply
//!   when the router answers without asking, the response headers) and when it ends or is
//!   dropped, so a choice never outlives its stream;
//! - a request whose host comes from the LB otherwise clears the slot before it goes on.
//!
//! What the slot can not tell: which request an LB call is for. A choice still waiting
//! when another request of the same cluster asks (which the router following the filter
//! rules out) would go to that request. And a second ask for the pinned request (an Envoy
//! retry, hedge or internal redirect, none of which the generated route has: the core
//! decides retries) finds no choice and gets the cluster's own pick, where the strict
//! override host would have given the same host again.

use mosn_extension::upstream::Cluster;
use std::cell::Cell;

/// A core host choice waiting for the LB.
#[derive(Clone, Copy)]
struct Pinned {
    /// The id of the stream that chose (`HttpFilter::id`).
    owner: u64,
    cluster: *const Cluster,
    index: usize,
}

thread_local! {
    static SLOT: Cell<Option<Pinned>> = const { Cell::new(None) };
}

/// The filter's side: leaves `owner`'s choice (core host `index` of `cluster`) for the LB,
/// replacing any other.
///
/// # Safety
/// `cluster` must stay alive until the choice is taken or [`unpin`]ned: the caller (the
/// stream, which keeps its cluster alive) unpins before it is dropped.
pub unsafe fn pin(owner: u64, cluster: &Cluster, index: usize) {
    SLOT.with(|s| s.set(Some(Pinned { owner, cluster, index })));
}

/// Clears `owner`'s choice if it is still waiting.
pub fn unpin(owner: u64) {
    SLOT.with(|s| {
        if s.get().is_some_and(|p| p.owner == owner) {
            s.set(None);
        }
    });
}

/// Clears whatever choice waits (a request whose host comes from the LB otherwise).
pub fn clear() {
    SLOT.with(|s| s.set(None));
}

/// The LB's side: takes (clears) the waiting choice, if any, and gives it to `take` as
/// `(cluster, host index)`.
pub fn take<R>(take: impl FnOnce(&Cluster, usize) -> R) -> Option<R> {
    SLOT.with(|s| {
        let p = s.take()?;
        // SAFETY: a choice waits only while its cluster lives (`pin`'s contract), and this
        // runs on the thread that pinned it (a thread-local).
        Some(take(unsafe { &*p.cluster }, p.index))
    })
}

/// The waiting choice's owner and host index, without taking it (tests).
#[cfg(test)]
pub fn waiting() -> Option<(u64, usize)> {
    SLOT.with(|s| s.get().map(|p| (p.owner, p.index)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mosn_extension::Engine;

    fn engine() -> std::sync::Arc<Engine> {
        crate::testing::engine(false).0
    }

    #[test]
    fn a_choice_is_taken_once() {
        let e = engine();
        let a = e.cluster("a").unwrap();
        // SAFETY: `e` keeps `a` alive past every use of the slot in this test.
        unsafe { pin(7, a, 2) };
        assert_eq!(waiting(), Some((7, 2)));
        assert_eq!(take(|c, i| (c.name.to_string(), i)), Some(("a".to_string(), 2)));
        assert_eq!(take(|_, i| i), None, "taken once");
    }

    #[test]
    fn only_the_owner_unpins_and_clear_clears_any() {
        let e = engine();
        let a = e.cluster("a").unwrap();
        // SAFETY: as above.
        unsafe { pin(7, a, 0) };
        unpin(8);
        assert_eq!(waiting(), Some((7, 0)));
        unpin(7);
        assert_eq!(waiting(), None);
        // SAFETY: as above.
        unsafe { pin(7, a, 1) };
        clear();
        assert_eq!(take(|_, i| i), None);
    }

    #[test]
    fn a_choice_is_the_pinning_threads_own() {
        let e = engine();
        // SAFETY: as above; cleared before `e` drops.
        unsafe { pin(7, e.cluster("a").unwrap(), 0) };
        assert_eq!(std::thread::spawn(|| take(|_, i| i)).join().unwrap(), None);
        assert_eq!(waiting(), Some((7, 0)));
        clear();
    }
}
