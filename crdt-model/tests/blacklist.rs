//! Block wins: a lost card is never unblocked by a clear that had not seen the block.

mod common;

use cardmesh_model::*;
use common::*;
use proptest::prelude::*;

#[test]
fn a_clear_that_followed_the_block_unblocks_everywhere() {
    let net = Net::new();
    let (shop, _) = net.writer(1);
    let mut hq = net.replica();
    let mut site = net.replica();
    let b = site.append(shop, Hlc::new(10, 0), block(asn(1))).unwrap();
    pull(&mut hq, &site);
    assert!(hq.views().blacklist.is_blocked(&asn(1)));
    hq.append(&net.hq, Hlc::new(20, 0), clear(asn(1), vec![b.entry_ref()]))
        .unwrap();
    pull(&mut site, &hq);
    assert!(!site.views().blacklist.is_blocked(&asn(1)));
    assert_eq!(site.snapshot(), hq.snapshot());
}

proptest! {
    /// HQ clears the block it knows while a site, unaware, blocks the card again. Whatever
    /// the clocks say and whichever way the entries travel, every replica ends blocked.
    #[test]
    fn concurrent_block_and_clear_always_end_blocked(
        clear_ms in 0u64..100, reblock_ms in 0u64..100, hq_pulls_first: bool,
    ) {
        let net = Net::new();
        let (shop, _) = net.writer(1);
        let (station, _) = net.writer(2);
        let mut hq = net.replica();
        let mut a = net.replica();
        let mut b = net.replica();
        let first = a.append(shop, Hlc::new(1, 0), block(asn(7))).unwrap();
        pull(&mut hq, &a);
        pull(&mut b, &a);
        hq.append(&net.hq, Hlc::new(clear_ms, 1), clear(asn(7), vec![first.entry_ref()])).unwrap();
        b.append(station, Hlc::new(reblock_ms, 2), block(asn(7))).unwrap();
        if hq_pulls_first {
            pull(&mut hq, &b);
            pull(&mut b, &hq);
        } else {
            pull(&mut b, &hq);
            pull(&mut hq, &b);
        }
        pull(&mut a, &hq);
        for r in [&hq, &a, &b] {
            prop_assert!(r.views().blacklist.is_blocked(&asn(7)));
        }
        prop_assert_eq!(a.snapshot(), b.snapshot());
    }
}
