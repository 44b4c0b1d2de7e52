//! A virtual host's routes in config order, with runs of simple routes indexed.
//!
//! MOSN tries routes one by one; the first match wins. Two kinds of consecutive runs are
//! looked up instead of scanned:
//! - routes that test only a prefix: one hash lookup per distinct prefix length; the first
//!   match within the run is the lowest route index among the prefixes of the path;
//! - routes that test only one header for an exact value (any path), all the same header:
//!   one lookup of that header, then its value hashed (long runs) or compared with each
//!   route's in turn (from two routes on: MOSN's unit routing is such a run of three).
//!
//! Other routes keep MOSN's one-by-one order around such runs, so the answer is always the
//! first match in config order.

use super::matcher::RouteMatcher;
use crate::headers::SharedStr;
use crate::variable::RequestVars;
use std::collections::HashMap;

/// Runs shorter than this stay one by one (a lookup costs about as much as a few compares).
const MIN_INDEXED_RUN: usize = 8;

#[derive(Debug)]
enum Entry {
    /// One route, tested as MOSN does.
    Route(usize),
    /// A run of plain prefix routes: prefix → the first route (lowest index) with it.
    Prefixes { first: HashMap<Box<[u8]>, usize>, lengths: Vec<usize> },
    /// A run of routes on one header's exact value: value → the first route with it.
    HeaderValues { header: SharedStr, first: HashMap<Box<[u8]>, usize> },
    /// A short such run: each route's value and index, in config order.
    HeaderList { header: SharedStr, values: Vec<(Box<[u8]>, usize)> },
}

/// The routes of one virtual host, ready to find the first match.
#[derive(Debug, Default)]
pub struct RouteTable {
    entries: Vec<Entry>,
}

impl RouteTable {
    /// Indexes `matchers` (in config order).
    pub fn new(matchers: &[&RouteMatcher]) -> RouteTable {
        let mut entries = Vec::new();
        let mut i = 0;
        while i < matchers.len() {
            if let Some((header, _)) = matchers[i].pure_header() {
                let same = |j: usize| matchers[j].pure_header().is_some_and(|(h, _)| h == header);
                let run_end = (i..matchers.len()).find(|&j| !same(j)).unwrap_or(matchers.len());
                if run_end - i >= 2 {
                    let header = header.clone();
                    let run = matchers[i..run_end].iter().zip(i..).map(|(m, j)| (m.pure_header().map_or("", |(_, v)| v).as_bytes(), j));
                    if run_end - i >= MIN_INDEXED_RUN {
                        let mut first: HashMap<Box<[u8]>, usize> = HashMap::new();
                        for (value, j) in run {
                            first.entry(value.into()).or_insert(j);
                        }
                        entries.push(Entry::HeaderValues { header, first });
                    } else {
                        entries.push(Entry::HeaderList { header, values: run.map(|(v, j)| (v.into(), j)).collect() });
                    }
                    i = run_end;
                    continue;
                }
            }
            let run_end = (i..matchers.len()).find(|&j| matchers[j].pure_prefix().is_none()).unwrap_or(matchers.len());
            if run_end - i >= MIN_INDEXED_RUN {
                let mut first: HashMap<Box<[u8]>, usize> = HashMap::new();
                for (j, m) in matchers.iter().enumerate().take(run_end).skip(i) {
                    let p = m.pure_prefix().unwrap_or_default().as_bytes();
                    first.entry(p.into()).or_insert(j);
                }
                let mut lengths: Vec<usize> = first.keys().map(|k| k.len()).collect();
                lengths.sort_unstable();
                lengths.dedup();
                entries.push(Entry::Prefixes { first, lengths });
                i = run_end;
            } else {
                entries.push(Entry::Route(i));
                i += 1;
            }
        }
        RouteTable { entries }
    }

    /// The index of the first route matching the request, in config order.
    pub fn find(&self, matchers: &[RouteMatcher], vars: &RequestVars<'_>) -> Option<usize> {
        self.entries.iter().find_map(|e| match e {
            Entry::Route(i) => matchers[*i].matches(vars).then_some(*i),
            Entry::Prefixes { first, lengths } => {
                lengths.iter().take_while(|&&l| l <= vars.path.len()).filter_map(|&l| first.get(&vars.path[..l]).copied()).min()
            }
            // The header matcher looks at the first value, as here.
            Entry::HeaderValues { header, first } => vars.headers.get(header).first().and_then(|v| first.get(v).copied()),
            Entry::HeaderList { header, values } => {
                let v = vars.headers.get(header).first()?;
                values.iter().find(|(want, _)| **want == *v).map(|(_, i)| *i)
            }
        })
    }
}
