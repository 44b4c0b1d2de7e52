//! Host selection helpers shared by the load balancers.

/// The hosts a request has already tried: a bitmask for the first 128 host indexes
/// (no allocation), a list beyond that.
#[derive(Debug, Default, Clone)]
pub struct TriedHosts {
    bits: u128,
    more: Vec<usize>,
}

impl TriedHosts {
    pub fn insert(&mut self, i: usize) {
        if i < 128 {
            self.bits |= 1 << i;
        } else if !self.more.contains(&i) {
            self.more.push(i);
        }
    }
    pub fn contains(&self, i: usize) -> bool {
        if i < 128 {
            self.bits & (1 << i) != 0
        } else {
            self.more.contains(&i)
        }
    }
    pub fn is_empty(&self) -> bool {
        self.bits == 0 && self.more.is_empty()
    }
    pub fn clear(&mut self) {
        self.bits = 0;
        self.more.clear();
    }
}

/// Scans `n` hosts from `start`: the first healthy untried one, else the first healthy one.
pub(crate) fn first_usable(n: usize, start: usize, healthy: impl Fn(usize) -> bool, tried: &TriedHosts) -> Option<usize> {
    let mut fallback = None;
    for k in 0..n {
        let i = (start + k) % n;
        if !healthy(i) {
            continue;
        }
        if !tried.contains(i) {
            return Some(i);
        }
        fallback.get_or_insert(i);
    }
    fallback
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_returns_a_tried_host_while_another_healthy_one_exists() {
        // Exhaustive over small clusters: every health pattern, tried set and start.
        for n in 1..=6usize {
            for health in 0..(1u32 << n) {
                for tried_bits in 0..(1u32 << n) {
                    let mut tried = TriedHosts::default();
                    (0..n).filter(|i| tried_bits & (1 << i) != 0).for_each(|i| tried.insert(i));
                    for start in 0..n {
                        let got = first_usable(n, start, |i| health & (1 << i) != 0, &tried);
                        let untried_healthy = (0..n).any(|i| health & (1 << i) != 0 && !tried.contains(i));
                        match got {
                            None => assert_eq!(health, 0),
                            Some(i) => {
                                assert!(health & (1 << i) != 0, "picked an unhealthy host");
                                if untried_healthy {
                                    assert!(!tried.contains(i), "picked a tried host while another was available");
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn tried_hosts_beyond_the_bitmask() {
        let mut t = TriedHosts::default();
        t.insert(3);
        t.insert(200);
        assert!(t.contains(3) && t.contains(200) && !t.contains(4) && !t.contains(201));
    }
}
