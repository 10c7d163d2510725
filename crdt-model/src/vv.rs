//! Version vectors — how far a replica holds each origin's feed — and delta planning:
//! given two vectors, which ranges of which feeds one side lacks.

use crate::ids::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionVector(BTreeMap<NodeId, u64>);

/// Entries `from..=to` of `origin`'s feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FeedRange {
    pub origin: NodeId,
    pub from: u64,
    pub to: u64,
}

impl FeedRange {
    pub fn len(&self) -> u64 {
        self.to + 1 - self.from
    }

    pub fn is_empty(&self) -> bool {
        self.to < self.from
    }
}

impl VersionVector {
    pub fn new() -> VersionVector {
        VersionVector::default()
    }

    /// The highest sequence held of `origin`'s feed (0 for none).
    pub fn get(&self, origin: &NodeId) -> u64 {
        self.0.get(origin).copied().unwrap_or(0)
    }

    /// Records that the feed of `origin` is held up to `seq`; never moves backwards.
    pub fn advance(&mut self, origin: NodeId, seq: u64) {
        let cur = self.0.entry(origin).or_insert(0);
        *cur = (*cur).max(seq);
    }

    pub fn iter(&self) -> impl Iterator<Item = (&NodeId, &u64)> {
        self.0.iter()
    }

    /// Total entries this vector covers.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// The ranges `other` holds and `self` lacks, in origin order.
    pub fn lacks(&self, other: &VersionVector) -> Vec<FeedRange> {
        other
            .0
            .iter()
            .filter_map(|(origin, &theirs)| {
                let ours = self.get(origin);
                (theirs > ours).then_some(FeedRange {
                    origin: *origin,
                    from: ours + 1,
                    to: theirs,
                })
            })
            .collect()
    }

    /// True if this vector has everything `other` has.
    pub fn dominates(&self, other: &VersionVector) -> bool {
        self.lacks(other).is_empty()
    }

    pub fn merge(&mut self, other: &VersionVector) {
        for (o, s) in &other.0 {
            self.advance(*o, *s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vv(pairs: &[(u8, u64)]) -> VersionVector {
        let mut v = VersionVector::new();
        for (o, s) in pairs {
            v.advance(NodeId([*o; 32]), *s);
        }
        v
    }

    #[test]
    fn lacks_lists_exactly_the_missing_suffixes() {
        let a = vv(&[(1, 5), (2, 3)]);
        let b = vv(&[(1, 2), (2, 7), (3, 1)]);
        assert_eq!(
            a.lacks(&b),
            vec![
                FeedRange {
                    origin: NodeId([2; 32]),
                    from: 4,
                    to: 7
                },
                FeedRange {
                    origin: NodeId([3; 32]),
                    from: 1,
                    to: 1
                }
            ]
        );
        assert_eq!(
            b.lacks(&a),
            vec![FeedRange {
                origin: NodeId([1; 32]),
                from: 3,
                to: 5
            }]
        );
    }

    proptest! {
        #[test]
        fn filling_what_each_side_lacks_makes_both_equal(
            a in proptest::collection::btree_map(0u8..6, 0u64..50, 0..6),
            b in proptest::collection::btree_map(0u8..6, 0u64..50, 0..6),
        ) {
            let a = vv(&a.into_iter().collect::<Vec<_>>());
            let b = vv(&b.into_iter().collect::<Vec<_>>());
            let (mut a2, mut b2) = (a.clone(), b.clone());
            for r in a.lacks(&b) { a2.advance(r.origin, r.to); }
            for r in b.lacks(&a) { b2.advance(r.origin, r.to); }
            prop_assert!(a2.dominates(&b2) && b2.dominates(&a2));
            let mut m = a.clone();
            m.merge(&b);
            prop_assert!(m.dominates(&a2) && a2.dominates(&m));
        }
    }
}
