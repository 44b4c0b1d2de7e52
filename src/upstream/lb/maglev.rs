//! `LB_MAGLEV`: MOSN's consistent hashing (Google's Maglev): the route's `hash_policy`
//! value picks a slot of a lookup table, the slot names a host; when that host cannot
//! be used, the next healthy host after it.

use super::{scan_from, LoadBalancer, Member, Pick};
use crate::upstream::hash::mix;

/// Slots per host the table aims at (the Maglev paper: about 1 % imbalance at 100).
const SLOTS_PER_MEMBER: u64 = 100;
/// Smallest table, a prime: 100 slots a host keep the shares within about 1 % (Envoy and
/// MOSN use 65,537 at least; a subset of a few hosts would then cost 256 KiB each).
const MIN_TABLE: u64 = 1_031;
/// Largest table aimed at (16 MiB of slots); beyond 41,943 hosts, fewer slots per host.
const MAX_TABLE: u64 = 1 << 22;

/// The lookup table, built once when the config loads: each member walks its own
/// permutation of the slots (offset and step from two mixes of its address hash) and takes
/// the next free slot on its turn, until the table is full; with unequal weights a member
/// takes turns in proportion to its weight (as Envoy's weighted Maglev), so it owns that
/// share of the slots. Turns go in order of address hash, so the order of hosts in the
/// config does not matter, and every worker, thread or process, builds the same table.
///
/// Table size: the smallest prime ≥ max(1,031, 100 × hosts), capped near 4,194,304
/// (and always more than the host count): 4 bytes a slot, so 4 KiB for a few hosts,
/// about 4 MB at 10,000. MOSN uses 65,537 slots below 30,000 hosts (which balances poorly
/// past a few hundred hosts), 655,373 from there, and ignores weights. Building costs
/// O(M log M); a pick is one lookup, O(1).
///
/// A pick without a hash value (a route without `hash_policy`) uses a random one: any
/// host (MOSN picks none).
#[derive(Debug)]
pub struct Maglev {
    table: Box<[u32]>,
    n: usize,
}

/// One member's walk through the table while it is built.
struct Walk {
    member: u32,
    weight: u64,
    /// Turn credit: the member takes a turn in round `r` when `r × weight ≥ due`.
    due: u64,
    /// Its next slot to try, and its step (≥ 1, < M: M is prime, so the walk visits every slot).
    at: u64,
    step: u64,
}

// === impl Maglev ===

impl Maglev {
    pub fn new(members: &[Member]) -> Maglev {
        Maglev { table: table(members, table_size(members.len())), n: members.len() }
    }

    /// The member owning `hash`'s slot.
    fn owner(&self, hash: u64) -> usize {
        self.table[(hash % self.table.len() as u64) as usize] as usize
    }
}

impl LoadBalancer for Maglev {
    fn select(&self, pick: &Pick, accept: &mut dyn FnMut(usize) -> bool) -> Option<usize> {
        if self.n == 0 {
            return None;
        }
        let hash = pick.hash.unwrap_or_else(|| fastrand::u64(..));
        scan_from(self.owner(hash), self.n, accept)
    }
}

/// The smallest prime ≥ the size aimed at for `n` members, and > n.
fn table_size(n: usize) -> u64 {
    let aim = (n as u64).saturating_mul(SLOTS_PER_MEMBER).clamp(MIN_TABLE, MAX_TABLE).max(n as u64 + 1);
    (aim..).find(|&m| is_prime(m)).expect("a prime above any u64 host count")
}

fn is_prime(m: u64) -> bool {
    m >= 2 && (2..).take_while(|d| d * d <= m).all(|d| m % d != 0)
}

