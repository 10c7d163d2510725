//! A small network for the model's tests: HQ and three sites with fixed keys, and
//! builders for the bodies they write.

#![allow(dead_code)]

use cardmesh_model::body::*;
use cardmesh_model::replica::Replica;
use cardmesh_model::*;

pub const NETWORK: NetworkId = NetworkId([0x42; 16]);

pub struct Net {
    pub hq: NodeKey,
    pub sites: Vec<(NodeKey, SiteId, Role)>,
    pub certs: Vec<Certificate>,
}

pub fn site(s: &str) -> SiteId {
    s.parse().unwrap()
}

pub fn cert(hq: &NodeKey, node: &NodeKey, site_id: &str, role: Role) -> Certificate {
    Certificate::issue(
        hq,
        CertRequest {
            network: NETWORK,
            network_name: "test-chain".into(),
            node: node.node_id(),
            site: site(site_id),
            role,
            issued: Hlc::new(1, 0),
        },
    )
}

impl Net {
    pub fn new() -> Net {
        let hq = NodeKey::from_seed(&[1; 32]);
        let sites = vec![
            (NodeKey::from_seed(&[2; 32]), site("shop-a"), Role::Store),
            (
                NodeKey::from_seed(&[3; 32]),
                site("station-b"),
                Role::Station,
            ),
            (NodeKey::from_seed(&[4; 32]), site("desk-c"), Role::Issuer),
        ];
        let mut certs = vec![cert(&hq, &hq, "hq", Role::Hq)];
        for (k, s, r) in &sites {
            certs.push(cert(&hq, k, s.as_str(), *r));
        }
        Net { hq, sites, certs }
    }

    /// A fresh replica that knows every member.
    pub fn replica(&self) -> Replica {
        let mut r = Replica::new(self.certs[0].clone()).unwrap();
        for c in &self.certs[1..] {
            r.admit(c.clone()).unwrap();
        }
        r
    }

    /// Key and site of writer `i`: 0 is HQ, 1.. the sites.
    pub fn writer(&self, i: usize) -> (&NodeKey, SiteId) {
        if i == 0 {
            (&self.hq, site("hq"))
        } else {
            let (k, s, _) = &self.sites[i - 1];
            (k, s.clone())
        }
    }
}

/// Pulls into `to` everything `from` has that `to` lacks, the way a sync session does.
pub fn pull(to: &mut Replica, from: &Replica) -> replica::IngestReport {
    let wanted = to.version_vector().lacks(&from.version_vector());
    let entries: Vec<Entry> = wanted
        .iter()
        .flat_map(|r| from.entries(*r).iter().cloned())
        .collect();
    to.ingest(entries)
}

pub fn asn(n: u8) -> CardAsn {
    CardAsn([0x10, 0, 0, 0, 0, 0, 0, n])
}

pub fn purchase(site: SiteId, card: CardAsn, counter: u16, amount: i64, before: i64) -> Body {
    Body::Card(CardTxn {
        kind: TxnKind::Purchase,
        asn: card,
        site,
        terminal: "000000000001".parse().unwrap(),
        operator: Some("op1".parse().unwrap()),
        business_day: BusinessDay::of_instant(1_795_276_800_000, 480),
        card_time: CardTime([0x20, 0x26, 0x11, 0x22, 0x10, 0x00, 0x00]),
        card_counter: counter,
        term_seq: u32::from(counter),
        amount: Money::from_fen(amount),
        balance_before: Money::from_fen(before),
        balance_after: Money::from_fen(before - amount),
        mac1: [1, 2, 3, 4],
        mac2: [5, 6, 7, 8],
        tac: [9, 10, 11, 12],
        items: vec![LineItem {
            product: "diesel-0".parse().unwrap(),
            quantity: Quantity::from_milli(10_000),
            unit_price: Money::from_fen(amount / 10),
            paid_percent: 100,
            amount: Money::from_fen(amount),
        }],
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
