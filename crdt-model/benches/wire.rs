//! What a store-day costs on the wire: 2,000 transactions of a shop and 1,000 blacklist
//! events of HQ, synced from scratch by the cardmesh session, against (a) zstd of the raw
//! signed records — the least any protocol carrying them could send — and (b) the same
//! facts as automerge changes through automerge's own sync protocol.
//!
//! Prints figures; `cargo bench -p cardmesh-model --bench wire`.

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ROOT, ReadDoc, ScalarValue};
use cardmesh_model::body::*;
use cardmesh_model::sync::{Link, ReplicaNode, run_pair};
use cardmesh_model::*;

const TXNS: usize = 2_000;
const BLOCKS: usize = 1_000;

fn cert(hq: &NodeKey, node: &NodeKey, site: &str, role: Role) -> Certificate {
    Certificate::issue(
        hq,
        CertRequest {
            network: NetworkId([7; 16]),
            network_name: "bench".into(),
            node: node.node_id(),
            site: site.parse().unwrap(),
            role,
            issued: Hlc::new(1, 0),
        },
    )
}

/// Deterministic bytes that look like a MAC: as incompressible as the real ones.
fn noise(i: usize, what: u8) -> [u8; 32] {
    let mut input = (i as u64).to_le_bytes().to_vec();
    input.push(what);
    *blake3::hash(&input).as_bytes()
}

/// A shop's purchase, varied the way a day's are: 800 regular cards, 1 to 3 items, the
/// card's balance chaining down, MACs and TAC random.
fn purchase(site: &SiteId, i: usize, balances: &mut [i64], counters: &mut [u16]) -> Body {
    let n = noise(i, 0);
    let card = usize::from(n[0]) * 256 + usize::from(n[1]);
    let slot = card % balances.len();
    let lines = 1 + usize::from(n[2] % 3);
    let products = [
        "petrol-92",
        "petrol-95",
        "diesel-0",
        "cola",
        "popcorn",
        "ticket",
    ];
    let items: Vec<LineItem> = (0..lines)
        .map(|k| {
            let unit = 250 + i64::from(n[3 + k]) * 7;
            let qty = 1 + i64::from(n[6 + k] % 4);
            LineItem {
                product: products[usize::from(n[9 + k]) % products.len()]
                    .parse()
                    .unwrap(),
                quantity: Quantity::pieces(qty),
                unit_price: Money::from_fen(unit),
                paid_percent: if n[12].is_multiple_of(4) { 95 } else { 100 },
                amount: Money::from_fen(unit * qty),
            }
        })
        .collect();
    let amount: i64 = items.iter().map(|l| l.amount.fen()).sum();
    let before = balances[slot];
    balances[slot] -= amount;
    counters[slot] += 1;
    Body::Card(CardTxn {
        kind: TxnKind::Purchase,
        asn: CardAsn((0x1000_0000_0000_0000 + slot as u64).to_be_bytes()),
        site: site.clone(),
        terminal: format!("{:012}", 101 + i % 4).parse().unwrap(),
        operator: Some(["cash1", "cash2"][i % 2].parse().unwrap()),
        business_day: BusinessDay {
            year: 2026,
            month: 11,
            day: 21,
        },
        card_time: CardTime([
            0x20,
            0x26,
            0x11,
            0x21,
            (8 + i / 200) as u8,
            (i % 60) as u8,
            n[13] % 60,
        ]),
        card_counter: counters[slot],
        term_seq: i as u32 + 1,
        amount: Money::from_fen(amount),
        balance_before: Money::from_fen(before),
        balance_after: Money::from_fen(before - amount),
        mac1: n[16..20].try_into().unwrap(),
        mac2: n[20..24].try_into().unwrap(),
        tac: n[24..28].try_into().unwrap(),
        items,
        refers_to: None,
    })
}

fn block(i: usize) -> Body {
    let n = noise(i, 1);
    Body::Blacklist(BlacklistEvent::Block {
        asn: CardAsn(n[..8].try_into().unwrap()),
        reason: BlockReason::Lost,
        operator: Some("card-desk".parse().unwrap()),
    })
}

/// An automerge document with the two maps the facts go in.
fn automerge_base() -> AutoCommit {
    let mut doc = AutoCommit::new();
    doc.put_object(ROOT, "txns", ObjType::Map).unwrap();
    doc.put_object(ROOT, "blacklist", ObjType::Map).unwrap();
    doc.commit();
    doc
}

