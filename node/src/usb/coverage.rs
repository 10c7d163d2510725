//! What a stick actually holds, worked out from its readable segments rather than from
//! its manifest, and what to write to it: pure functions, no disk.
//!
//! A stick may hold a feed with holes (a segment deleted, damaged or never finished), so
//! its holdings are a set of ranges per origin, not a version vector. Its version vector
//! is the contiguous prefix of each feed; what it lacks of a node is every hole below
//! the node's head, so the next node that has the data fills it: the stick heals itself.

use cardmesh_model::{FeedRange, NodeId, VersionVector};
use std::collections::BTreeMap;

/// The ranges of each origin's feed that readable segments on a stick hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Coverage(BTreeMap<NodeId, Vec<(u64, u64)>>);

impl Coverage {
    pub fn new() -> Coverage {
        Coverage::default()
    }

    /// Records that the stick holds `range`; overlapping and touching ranges merge.
    pub fn add(&mut self, range: FeedRange) {
        if range.is_empty() {
            return;
        }
        let spans = self.0.entry(range.origin).or_default();
        spans.push((range.from, range.to));
        spans.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(spans.len());
        for &(from, to) in spans.iter() {
            match merged.last_mut() {
                Some(last) if from <= last.1.saturating_add(1) => last.1 = last.1.max(to),
                _ => merged.push((from, to)),
            }
        }
        *spans = merged;
    }

    /// True if every entry of `range` is already held.
    pub fn contains(&self, range: &FeedRange) -> bool {
        self.0.get(&range.origin).is_some_and(|spans| {
            spans
                .iter()
                .any(|&(from, to)| from <= range.from && range.to <= to)
        })
    }

    /// The stick's version vector: how far each feed is held without a hole.
    pub fn version_vector(&self) -> VersionVector {
        let mut vv = VersionVector::new();
        for (origin, spans) in &self.0 {
            if let Some(&(1, to)) = spans.first() {
                vv.advance(*origin, to);
            }
        }
        vv
    }

    /// Entries held in all.
    pub fn total(&self) -> u64 {
        self.0
            .values()
            .flatten()
            .map(|(from, to)| to - from + 1)
            .sum()
    }

    /// What a stick with this coverage lacks of a node holding `node`: every hole below
    /// each of the node's heads, HQ's feed first (it carries the enrollments that let the
    /// rest verify), then by origin, each feed in order.
    pub fn lacks(&self, node: &VersionVector, hq: NodeId) -> Vec<FeedRange> {
        let mut origins: Vec<(&NodeId, u64)> = node.iter().map(|(o, s)| (o, *s)).collect();
        origins.sort_by_key(|(o, _)| (**o != hq, **o));
        let mut out = Vec::new();
        for (origin, head) in origins {
            let mut next = 1;
            for &(from, to) in self.0.get(origin).map_or(&[][..], Vec::as_slice) {
                if next > head {
                    break;
                }
                if from > next {
                    out.push(FeedRange {
                        origin: *origin,
                        from: next,
                        to: (from - 1).min(head),
                    });
                }
                next = next.max(to.saturating_add(1));
            }
            if next <= head {
                out.push(FeedRange {
                    origin: *origin,
                    from: next,
                    to: head,
                });
            }
        }
        out
    }
}

/// Total entries in a list of ranges.
pub fn entries_in(ranges: &[FeedRange]) -> u64 {
    ranges.iter().map(FeedRange::len).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(o: u8, from: u64, to: u64) -> FeedRange {
        FeedRange {
            origin: NodeId([o; 32]),
            from,
            to,
        }
    }

    fn vv(pairs: &[(u8, u64)]) -> VersionVector {
        let mut v = VersionVector::new();
        for (o, s) in pairs {
            v.advance(NodeId([*o; 32]), *s);
        }
        v
    }

    #[test]
    fn a_hole_stops_the_vector_and_is_what_the_stick_lacks() {
        let mut c = Coverage::new();
        c.add(r(1, 1, 10));
        c.add(r(1, 21, 30));
        c.add(r(2, 5, 9));
        assert_eq!(c.version_vector(), vv(&[(1, 10)]));
        assert!(c.contains(&r(1, 3, 7)) && !c.contains(&r(1, 9, 22)));
        assert_eq!(c.total(), 25);
        let hq = NodeId([3; 32]);
        assert_eq!(
            c.lacks(&vv(&[(1, 40), (2, 7), (3, 2)]), hq),
            vec![r(3, 1, 2), r(1, 11, 20), r(1, 31, 40), r(2, 1, 4)]
        );
        // A node behind the stick has nothing to give.
        assert_eq!(c.lacks(&vv(&[(1, 10), (2, 3)]), hq), vec![r(2, 1, 3)]);
    }

    #[test]
    fn overlapping_and_touching_ranges_merge() {
        let mut c = Coverage::new();
        c.add(r(1, 5, 8));
        c.add(r(1, 1, 4));
        c.add(r(1, 3, 6));
        c.add(r(1, 9, 9));
        assert_eq!(c.version_vector(), vv(&[(1, 9)]));
        assert_eq!(c.total(), 9);
    }

    proptest! {
        #[test]
        fn writing_what_the_stick_lacks_fills_it_to_the_node(
            held in proptest::collection::vec((0u8..3, 1u64..60, 0u64..20), 0..12),
            node in proptest::collection::btree_map(0u8..3, 0u64..80, 0..3),
        ) {
            let mut c = Coverage::new();
            for (o, from, len) in held {
                c.add(r(o, from, from + len));
            }
            let node = vv(&node.into_iter().collect::<Vec<_>>());
            let lacks = c.lacks(&node, NodeId([0; 32]));
            for range in &lacks {
                prop_assert!(!range.is_empty() && range.to <= node.get(&range.origin));
                for seq in range.from..=range.to {
                    let one = FeedRange { from: seq, to: seq, ..*range };
                    prop_assert!(!c.contains(&one));
                }
            }
            let before = c.total();
            for range in &lacks {
                c.add(*range);
            }
            prop_assert_eq!(c.total(), before + entries_in(&lacks));
            prop_assert!(c.version_vector().dominates(&node));
            prop_assert!(c.lacks(&node, NodeId([0; 32])).is_empty());
        }
    }
}
