//! The codec round-trips every body and never panics on hostile bytes.

mod common;

use cardmesh_model::auth::Revocation;
use cardmesh_model::body::*;
use cardmesh_model::codec::{self, CodecError, Kind};
use cardmesh_model::docs::DocName;
use cardmesh_model::*;
use common::*;
use proptest::prelude::*;

fn every_body(net: &Net) -> Vec<Body> {
    let (_, s) = net.writer(1);
    let Body::Card(txn) = purchase(s.clone(), asn(1), 1, 100, 1000) else {
        unreachable!()
    };
    let kinds = [
        TxnKind::Purchase,
        TxnKind::Load,
        TxnKind::Refund,
        TxnKind::Reversal,
        TxnKind::GreyLock,
        TxnKind::DebitForUnlock,
        TxnKind::Issue {
            deposit: Money::from_fen(2000),
        },
        TxnKind::Return {
            deposit: Money::from_fen(2000),
        },
        TxnKind::Replace { new_card: asn(2) },
    ];
    let mut bodies: Vec<Body> = kinds
        .into_iter()
        .map(|kind| {
            Body::Card(CardTxn {
                kind,
                ..txn.clone()
            })
        })
        .collect();
    bodies.extend([
        block(asn(1)),
        clear(
            asn(1),
            vec![EntryRef {
                origin: net.hq.node_id(),
                seq: 3,
            }],
        ),
        holder(asn(1), "Zhang San"),
        Body::CardRegistry(CardEvent {
            asn: asn(1),
            change: CardChange::Holder(None),
        }),
        Body::CardRegistry(CardEvent {
            asn: asn(1),
            change: CardChange::Status(CardStatus::ReplacedBy(asn(2))),
        }),
        Body::CardRegistry(CardEvent {
            asn: asn(1),
            change: CardChange::Personalized {
                class: "gold".parse().unwrap(),
                expiry: BusinessDay {
                    year: 2030,
                    month: 12,
                    day: 31,
                },
                issuer: s.clone(),
            },
        }),
        Body::Operator(OperatorAction {
            operator: "op1".parse().unwrap(),
            terminal: Some("000000000001".parse().unwrap()),
            action: OperatorActionKind::Refused {
                what: "refund".into(),
                reason: "needs a manager".into(),
            },
        }),
        Body::Alarm(Alarm {
            kind: AlarmKind::CloneSuspected,
            asn: Some(asn(1)),
            detail: "counter 5 twice".into(),
        }),
        Body::Enroll(net.certs[1].clone()),
        Body::Revoke(Revocation {
            node: net.writer(2).0.node_id(),
            upto_seq: 9,
            reason: "lost".into(),
        }),
        Body::Doc(DocChange {
            doc: DocName::SitePrices(s),
            change: vec![0x85, 0x6f, 0x4a, 0x83],
        }),
    ]);
    bodies
}

#[test]
fn every_body_survives_an_encode_decode_round_trip() {
    let net = Net::new();
    let mut head = FeedHead::EMPTY;
    for body in every_body(&net) {
        let e = Entry::create(&net.hq, head, Hlc::new(1, 2), body);
        let bytes = e.encode();
        assert_eq!(Entry::decode(&bytes).unwrap(), e);
        head = e.head();
    }
}

#[test]
fn a_blob_of_another_kind_or_a_newer_version_is_named_as_such() {
    let net = Net::new();
    let bytes = codec::encode(Kind::Certificate, &net.certs[0]);
    assert_eq!(
        Entry::decode(&bytes),
        Err(CodecError::WrongKind {
            expected: Kind::Entry,
            found: 2
        })
    );
    let mut newer = Entry::create(&net.hq, FeedHead::EMPTY, Hlc::new(1, 0), block(asn(1))).encode();
    newer[2] = 9;
    assert_eq!(Entry::decode(&newer), Err(CodecError::NewerVersion(9)));
    assert_eq!(Entry::decode(b"PK\x03\x04"), Err(CodecError::BadMagic));
    let mut trailing =
        Entry::create(&net.hq, FeedHead::EMPTY, Hlc::new(1, 0), block(asn(1))).encode();
    trailing.push(0);
    assert!(matches!(
        Entry::decode(&trailing),
        Err(CodecError::Corrupt { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = Entry::decode(&bytes);
        let mut framed = b"CM\x01\x01".to_vec();
        framed.extend(&bytes);
        let _ = Entry::decode(&framed);
        let _ = codec::decode::<Certificate>(Kind::Certificate, &framed);
    }

    #[test]
    fn a_corrupted_entry_is_an_error_or_fails_verification(
        which in 0usize..20, pos in any::<prop::sample::Index>(), bit in 0u8..8, cut in any::<prop::sample::Index>(), truncate: bool,
    ) {
        let net = Net::new();
        let bodies = every_body(&net);
        let e = Entry::create(&net.hq, FeedHead::EMPTY, Hlc::new(1, 0), bodies[which % bodies.len()].clone());
        let mut bytes = e.encode();
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        } else {
            let i = pos.index(bytes.len());
            bytes[i] ^= 1 << bit;
        }
        if let Ok(decoded) = Entry::decode(&bytes) {
            let mut r = net.replica();
            let report = r.ingest([decoded]);
            prop_assert_eq!(report.applied, 0, "a corrupted entry was applied");
        }
    }
}