/// Adds facts to `doc` as automerge changes, one change per fact as a till would commit
/// them, with or without the entries' signatures.
fn automerge_append(doc: &mut AutoCommit, entries: &[Entry], signed: bool) {
    let map = |doc: &AutoCommit, name: &str| match doc.get(ROOT, name).unwrap() {
        Some((automerge::Value::Object(ObjType::Map), id)) => id,
        other => panic!("{name} is {other:?}"),
    };
    let txns = map(doc, "txns");
    let blocks = map(doc, "blacklist");
    for e in entries {
        let sig =
            signed.then(|| ScalarValue::Bytes(e.sig.expect("own entries are signed").0.to_vec()));
        let key = format!("{}/{}", e.origin.short(), e.seq);
        match &e.body {
            Body::Card(t) => {
                let o = doc.put_object(&txns, &key, ObjType::Map).unwrap();
                doc.put(&o, "asn", ScalarValue::Bytes(t.asn.0.to_vec()))
                    .unwrap();
                doc.put(&o, "site", t.site.as_str()).unwrap();
                doc.put(&o, "terminal", t.terminal.to_string()).unwrap();
                if let Some(op) = &t.operator {
                    doc.put(&o, "operator", op.to_string()).unwrap();
                }
                doc.put(&o, "day", t.business_day.to_string()).unwrap();
                doc.put(&o, "time", ScalarValue::Bytes(t.card_time.0.to_vec()))
                    .unwrap();
                doc.put(&o, "counter", u64::from(t.card_counter)).unwrap();
                doc.put(&o, "term_seq", u64::from(t.term_seq)).unwrap();
                doc.put(&o, "amount", t.amount.fen()).unwrap();
                doc.put(&o, "before", t.balance_before.fen()).unwrap();
                doc.put(&o, "after", t.balance_after.fen()).unwrap();
                let macs = [t.mac1, t.mac2, t.tac].concat();
                doc.put(&o, "macs", ScalarValue::Bytes(macs)).unwrap();
                let items = doc.put_object(&o, "items", ObjType::List).unwrap();
                for (k, l) in t.items.iter().enumerate() {
                    let it = doc.insert_object(&items, k, ObjType::Map).unwrap();
                    doc.put(&it, "product", l.product.to_string()).unwrap();
                    doc.put(&it, "qty", l.quantity.milli()).unwrap();
                    doc.put(&it, "unit", l.unit_price.fen()).unwrap();
                    doc.put(&it, "percent", u64::from(l.paid_percent)).unwrap();
                    doc.put(&it, "amount", l.amount.fen()).unwrap();
                }
                if let Some(sig) = sig {
                    doc.put(&o, "sig", sig).unwrap();
                }
            }
            Body::Blacklist(BlacklistEvent::Block { asn, .. }) => {
                let o = doc.put_object(&blocks, &key, ObjType::Map).unwrap();
                doc.put(&o, "asn", ScalarValue::Bytes(asn.0.to_vec()))
                    .unwrap();
                doc.put(&o, "reason", "lost").unwrap();
                doc.put(&o, "operator", "card-desk").unwrap();
                if let Some(sig) = sig {
                    doc.put(&o, "sig", sig).unwrap();
                }
            }
            other => panic!("the bench writes no {}", other.kind()),
        }
        doc.commit();
    }
}

/// Bytes of automerge sync messages, both ways, until `behind` has what `ahead` has; a
/// fresh sync state on both ends, as after a reconnect.
fn automerge_sync_bytes(ahead: &mut AutoCommit, behind: &mut AutoCommit) -> usize {
    let (mut sa, mut sb) = (sync::State::new(), sync::State::new());
    let mut bytes = 0;
    loop {
        let mut moved = false;
        if let Some(m) = ahead.sync().generate_sync_message(&mut sa) {
            let wire = m.encode();
            bytes += wire.len();
            let m = sync::Message::decode(&wire).unwrap();
            behind.sync().receive_sync_message(&mut sb, m).unwrap();
            moved = true;
        }
        if let Some(m) = behind.sync().generate_sync_message(&mut sb) {
            let wire = m.encode();
            bytes += wire.len();
            let m = sync::Message::decode(&wire).unwrap();
            ahead.sync().receive_sync_message(&mut sa, m).unwrap();
            moved = true;
        }
        if !moved {
            break;
        }
    }
    assert_eq!(behind.get_heads(), ahead.get_heads(), "automerge synced");
    bytes
}

/// Both sync protocols on the same facts: `old` already on both ends, `new` only on one.
struct Run {
    entries: usize,
    cardmesh: usize,
    automerge_signed: usize,
    automerge_unsigned: usize,
}

fn run(old: &[Entry], new: &[Entry], behind: &mut ReplicaNode, ahead: &mut ReplicaNode) -> Run {
    let out = run_pair(behind, ahead, Link::default());
    assert!(out.both_done(), "the session finished");
    assert_eq!(out.initiator.stats().entries_applied, new.len() as u64);
    let mut automerge = [true, false].map(|signed| {
        let mut behind = automerge_base();
        automerge_append(&mut behind, old, signed);
        let mut ahead = behind.fork();
        automerge_append(&mut ahead, new, signed);
        automerge_sync_bytes(&mut ahead, &mut behind)
    });
    Run {
        entries: new.len(),
        cardmesh: out.bytes_delivered,
        automerge_signed: std::mem::take(&mut automerge[0]),
        automerge_unsigned: automerge[1],
    }
}

