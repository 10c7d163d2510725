//! What the node's benchmarks share: a bench network's certificates and a shop's
//! purchase as the till logs it.

use cardmesh_model::body::*;
use cardmesh_model::*;

pub const NETWORK: NetworkId = NetworkId([0x42; 16]);

pub fn cert(hq: &NodeKey, node: &NodeKey, site: &str, role: Role) -> Certificate {
    Certificate::issue(
        hq,
        CertRequest {
            network: NETWORK,
            network_name: "bench".into(),
            node: node.node_id(),
            site: site.parse().expect("valid site id"),
            role,
            issued: Hlc::new(1, 0),
        },
    )
}

pub fn purchase(i: u32) -> Body {
    let card = CardAsn([0x10, 0, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8, 1]);
    Body::Card(CardTxn {
        kind: TxnKind::Purchase,
        asn: card,
        site: "shop-a".parse().expect("valid site id"),
        terminal: TerminalId([0, 0, 0, 0, 0, 1]),
        operator: None,
        business_day: BusinessDay::of_instant(1_795_276_800_000, 480),
        card_time: CardTime([0x20, 0x26, 0x11, 0x22, 0x10, 0x00, 0x00]),
        card_counter: i as u16,
        term_seq: i,
        amount: Money::from_fen(1_250),
        balance_before: Money::from_fen(100_000),
        balance_after: Money::from_fen(98_750),
        mac1: [1, 2, 3, 4],
        mac2: [5, 6, 7, 8],
        tac: [9, 10, 11, 12],
        items: vec![],
        refers_to: None,
    })
}
