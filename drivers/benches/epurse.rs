//! Benchmarks: the software part of a whole purchase (in-process reader, software SAM),
//! and APDU round trips and a whole purchase through real pcscd + vpcd (skipped with a
//! message when pcscd with vpcd is not running).

use std::time::{Duration, Instant};

use cardmesh_drivers::card::{Personalization, VirtualCard};
use cardmesh_drivers::epurse::{EPurse, LoadKey};
use cardmesh_drivers::keys::{KeyComponent, MasterKeys, combine};
use cardmesh_drivers::psam::VirtualPsam;
use cardmesh_drivers::reader::pcsc::{PcscReader, list_readers};
use cardmesh_drivers::reader::{CardReader, MemoryReader};
use cardmesh_drivers::sam::{MemorySeqStore, PsamClient, SoftwareSam};
use cardmesh_drivers::types::{Asn, BcdDateTime, Pin, TerminalId};
use cardmesh_drivers::vpcd::{
    CARD_READER_NAME, CARD_SLOT, PSAM_READER_NAME, PSAM_SLOT, VpcdBridge,
};
use criterion::{Criterion, criterion_group, criterion_main};

/// Purchases per card before it is replaced: the offline counter is 16 bits.
const PURCHASES_PER_CARD: u64 = 60_000;
const WAIT: Duration = Duration::from_secs(10);

fn keys() -> MasterKeys {
    MasterKeys::derive(&combine(
        &KeyComponent::from_bytes([0x11; 16]),
        &KeyComponent::from_bytes([0x22; 16]),
    ))
}

fn terminal() -> TerminalId {
    TerminalId::parse("112233445566").unwrap()
}

fn now() -> BcdDateTime {
    BcdDateTime::new(2025, 3, 1, 12, 0, 0).unwrap()
}

/// A card loaded with enough for `PURCHASES_PER_CARD` purchases of 1 fen.
fn loaded_card(mk: &MasterKeys) -> VirtualCard {
    let asn = Asn::parse("3100000000000001").unwrap();
    let card = VirtualCard::new(Personalization {
        asn,
        keys: mk.card_keys(&asn),
        pin: Pin::parse("123456").unwrap(),
        issue_date: [0x20, 0x25, 0x01, 0x01],
        expiry: [0x20, 0x30, 0x12, 0x31],
        card_class: 1,
        max_balance: u32::MAX,
    });
    let mut p = EPurse::new(MemoryReader::new(card));
    p.select().unwrap();
    p.verify_pin(&Pin::parse("123456").unwrap()).unwrap();
    p.load(&LoadKey::new(mk.load.clone()), terminal(), 1_000_000, now())
        .unwrap();
    p.into_reader().remove().unwrap()
}

fn purchase_in_process(c: &mut Criterion) {
    let mk = keys();
    let mut sam = SoftwareSam::new(terminal(), mk.purchase.clone(), MemorySeqStore::default());
    c.bench_function("purchase_in_process_software_sam", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let mut p = EPurse::new(MemoryReader::new(loaded_card(&mk)));
                let batch = (iters - done).min(PURCHASES_PER_CARD);
                let t = Instant::now();
                p.select().unwrap();
                for _ in 0..batch {
                    p.purchase(&mut sam, 1, now()).unwrap();
                }
                spent += t.elapsed();
                done += batch;
            }
            spent
        })
    });
}

fn vpcd_available() -> bool {
    let ok = matches!(list_readers(), Ok(r) if r.iter().any(|n| n.contains(CARD_READER_NAME))
        && r.iter().any(|n| n.contains(PSAM_READER_NAME)));
    if !ok {
        eprintln!("skipping pcscd benchmarks: pcscd with vsmartcard-vpcd is not running");
    }
    ok
}

fn through_pcscd(c: &mut Criterion) {
    if !vpcd_available() {
        return;
    }
    let mk = keys();
    let mut reader = PcscReader::open(CARD_READER_NAME).unwrap();
    let mut psam_reader = PcscReader::open(PSAM_READER_NAME).unwrap();
    reader.wait_for_removal(WAIT).unwrap();
    psam_reader.wait_for_removal(WAIT).unwrap();
    let _psam =
        VpcdBridge::insert(VirtualPsam::new(terminal(), mk.purchase.clone()), PSAM_SLOT).unwrap();
    psam_reader.wait_for_card(WAIT).unwrap();
    let mut sam = PsamClient::new(&mut psam_reader);

    let mut bridge = Some(VpcdBridge::insert(loaded_card(&mk), CARD_SLOT).unwrap());
    reader.wait_for_card(WAIT).unwrap();
    let mut purse = EPurse::new(&mut reader);
    purse.select().unwrap();
    c.bench_function("pcscd_vpcd_get_balance_roundtrip", |b| {
        b.iter(|| purse.balance().unwrap())
    });

    let mut used = 0u64;
    let mut group = c.benchmark_group("pcscd_vpcd");
    group.sample_size(20);
    group.bench_function("purchase_with_psam_slot", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                if used == PURCHASES_PER_CARD {
                    // A fresh card: replacing it is not part of the measurement.
                    drop(bridge.take());
                    purse.reader_mut().wait_for_removal(WAIT).unwrap();
                    bridge = Some(VpcdBridge::insert(loaded_card(&mk), CARD_SLOT).unwrap());
                    purse.reader_mut().wait_for_card(WAIT).unwrap();
                    purse.select().unwrap();
                    used = 0;
                }
                let t = Instant::now();
                purse.purchase(&mut sam, 1, now()).unwrap();
                spent += t.elapsed();
                used += 1;
            }
            spent
        })
    });
    group.finish();
    drop(bridge);
    purse.reader_mut().wait_for_removal(WAIT).unwrap();
}

criterion_group!(benches, purchase_in_process, through_pcscd);
criterion_main!(benches);