/// Fills a table of `size` slots (prime, > members) with member indexes.
fn table(members: &[Member], size: u64) -> Box<[u32]> {
    if members.is_empty() {
        return Box::new([]);
    }
    let mut walks: Vec<Walk> = members
        .iter()
        .enumerate()
        .map(|(i, m)| Walk {
            member: i as u32,
            weight: u64::from(m.weight.max(1)),
            due: 0,
            at: mix(m.key) % size,
            step: mix(m.key ^ 0x9e37_79b9_7f4a_7c15) % (size - 1) + 1,
        })
        .collect();
    walks.sort_by_key(|w| (members[w.member as usize].key, w.member));
    let max_weight = walks.iter().map(|w| w.weight).max().unwrap_or(1);
    const FREE: u32 = u32::MAX;
    let mut table = vec![FREE; size as usize];
    let mut filled = 0;
    for round in 0.. {
        for w in walks.iter_mut().filter(|w| round * w.weight >= w.due) {
            w.due += max_weight;
            while table[w.at as usize] != FREE {
                w.at = (w.at + w.step) % size;
            }
            table[w.at as usize] = w.member;
            filled += 1;
            if filled == size {
                return table.into_boxed_slice();
            }
        }
    }
    unreachable!("every round fills at least one slot")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::lb::tests::members;

    fn built(weights: &[u32]) -> (Maglev, Vec<Member>) {
        let (m, state, layout) = members(weights);
        state.allocate_for(&layout);
        (Maglev::new(&m), m)
    }

    fn owner_key(lb: &Maglev, m: &[Member], hash: u64) -> u64 {
        m[lb.select(&Pick { hash: Some(hash), attempt: 1 }, &mut |_| true).unwrap()].key
    }

    #[test]
    fn the_same_hash_picks_the_same_member_in_separately_built_tables() {
        fastrand::seed(41);
        let (a, ma) = built(&[1, 2, 3, 4, 5]);
        let (b, mb) = built(&[1, 2, 3, 4, 5]);
        assert_eq!(a.table, b.table);
        // Listing the hosts in another order changes no host's keys.
        let mut reversed = mb.clone();
        reversed.reverse();
        let c = Maglev::new(&reversed);
        for _ in 0..10_000 {
            let h = fastrand::u64(..);
            assert_eq!(owner_key(&a, &ma, h), owner_key(&c, &reversed, h));
        }
    }

    #[test]
    fn hashes_spread_by_weight_within_ten_percent() {
        fastrand::seed(42);
        for weights in [vec![1; 10], vec![1, 2, 3, 4], vec![128, 1, 7, 64, 20]] {
            let (lb, _m) = built(&weights);
            let mut got = vec![0u64; weights.len()];
            let n = 100_000;
            for _ in 0..n {
                got[lb.select(&Pick { hash: Some(fastrand::u64(..)), attempt: 1 }, &mut |_| true).unwrap()] += 1;
            }
            let total: u32 = weights.iter().sum();
            for (c, w) in got.iter().zip(&weights) {
                let want = n as f64 * f64::from(*w) / f64::from(total);
                assert!((*c as f64 - want).abs() <= 0.1 * want, "weights {weights:?}: {got:?}");
            }
        }
    }

    #[test]
    fn removing_one_of_ten_members_moves_little_more_than_its_keys() {
        fastrand::seed(43);
        let (all, m) = built(&[1; 10]);
        let removed = m[4].key;
        let rest: Vec<Member> = m.iter().filter(|x| x.key != removed).cloned().collect();
        let fewer = Maglev::new(&rest);
        let n = 100_000;
        let (mut moved, mut others_moved) = (0, 0);
        for _ in 0..n {
            let h = fastrand::u64(..);
            let (before, after) = (owner_key(&all, &m, h), owner_key(&fewer, &rest, h));
            if before != after {
                moved += 1;
                others_moved += usize::from(before != removed);
            }
        }
        let (moved, others_moved) = (moved as f64 / n as f64, others_moved as f64 / n as f64);
        assert!(moved <= 0.1 + 0.05, "moved {moved}");
        assert!(others_moved <= 0.05, "keys of remaining members moved: {others_moved}");
    }

    #[test]
    fn an_unaccepted_members_keys_go_elsewhere_and_no_other_key_moves() {
        fastrand::seed(44);
        let (lb, _m) = built(&[1, 1, 1, 1, 1]);
        for _ in 0..20_000 {
            let pick = Pick { hash: Some(fastrand::u64(..)), attempt: 1 };
            let healthy = lb.select(&pick, &mut |_| true).unwrap();
            let without_2 = lb.select(&pick, &mut |i| i != 2).unwrap();
            if healthy == 2 {
                assert_eq!(without_2, 3, "the next member after the owner");
            } else {
                assert_eq!(without_2, healthy);
            }
        }
    }

    #[test]
    fn table_sizes_are_primes_above_the_host_count() {
        assert_eq!(table_size(0), 1_031);
        assert_eq!(table_size(10), 1_031);
        assert_eq!(table_size(655), (65_500..).find(|&m| is_prime(m)).unwrap());
        assert_eq!(table_size(10_000), 1_000_003);
        assert_eq!(table_size(1_000_000), 4_194_319);
        for n in [1, 700, 50_000] {
            let m = table_size(n);
            assert!(is_prime(m) && m > n as u64 && m >= 100 * n.min(41_943) as u64);
        }
    }

    #[test]
    fn without_a_hash_picks_are_random() {
        fastrand::seed(45);
        let (lb, _m) = built(&[1, 1]);
        let first = (0..10_000).filter(|_| lb.select(&Pick::default(), &mut |_| true) == Some(0)).count();
        assert!((first as f64 / 10_000.0 - 0.5).abs() < 0.03, "{first}");
    }
}