fn report(what: &str, r: &Run) {
    let per = |b: usize| b as f64 / r.entries as f64;
    println!("{what}");
    println!(
        "  cardmesh session          {:>9} B  {:>6.1} B/entry",
        r.cardmesh,
        per(r.cardmesh)
    );
    for (label, bytes) in [
        ("automerge, signed facts", r.automerge_signed),
        ("automerge, facts only", r.automerge_unsigned),
    ] {
        println!(
            "  {label:<24}  {bytes:>9} B  {:>6.1} B/entry  = {:.1}x the cardmesh session",
            per(bytes),
            bytes as f64 / r.cardmesh as f64
        );
    }
}

fn main() {
    let hq = NodeKey::from_seed(&[1; 32]);
    let shop = NodeKey::from_seed(&[2; 32]);
    let site: SiteId = "shop-a".parse().unwrap();
    let certs = [
        cert(&hq, &hq, "hq", Role::Hq),
        cert(&hq, &shop, "shop-a", Role::Store),
    ];
    let node = |key: &NodeKey, cert: &Certificate| {
        let mut r = replica::Replica::new(certs[0].clone()).unwrap();
        r.admit(certs[1].clone()).unwrap();
        ReplicaNode::new(r, key.clone(), cert.clone()).unwrap()
    };
    let mut balances = vec![500_000i64; 800];
    let mut counters = vec![0u16; 800];
    // Two store-days, written as they happen: day 1, then day 2.
    let mut author = node(&hq, &certs[0]);
    let mut days: Vec<Vec<Entry>> = Vec::new();
    for day in 0..2 {
        let mut entries = Vec::new();
        let base = 1_795_300_000_000 + day as u64 * 86_400_000;
        for i in 0..TXNS {
            let body = purchase(&site, day * TXNS + i, &mut balances, &mut counters);
            let at = Hlc::new(base + i as u64 * 20_000, 0);
            entries.push(author.replica.append(&shop, at, body).unwrap());
        }
        for i in 0..BLOCKS {
            let at = Hlc::new(base + i as u64 * 40_000, 0);
            entries.push(
                author
                    .replica
                    .append(&hq, at, block(day * BLOCKS + i))
                    .unwrap(),
            );
        }
        days.push(entries);
    }
    let day1 = &days[0];
    let day2 = &days[1];
    let count = day1.len();

    let raw: Vec<u8> = day1.iter().flat_map(Entry::encode).collect();
    let bodies: Vec<u8> = day1
        .iter()
        .flat_map(|e| postcard::to_stdvec(&e.body).unwrap())
        .collect();
    let zstd3 = zstd::bulk::compress(&raw, 3).unwrap().len();
    let zstd19 = zstd::bulk::compress(&raw, 19).unwrap().len();
    let bodies_zstd = zstd::bulk::compress(&bodies, 19).unwrap().len();

    // A fresh node takes day 1 from scratch.
    let mut ahead = node(&hq, &certs[0]);
    ahead.replica.ingest(day1.iter().cloned());
    let mut behind = node(&shop, &certs[1]);
    let first = run(&[], day1, &mut behind, &mut ahead);
    // Then day 2 arrives on a node that holds day 1: the daily case.
    ahead.replica.ingest(day2.iter().cloned());
    let daily = run(day1, day2, &mut behind, &mut ahead);

    let per = |b: usize| b as f64 / count as f64;
    println!("store-day: {TXNS} purchases + {BLOCKS} blacklist blocks = {count} signed entries");
    println!(
        "  raw signed entries        {:>9} B  {:>6.1} B/entry",
        raw.len(),
        per(raw.len())
    );
    println!(
        "  zstd-3 of raw entries     {zstd3:>9} B  {:>6.1} B/entry",
        per(zstd3)
    );
    println!(
        "  zstd-19 of raw entries    {zstd19:>9} B  {:>6.1} B/entry",
        per(zstd19)
    );
    println!(
        "  zstd-19 of bodies only    {bodies_zstd:>9} B  {:>6.1} B/entry (no signatures, hashes, clocks)",
        per(bodies_zstd)
    );
    println!(
        "  cardmesh session, day 2   = {:.2}x zstd-3 of the raw entries, {:.2}x zstd-19",
        daily.cardmesh as f64 / zstd3 as f64,
        daily.cardmesh as f64 / zstd19 as f64
    );
    report("day 1 to an empty node:", &first);
    report("day 2 to a node holding day 1 (the daily sync):", &daily);
}
