//! A run checked beside the replica (`CheckedRun`) gets exactly the answer the replica's
//! own `check_run` gives the same entries, whatever is wrong with them; only runs that
//! `CheckedRun::check` refuses take the long way.

mod common;

use cardmesh_model::entry::{CheckedRun, check_checked_run, check_run};
use cardmesh_model::*;
use common::*;
use proptest::prelude::*;

/// What can be wrong with a run on its way.
#[derive(Clone, Debug)]
enum Damage {
    None,
    /// A bit of the signature of entry `i` flipped (it is kept if it is a checkpoint).
    FlipSignature(usize),
    /// Entry `i`'s content altered after it was signed.
    AlterBody(usize),
    /// The run's last signature lost.
    UnsignedTail,
    /// Entry `i` is a revocation, which only HQ may write.
    Unauthorized(usize),
}

fn damage(n: usize) -> impl Strategy<Value = Damage> {
    prop_oneof![
        3 => Just(Damage::None),
        1 => (0..n).prop_map(Damage::FlipSignature),
        1 => (0..n).prop_map(Damage::AlterBody),
        1 => Just(Damage::UnsignedTail),
        1 => (0..n).prop_map(Damage::Unauthorized),
    ]
}

fn case() -> impl Strategy<Value = (usize, usize, Vec<bool>, Damage, Option<u64>, usize)> {
    (1usize..150).prop_flat_map(|n| {
        (
            Just(n),
            0..n,
            proptest::collection::vec(proptest::bool::weighted(0.3), n),
            damage(n),
            proptest::option::weighted(0.3, 0u64..160),
            0..n,
        )
    })
}

proptest! {
    #[test]
    fn a_checked_run_gets_the_answer_check_run_gives(
        (n, start, kept, hurt, revoked, skip) in case()
    ) {
        let net = Net::new();
        let (key, shop) = net.writer(1);
        let mut membership = Membership::new(net.certs[0].clone()).unwrap();
        for c in &net.certs[1..] {
            membership.admit(c.clone()).unwrap();
        }
        if let Some(upto_seq) = revoked {
            membership.revoke(Revocation {
                node: key.node_id(),
                upto_seq,
                reason: "till stolen".into(),
            });
        }
        let mut feed = Vec::new();
        let mut head = FeedHead::EMPTY;
        for i in 0..n {
            let body = match hurt {
                Damage::Unauthorized(j) if j == i => Body::Revoke(Revocation {
                    node: net.writer(2).0.node_id(),
                    upto_seq: 0,
                    reason: "not a shop's to say".into(),
                }),
                _ => purchase(shop.clone(), asn((i % 5) as u8), i as u16, 100, 10_000),
            };
            let e = Entry::create(key, head, Hlc::new(1_000 + i as u64, 0), body);
            head = e.head();
            feed.push(e);
        }
        // The run as a link carries it: some signatures dropped, the last one kept.
        for (e, keep) in feed.iter_mut().zip(&kept) {
            if !keep {
                e.sig = None;
            }
        }
        feed[n - 1].sign(key);
        match hurt {
            Damage::FlipSignature(i) => {
                if let Some(sig) = feed[i].sig.as_mut() {
                    sig.0[3] ^= 0x20;
                }
            }
            Damage::AlterBody(i) => feed[i].body = block(asn(9)),
            Damage::UnsignedTail => feed[n - 1].sig = None,
            _ => {}
        }
        let head = match start {
            0 => FeedHead::EMPTY,
            k => feed[k - 1].head(),
        };
        let run = feed[start..].to_vec();
        let expected = check_run(head, &membership, &run);
        match CheckedRun::check(run.clone()) {
            Ok(checked) => {
                prop_assert_eq!(checked.entries(), &run[..]);
                prop_assert_eq!(check_checked_run(head, &membership, &checked), expected);
                // Without a prefix a replica holds already, it is still the same answer.
                let skip = skip.min(run.len() - 1);
                let later = match skip {
                    0 => head,
                    j => run[j - 1].head(),
                };
                let rest = checked.skip(skip);
                prop_assert_eq!(
                    check_checked_run(later, &membership, &rest),
                    check_run(later, &membership, &run[skip..])
                );
            }
            Err(back) => {
                prop_assert_eq!(&back, &run);
                prop_assert!(
                    !matches!(hurt, Damage::None | Damage::Unauthorized(_)),
                    "a run whose chain and signatures are good was refused"
                );
            }
        }
    }
}
