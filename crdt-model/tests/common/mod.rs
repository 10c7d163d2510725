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

/// Writer `i`'s node (0 is HQ) over a fresh replica that knows every member.
pub fn node(net: &Net, i: usize) -> sync::ReplicaNode {
    let (k, _) = net.writer(i);
    sync::ReplicaNode::new(net.replica(), k.clone(), net.certs[i].clone()).unwrap()
}

/// Appends `n` purchases to writer `i`'s feed in `node`, with HLCs from `at` on.
pub fn write(net: &Net, node: &mut sync::ReplicaNode, i: usize, n: usize, at: u64) {
    let (k, s) = net.writer(i);
    for j in 0..n {
        let body = purchase(s.clone(), asn((j % 7) as u8), j as u16, 100, 10_000);
        node.replica
            .append(k, Hlc::new(at + j as u64, 0), body)
            .unwrap();
    }
}

/// A node of a network built from other keys: HQ from `hq_seed` under `network`, the node
/// from `node_seed`. With this test network's id it is a rogue HQ's node.
pub fn foreign_node(network: NetworkId, hq_seed: u8, node_seed: u8) -> sync::ReplicaNode {
    let hq = NodeKey::from_seed(&[hq_seed; 32]);
    let key = NodeKey::from_seed(&[node_seed; 32]);
    let issue = |node: &NodeKey, site_id: &str, role| {
        Certificate::issue(
            &hq,
            CertRequest {
                network,
                network_name: "other-chain".into(),
                node: node.node_id(),
                site: site(site_id),
                role,
                issued: Hlc::new(1, 0),
            },
        )
    };
    let replica = Replica::new(issue(&hq, "hq", Role::Hq)).unwrap();
    let cert = issue(&key, "shop-x", Role::Store);
    sync::ReplicaNode::new(replica, key, cert).unwrap()
}

/// A node that lies: it can present another node's certificate, and it serves one entry
/// altered after signing. Everything else goes to the honest node inside.
pub struct Tamper {
    pub inner: sync::ReplicaNode,
    pub certificate: Option<Certificate>,
    pub forge: Option<EntryRef>,
}

impl sync::SyncStore for Tamper {
    type Error = AuthError;

    fn local_node(&self) -> NodeId {
        self.certificate
            .as_ref()
            .map_or_else(|| self.inner.local_node(), |c| c.node)
    }

    fn local_certificate(&self) -> Result<Certificate, AuthError> {
        match &self.certificate {
            Some(c) => Ok(c.clone()),
            None => self.inner.local_certificate(),
        }
    }

    fn hq_certificate(&self) -> Result<Certificate, AuthError> {
        self.inner.hq_certificate()
    }

    fn certificates(&self) -> Result<Vec<Certificate>, AuthError> {
        self.inner.certificates()
    }

    fn is_member(&self, node: &NodeId) -> Result<bool, AuthError> {
        self.inner.is_member(node)
    }

    fn version_vector(&self) -> Result<VersionVector, AuthError> {
        self.inner.version_vector()
    }

    fn entries(&self, range: FeedRange, limit: usize) -> Result<Vec<Entry>, AuthError> {
        let mut entries = self.inner.entries(range, limit)?;
        for e in &mut entries {
            if Some(e.entry_ref()) == self.forge {
                e.body = block(asn(99));
            }
        }
        Ok(entries)
    }

    fn ingest(&mut self, entries: Vec<Entry>) -> Result<replica::IngestReport, AuthError> {
        self.inner.ingest(entries)
    }

    fn admit(&mut self, cert: Certificate) -> Result<bool, AuthError> {
        self.inner.admit(cert)
    }

    fn sign(&self, transcript: &[u8]) -> Result<sign::Sig, AuthError> {
        self.inner.sign(transcript)
    }
}
