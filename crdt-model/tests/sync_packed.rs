//! Packed batches: what goes in comes out, whatever the mix of feeds; garbage, a
//! decompression bomb or a tampered run is an error, and a sender that lies about a
//! chain produces entries that fail verification.

mod common;

use cardmesh_model::sync::packed::{PackError, pack, unpack};
use cardmesh_model::*;
use common::*;
use proptest::prelude::*;

/// Entries of HQ and two sites, interleaved as a batch carries them.
fn mixed(n: usize) -> Vec<Entry> {
    let net = Net::new();
    let mut r = net.replica();
    for j in 0..n {
        let (k, s) = net.writer(j % 3);
        r.append(
            k,
            Hlc::new(1_000 + j as u64, 0),
            purchase(s, asn(j as u8), j as u16, 250, 9_000),
        )
        .unwrap();
    }
    let mut out = Vec::new();
    for i in 0..3 {
        let origin = net.writer(i).0.node_id();
        out.extend(
            r.entries(FeedRange {
                origin,
                from: 1,
                to: u64::MAX,
            })
            .iter()
            .cloned(),
        );
    }
    out
}

/// What a batch of `entries` carries: the entries without the signatures the receiver
/// does not need.
fn thinned(entries: &[Entry]) -> Vec<Entry> {
    let mut out = entries.to_vec();
    entry::thin_signatures(&mut out);
    out
}

#[test]
fn runs_of_several_feeds_come_back_identical() {
    let entries = mixed(30);
    assert_eq!(unpack(&pack(&entries)).unwrap(), thinned(&entries));
}

#[test]
fn only_the_last_entry_of_a_run_and_the_checkpoints_keep_their_signatures() {
    let net = Net::new();
    let mut r = net.replica();
    let (k, s) = net.writer(1);
    for j in 0..600u64 {
        r.append(
            k,
            Hlc::new(1_000 + j, 0),
            purchase(s.clone(), asn(1), j as u16, 1, 9_000),
        )
        .unwrap();
    }
    let run = r.entries(FeedRange {
        origin: k.node_id(),
        from: 2,
        to: 600,
    });
    let signed: Vec<u64> = unpack(&pack(run))
        .unwrap()
        .iter()
        .filter(|e| e.sig.is_some())
        .map(|e| e.seq)
        .collect();
    assert_eq!(signed, [64, 128, 192, 256, 320, 384, 448, 512, 576, 600]);
    let mut fresh = net.replica();
    let start = r.entries(FeedRange {
        origin: k.node_id(),
        from: 1,
        to: 1,
    });
    let report = fresh.ingest(
        unpack(&pack(start))
            .unwrap()
            .into_iter()
            .chain(unpack(&pack(run)).unwrap()),
    );
    assert_eq!((report.applied, report.rejected.len()), (600, 0));
}

#[test]
fn a_gap_or_a_foreign_order_starts_a_new_run_and_still_round_trips() {
    let mut entries = mixed(12);
    entries.swap(0, 5);
    entries.remove(7);
    assert_eq!(unpack(&pack(&entries)).unwrap(), thinned(&entries));
    assert_eq!(unpack(&pack(&[])).unwrap(), Vec::<Entry>::new());
}

#[test]
fn packing_is_smaller_than_the_entries_it_carries() {
    let entries = mixed(300);
    let raw: usize = entries.iter().map(|e| e.encode().len()).sum();
    let packed = pack(&entries).len();
    assert!(packed * 2 < raw, "packed {packed} bytes of {raw}");
}

#[test]
fn garbage_is_a_decompress_error() {
    let err = unpack(b"not zstd at all").unwrap_err();
    assert!(matches!(err, PackError::Decompress { .. }), "{err}");
}

#[test]
fn a_bomb_is_refused_without_inflating_it() {
    let zeros = vec![0u8; 64 << 20];
    let bomb = zstd::bulk::compress(&zeros, 19).unwrap();
    assert!(bomb.len() < 64 << 10);
    let err = unpack(&bomb).unwrap_err();
    assert!(matches!(err, PackError::Decompress { .. }), "{err}");
}

#[test]
fn valid_zstd_of_garbage_runs_is_a_decode_error() {
    let bytes = zstd::bulk::compress(&[0xff; 40], 3).unwrap();
    assert!(matches!(unpack(&bytes).unwrap_err(), PackError::Decode(_)));
}

#[test]
fn a_tampered_body_breaks_the_chain_the_receiver_rebuilds() {
    let net = Net::new();
    let entries = mixed(9);
    let mut tampered = unpack(&pack(&entries)).unwrap();
    if let body::Body::Card(t) = &mut tampered[1].body {
        t.amount = Money::from_fen(1);
    }
    let rebuilt = unpack(&pack(&tampered)).unwrap();
    let mut r = net.replica();
    let report = r.ingest(rebuilt);
    assert_eq!(
        report.applied, 6,
        "the other two feeds; HQ's entry before the tampered one came without its \
         signature, vouched for only by the tampered one"
    );
    assert!(!report.rejected.is_empty());
}

proptest! {
    #[test]
    fn any_bytes_unpack_to_entries_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = unpack(&bytes);
    }

    #[test]
    fn any_order_of_real_entries_round_trips(seed in any::<u64>(), n in 0usize..40) {
        let mut entries = mixed(n);
        let len = entries.len().max(1);
        for i in 0..entries.len() {
            entries.swap(i, (seed as usize).wrapping_mul(i + 7) % len);
        }
        prop_assert_eq!(unpack(&pack(&entries)).unwrap(), thinned(&entries));
    }
}
