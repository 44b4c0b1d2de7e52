//! Things in flight (a cluster's requests, a host's attempts), counted as started and ended:
//! in flight is the difference (see [`super::word::try_start`]).
//!
//! With a limit, the two counts are shared words: checking the limit and counting is one
//! atomic step every worker takes on the same word. Without one they only count, so they are
//! counters in the state block's rows (`upstream::rows`): each thread adds to its own row
//! without a locked instruction, and readers sum the rows. A balancer that reads a host's
//! load on every pick (least request, least connection, peak EWMA) keeps the shared words,
//! which it reads in two loads instead of a sum over every row.

use super::state::StateBlock;
use std::sync::atomic::Ordering;

/// Where a started/ended pair lives in a [`StateBlock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InFlight {
    /// Shared words `started` and `started + 1` (ended).
    Shared { started: usize },
    /// Counters `started` and `started + 1` (ended) in every row.
    Rows { started: usize },
}

// === impl InFlight ===

impl InFlight {
    /// Two words of `layout`: shared ones when `limited` (or read on every pick), else in rows.
    pub(crate) fn take(layout: &mut super::state::Layout, shared: bool) -> InFlight {
        if shared {
            InFlight::Shared { started: layout.take(2) }
        } else {
            InFlight::Rows { started: layout.take_rows(2) }
        }
    }

    /// Starts one unless `max` (0: no limit) are in flight; counts it. A limit on counts in
    /// rows is a bug in the caller (they were taken for no limit): refused, never exceeded.
    #[inline]
    pub(crate) fn try_start(self, state: &StateBlock, max: u64) -> bool {
        match self {
            InFlight::Shared { started } => super::word::try_start(state.word(started), state.word(started + 1), max),
            InFlight::Rows { started } => {
                debug_assert_eq!(max, 0, "a limit on counts kept in rows");
                if max != 0 {
                    return false;
                }
                state.count(started, 1);
                true
            }
        }
    }

    /// Ends one [`InFlight::try_start`] started (exactly once each).
    #[inline]
    pub(crate) fn end(self, state: &StateBlock) {
        match self {
            InFlight::Shared { started } => super::word::end(state.word(started + 1)),
            InFlight::Rows { started } => state.count(started + 1, 1),
        }
    }

    /// Started so far (all workers).
    pub(crate) fn started(self, state: &StateBlock) -> u64 {
        match self {
            InFlight::Shared { started } => state.word(started).load(Ordering::Relaxed),
            InFlight::Rows { started } => state.row_sum(started),
        }
    }

    /// In flight now (all workers). The ended ones are read first: each count only grows,
    /// so the difference never wraps.
    pub(crate) fn active(self, state: &StateBlock) -> u64 {
        match self {
            InFlight::Shared { started } => super::word::in_flight(state.word(started), state.word(started + 1)),
            InFlight::Rows { started } => {
                let ended = state.row_sum(started + 1);
                state.row_sum(started).saturating_sub(ended)
            }
        }
    }

    /// Takes over `old`'s total (the same thing in the config a reload replaces), with
    /// nothing in flight: those end on the old config. Only before any stream runs on `state`.
    pub(crate) fn inherit(self, state: &StateBlock, old: InFlight, old_state: &StateBlock) {
        let total = old.started(old_state);
        match self {
            InFlight::Shared { started } => {
                state.word(started).store(total, Ordering::Relaxed);
                state.word(started + 1).store(total, Ordering::Relaxed);
            }
            InFlight::Rows { started } => {
                state.row_set(started, total);
                state.row_set(started + 1, total);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::state::Layout;
    use std::sync::Arc;

    fn both() -> (Arc<StateBlock>, InFlight, InFlight) {
        let state = Arc::new(StateBlock::unallocated());
        let mut layout = Layout::default();
        let (shared, rows) = (InFlight::take(&mut layout, true), InFlight::take(&mut layout, false));
        state.allocate_for(&layout);
        (state, shared, rows)
    }

    /// Both kinds count alike across threads, also when an end is counted on another thread
    /// than its start (a stream handed between threads).
    #[test]
    fn rows_and_shared_words_count_alike_across_threads() {
        let (state, shared, rows) = both();
        let workers: Vec<_> = (0..4)
            .map(|t| {
                let state = state.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        assert!(shared.try_start(&state, 0) && rows.try_start(&state, 0));
                    }
                    // Half the threads end more than they started, the others fewer.
                    let ends = if t % 2 == 0 { 1200 } else { 700 };
                    for _ in 0..ends {
                        shared.end(&state);
                        rows.end(&state);
                    }
                })
            })
            .collect();
        workers.into_iter().for_each(|w| w.join().unwrap());
        for p in [shared, rows] {
            assert_eq!((p.started(&state), p.active(&state)), (4000, 4000 - 2 * 1200 - 2 * 700), "{p:?}");
        }
    }

    #[test]
    fn a_limit_holds_on_shared_words() {
        let (state, shared, _) = both();
        assert!(shared.try_start(&state, 2) && shared.try_start(&state, 2));
        assert!(!shared.try_start(&state, 2), "the third is over the limit");
        shared.end(&state);
        assert!(shared.try_start(&state, 2));
    }

    #[test]
    fn inherit_keeps_the_total_with_nothing_in_flight_between_kinds() {
        let (old_state, old_shared, old_rows) = both();
        for _ in 0..5 {
            old_shared.try_start(&old_state, 0);
            old_rows.try_start(&old_state, 0);
        }
        old_rows.end(&old_state);
        let (state, shared, rows) = both();
        shared.inherit(&state, old_rows, &old_state); // a reload that changed the kind
        rows.inherit(&state, old_shared, &old_state);
        for p in [shared, rows] {
            assert_eq!((p.started(&state), p.active(&state)), (5, 0), "{p:?}");
        }
        assert!(rows.try_start(&state, 0));
        assert_eq!((rows.started(&state), rows.active(&state)), (6, 1));
    }
}
