//! `LB_REQUEST_ROUNDROBIN`: round robin over one request's attempts: MOSN sends the first
//! attempt to the first host and each retry to the next one.

use super::{scan_from, LoadBalancer, Member, Pick};

/// No state: attempt `a` starts at member `(a − 1) mod n` (attempt 0 counts as 1), and
/// takes the next acceptable member from there. Every request's first attempt goes to the
/// first healthy host, as in MOSN.
#[derive(Debug)]
pub struct RequestRoundRobin {
    n: usize,
}

impl RequestRoundRobin {
    pub fn new(members: &[Member]) -> RequestRoundRobin {
        RequestRoundRobin { n: members.len() }
    }
}

impl LoadBalancer for RequestRoundRobin {
    fn select(&self, pick: &Pick, accept: &mut dyn FnMut(usize) -> bool) -> Option<usize> {
        if self.n == 0 {
            return None;
        }
        let start = (pick.attempt.max(1) - 1) as usize % self.n;
        scan_from(start, self.n, accept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::lb::tests::members;

    fn at(lb: &RequestRoundRobin, attempt: u32, accept: impl Fn(usize) -> bool) -> Option<usize> {
        lb.select(&Pick { hash: None, attempt }, &mut |i| accept(i))
    }

    #[test]
    fn each_attempt_starts_one_member_further() {
        let (m, state, layout) = members(&[1, 1, 1]);
        state.allocate_for(&layout);
        let lb = RequestRoundRobin::new(&m);
        let got: Vec<_> = [0, 1, 2, 3, 4].into_iter().map(|a| at(&lb, a, |_| true)).collect();
        assert_eq!(got, [Some(0), Some(0), Some(1), Some(2), Some(0)]);
    }

    #[test]
    fn unaccepted_members_are_skipped() {
        let (m, state, layout) = members(&[1, 1, 1]);
        state.allocate_for(&layout);
        let lb = RequestRoundRobin::new(&m);
        assert_eq!(at(&lb, 1, |i| i != 0), Some(1));
        assert_eq!(at(&lb, 3, |i| i != 2), Some(0));
        assert_eq!(at(&lb, 2, |_| false), None);
    }
}
