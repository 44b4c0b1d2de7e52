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
//!   the host. About 160 instructions.
//!
//! The slot is sound only because nothing runs on the thread between the two: when the
//! router follows, Envoy calls the router's `decodeHeaders` as soon as the filter's hook
//! returns (or inside `continue_decoding`), and the router chooses the host there,
//! synchronously, before it returns. A filter in between that holds the headers (an
//! authorization call, say) would let other requests run first, one of which could take
//! the slot; that is why the filter uses the slot only when its config says the router
//! follows, and the override host otherwise.
//!
//! Belt and braces: the LB takes the slot only for a request (a context), and only if the
//! choice is of its own cluster; the filter clears a choice the LB did not take at its next
//! hook (the router answered locally before asking, e.g.) and when it ends, so a choice
//! never outlives its stream; a request whose host comes from the LB otherwise clears the
//! slot before it goes on.

use mosn_extension::upstream::Cluster;
use std::cell::Cell;

/// A core host choice waiting for the LB.
#[derive(Clone, Copy)]
struct Pinned {
    /// The id of the stream that chose (`HttpFilter::id`).
    owner: u64,
    cluster: *const Cluster,
    index: usize,
    address: (*const u8, usize),
}

thread_local! {
    static SLOT: Cell<Option<Pinned>> = const { Cell::new(None) };
}

/// The filter's side: leaves `owner`'s choice (core host `index` of `cluster`, at `address`)
/// for the LB.
///
/// The caller must [`unpin`] it before the stream (which keeps `cluster` and `address`
/// alive) is dropped, unless the LB took it.
pub fn pin(owner: u64, cluster: &Cluster, index: usize, address: &str) {
    SLOT.with(|s| s.set(Some(Pinned { owner, cluster, index, address: (address.as_ptr(), address.len()) })));
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

/// The LB's side: if a choice waits and `take` accepts it (`take(cluster, index, address)`
/// returns `Some`), it is taken (cleared) and `take`'s answer returned; otherwise it stays.
pub fn take<R>(take: impl FnOnce(&Cluster, usize, &str) -> Option<R>) -> Option<R> {
    SLOT.with(|s| {
        let p = s.get()?;
        // SAFETY: a choice waits only while its stream lives (`pin`'s contract: the filter
        // unpins before the stream drops), and the stream keeps its cluster and the host's
        // address text alive; this runs on the thread that pinned it (a thread-local).
        let (cluster, address) =
            unsafe { (&*p.cluster, std::str::from_utf8_unchecked(std::slice::from_raw_parts(p.address.0, p.address.1))) };
        let r = take(cluster, p.index, address)?;
        s.set(None);
        Some(r)
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
    fn a_choice_is_taken_once_and_only_when_accepted() {
        let e = engine();
        let a = e.cluster("a").unwrap();
        pin(7, a, 2, "127.0.0.1:13");
        assert_eq!(take(|_, _, _| None::<()>), None, "refused: stays");
        let got = take(|c, i, addr| Some((c.name.to_string(), i, addr.to_string())));
        assert_eq!(got, Some(("a".to_string(), 2, "127.0.0.1:13".to_string())));
        assert_eq!(take(|_, i, _| Some(i)), None, "taken once");
    }

    #[test]
    fn only_the_owner_unpins_and_clear_clears_any() {
        let e = engine();
        let a = e.cluster("a").unwrap();
        pin(7, a, 0, "127.0.0.1:11");
        unpin(8);
        assert_eq!(take(|_, i, _| Some(i)), Some(0));
        pin(7, a, 1, "127.0.0.1:12");
        unpin(7);
        assert_eq!(take(|_, i, _| Some(i)), None);
        pin(7, a, 1, "127.0.0.1:12");
        clear();
        assert_eq!(take(|_, i, _| Some(i)), None);
    }

    #[test]
    fn other_threads_never_see_a_choice() {
        let e = engine();
        pin(7, e.cluster("a").unwrap(), 0, "127.0.0.1:11");
        assert_eq!(std::thread::spawn(|| take(|_, i, _| Some(i))).join().unwrap(), None);
        clear();
    }
}
