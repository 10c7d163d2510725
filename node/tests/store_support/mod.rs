//! A small network for the store's tests: HQ and three sites with fixed keys, a clock
//! the test controls, and builders for the bodies they write.

#![allow(dead_code)]

use cardmesh_model::body::*;
use cardmesh_model::replica::Replica;
use cardmesh_model::*;
use cardmesh_node::store::{Clock, Store};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub const NETWORK: NetworkId = NetworkId([0x42; 16]);

/// A clock that only moves when told to (or by one millisecond per reading).
pub struct TestClock(AtomicU64);

impl TestClock {
    pub fn new(ms: u64) -> Arc<TestClock> {
        Arc::new(TestClock(AtomicU64::new(ms)))
    }
}

impl Clock for TestClock {
    fn now_ms(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

pub fn site(s: &str) -> SiteId {
    s.parse().unwrap()
}

pub fn cert(hq: &NodeKey, node: &NodeKey, site_id: &str, role: Role, issued: u64) -> Certificate {
    Certificate::issue(
        hq,
        CertRequest {
            network: NETWORK,
            network_name: "test-chain".into(),
            node: node.node_id(),
            site: site(site_id),
            role,
            issued: Hlc::new(issued, 0),
        },
    )
}

pub struct Net {
    pub hq: NodeKey,
    /// Index 0 is HQ; 1.. the sites.
    pub keys: Vec<NodeKey>,
    pub certs: Vec<Certificate>,
}

impl Net {
    pub fn new() -> Net {
        let hq = NodeKey::from_seed(&[1; 32]);
        let sites = [
            ([2; 32], "shop-a", Role::Store),
            ([3; 32], "station-b", Role::Station),
            ([4; 32], "desk-c", Role::Issuer),
        ];
        let mut keys = vec![hq.clone()];
        let mut certs = vec![cert(&hq, &hq, "hq", Role::Hq, 1)];
        for (seed, s, r) in sites {
            let k = NodeKey::from_seed(&seed);
            certs.push(cert(&hq, &k, s, r, 1));
            keys.push(k);
        }
        Net { hq, keys, certs }
    }

    pub fn site_of(&self, i: usize) -> SiteId {
        self.certs[i].site.clone()
    }

    /// A store for member `i`, knowing only HQ and itself.
    pub fn store(&self, dir: &Path, i: usize) -> Store {
        Store::create(
            &dir.join(format!("node{i}.redb")),
            self.keys[i].clone(),
            self.certs[i].clone(),
            self.certs[0].clone(),
            TestClock::new(1_000_000),
        )
        .unwrap()
    }

    /// A replica that knows every member: stands in for the other nodes.
    pub fn replica(&self) -> Replica {
        let mut r = Replica::new(self.certs[0].clone()).unwrap();
        for c in &self.certs[1..] {
            r.admit(c.clone()).unwrap();
        }
        r
    }

    /// The entries HQ writes to enroll every site (what a site's store needs first).
    pub fn enrollments(&self, hq: &mut Replica, hlc: &mut HlcClock) -> Vec<Entry> {
        self.certs[1..]
            .iter()
            .map(|c| {
                hq.append(&self.hq, hlc.tick(10), Body::Enroll(c.clone()))
                    .unwrap()
            })
            .collect()
    }
}

pub fn all_entries(r: &Replica) -> Vec<Entry> {
    r.version_vector()
        .iter()
        .flat_map(|(o, n)| {
            r.entries(FeedRange {
                origin: *o,
                from: 1,
                to: *n,
            })
            .to_vec()
        })
        .collect()
}

pub fn asn(n: u8) -> CardAsn {
    CardAsn([0x10, 0, 0, 0, 0, 0, 0, n])
}

pub fn terminal(n: u8) -> TerminalId {
    TerminalId([0, 0, 0, 0, 0, n])
}

pub fn day() -> BusinessDay {
    BusinessDay::of_instant(1_795_276_800_000, 480)
}

pub fn purchase(site: SiteId, card: CardAsn, counter: u16, amount: i64) -> Body {
    Body::Card(CardTxn {
        kind: TxnKind::Purchase,
        asn: card,
        site,
        terminal: terminal(1),
        operator: Some("op1".parse().unwrap()),
        business_day: day(),
        card_time: CardTime([0x20, 0x26, 0x11, 0x22, 0x10, 0x00, 0x00]),
        card_counter: counter,
        term_seq: u32::from(counter),
        amount: Money::from_fen(amount),
        balance_before: Money::from_fen(100_000),
        balance_after: Money::from_fen(100_000 - amount),
        mac1: [1, 2, 3, 4],
        mac2: [5, 6, 7, 8],
        tac: [9, 10, 11, 12],
        items: vec![],
        refers_to: None,
    })
}

pub fn block(card: CardAsn) -> Body {
    Body::Blacklist(BlacklistEvent::Block {
        asn: card,
        reason: BlockReason::Lost,
        operator: None,
    })
}

pub fn clear(card: CardAsn, clears: Vec<EntryRef>) -> Body {
    Body::Blacklist(BlacklistEvent::Clear {
        asn: card,
        clears,
        note: "found".into(),
        operator: None,
    })
}

pub fn holder(card: CardAsn, name: &str) -> Body {
    Body::CardRegistry(CardEvent {
        asn: card,
        change: CardChange::Holder(Some(Holder {
            name: name.into(),
            id_number: "1101".into(),
            phone: "138".into(),
        })),
    })
}

/// Rewrites a closed current file's ledger by card as schema v3 to v9 kept it, written
/// by hand as it was: keyed (card, hlc, origin, seq), beside a table of each card
/// counter's first entry. For tests that make a file of an older schema.
pub fn as_v9_ledger(txn: &redb::WriteTransaction) {
    use redb::{ReadableTable, TableDefinition};
    const NOW: TableDefinition<&[u8; 63], ()> = TableDefinition::new("ledger_by_card_counter");
    const OLD: TableDefinition<&[u8; 60], ()> = TableDefinition::new("ledger_by_card");
    const COUNTERS: TableDefinition<&[u8; 11], &[u8; 40]> = TableDefinition::new("card_counters");
    let keys: Vec<[u8; 63]> = txn
        .open_table(NOW)
        .unwrap()
        .iter()
        .unwrap()
        .map(|row| *row.unwrap().0.value())
        .collect();
    let mut old = txn.open_table(OLD).unwrap();
    let mut counters = txn.open_table(COUNTERS).unwrap();
    // Now: card (8), counter space (1; 2 for none), counter (2), hlc (12), entry (40).
    for k in keys {
        let mut v9 = [0; 60];
        v9[..8].copy_from_slice(&k[..8]);
        v9[8..].copy_from_slice(&k[11..]);
        old.insert(&v9, ()).unwrap();
        let counter: [u8; 11] = k[..11].try_into().unwrap();
        if k[8] != 2 && counters.get(&counter).unwrap().is_none() {
            let entry: [u8; 40] = k[23..].try_into().unwrap();
            counters.insert(&counter, &entry).unwrap();
        }
    }
    drop((old, counters));
    assert!(txn.delete_table(NOW).unwrap());
}
