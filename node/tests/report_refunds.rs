//! A refund given at a card desk is charged to the sale it refers to: the sale's site
//! sells net of it, whichever of the two entries reaches a node first; and a file
//! written before refunds were charged (schema v4) gets them charged on open.

mod store_support;

use cardmesh_model::body::{CardTxn, TxnKind};
use cardmesh_model::codec::{self, Kind};
use cardmesh_model::report::{Dim, RowKey, Tally, Totals, TxnClass};
use cardmesh_model::*;
use cardmesh_node::store::{SCHEMA_VERSION, Store};
use redb::{ReadableTable, TableDefinition};
use store_support::*;

const SALE: i64 = 500;
const REFUND: i64 = 200;

fn refund_of(sale: EntryRef) -> Body {
    Body::Card(CardTxn {
        kind: TxnKind::Refund,
        asn: asn(1),
        site: site("hq"),
        terminal: terminal(9),
        operator: Some("mgr".parse().unwrap()),
        business_day: day(),
        card_time: CardTime([0x20, 0x26, 0x11, 0x22, 0x11, 0x00, 0x00]),
        card_counter: 1,
        term_seq: 1,
        amount: Money::from_fen(REFUND),
        balance_before: Money::from_fen(100_000 - SALE),
        balance_after: Money::from_fen(100_000 - SALE + REFUND),
        mac1: [1; 4],
        mac2: [2; 4],
        tac: [3; 4],
        items: vec![],
        refers_to: Some(sale),
    })
}

/// HQ's enrollments, shop-a's sale, and HQ's refund of it.
fn entries(net: &Net) -> (Vec<Entry>, Entry, Entry) {
    let mut r = net.replica();
    let mut hlc = HlcClock::default();
    let enroll = net.enrollments(&mut r, &mut hlc);
    let sale = r
        .append(
            &net.keys[1],
            hlc.tick(20),
            purchase(net.site_of(1), asn(1), 7, SALE),
        )
        .unwrap();
    let refund = r
        .append(&net.hq, hlc.tick(30), refund_of(sale.entry_ref()))
        .unwrap();
    (enroll, sale, refund)
}

fn site_rows(s: &Store) -> Vec<(RowKey, Totals)> {
    s.report_rows(Dim::Site, day(), day()).unwrap()
}

fn row<'a>(rows: &'a [(RowKey, Totals)], name: &str) -> &'a Totals {
    &rows.iter().find(|(k, _)| k.name == name).unwrap().1
}

#[test]
fn a_refund_is_charged_to_its_sale_in_either_order() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new();
    let (enroll, sale, refund) = entries(&net);
    for d in ["a", "b"] {
        std::fs::create_dir(dir.path().join(d)).unwrap();
    }

    let sale_first = net.store(&dir.path().join("a"), 3);
    sale_first.ingest(enroll.clone()).unwrap();
    sale_first.ingest(vec![sale.clone()]).unwrap();
    sale_first.ingest(vec![refund.clone()]).unwrap();

    let refund_first = net.store(&dir.path().join("b"), 3);
    let mut hq_feed = enroll;
    hq_feed.push(refund);
    refund_first.ingest(hq_feed).unwrap();
    let waiting = site_rows(&refund_first);
    assert_eq!(
        row(&waiting, "hq").refunded,
        Tally::default(),
        "the refund's own row is where the money went, not a sale"
    );
    assert!(
        !waiting.iter().any(|(k, _)| k.name == "shop-a"),
        "nothing to charge before the sale is here"
    );
    refund_first.ingest(vec![sale]).unwrap();

    let rows = site_rows(&sale_first);
    assert_eq!(rows, site_rows(&refund_first));
    let shop = row(&rows, "shop-a");
    assert_eq!(
        shop.refunded,
        Tally {
            count: 1,
            amount: Money::from_fen(REFUND)
        }
    );
    assert_eq!(shop.sales().unwrap(), Money::from_fen(SALE - REFUND));
    let desk = row(&rows, "hq");
    assert_eq!(desk.kind(TxnClass::Refund).amount, Money::from_fen(REFUND));
    assert_eq!(desk.sales().unwrap(), Money::ZERO);
    for s in [&sale_first, &refund_first] {
        let all = s.network_totals().unwrap();
        assert_eq!(all.sales().unwrap(), Money::from_fen(SALE - REFUND));
        assert_eq!(all.float_delta, Money::from_fen(REFUND - SALE));
    }
    let terminals = sale_first.report_rows(Dim::Terminal, day(), day()).unwrap();
    assert_eq!(
        row(&terminals, &terminal(1).to_string()).sales().unwrap(),
        Money::from_fen(SALE - REFUND)
    );
}

const REPORT_ROWS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("report_rows");
const REPORT_TOTALS: TableDefinition<&str, &[u8]> = TableDefinition::new("report_totals");
const REFUNDS_WAITING: TableDefinition<&[u8; 80], ()> = TableDefinition::new("refunds_waiting");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// What v4 wrote for a row: the same fields without `refunded` at the end.
fn as_v4(v5: &[u8]) -> Vec<u8> {
    let mut t: Totals = codec::decode(Kind::View, v5).unwrap();
    t.refunded = Tally::default();
    let mut bytes = codec::encode(Kind::View, &t);
    let empty = postcard::to_allocvec(&Tally::default()).unwrap();
    assert!(bytes.ends_with(&empty));
    bytes.truncate(bytes.len() - empty.len());
    bytes
}

#[test]
fn a_v4_store_gets_its_refunds_charged_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new();
    let (enroll, sale, refund) = entries(&net);
    let path = dir.path().join("node3.redb");
    let store = net.store(dir.path(), 3);
    store.ingest(enroll).unwrap();
    store.ingest(vec![sale, refund]).unwrap();
    let (rows, all) = (site_rows(&store), store.network_totals().unwrap());
    drop(store);

    let db = redb::Database::open(&path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut table = txn.open_table(REPORT_ROWS).unwrap();
        let old: Vec<(Vec<u8>, Vec<u8>)> = table
            .iter()
            .unwrap()
            .map(|r| {
                let (k, v) = r.unwrap();
                (k.value().to_vec(), as_v4(v.value()))
            })
            .collect();
        for (k, v) in old {
            table.insert(k.as_slice(), v.as_slice()).unwrap();
        }
        let mut table = txn.open_table(REPORT_TOTALS).unwrap();
        let v = as_v4(table.get("all").unwrap().unwrap().value());
        table.insert("all", v.as_slice()).unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("schema_version", 4u32.to_le_bytes().as_slice())
            .unwrap();
    }
    assert!(txn.delete_table(REFUNDS_WAITING).unwrap());
    as_v9_ledger(&txn);
    txn.commit().unwrap();
    drop(db);

    let store = Store::open(&path, net.keys[3].clone(), TestClock::new(0)).unwrap();
    assert_eq!(store.stats().unwrap().schema_version, SCHEMA_VERSION);
    assert_eq!(site_rows(&store), rows);
    assert_eq!(store.network_totals().unwrap(), all);
    assert_eq!(
        row(&rows, "shop-a").sales().unwrap(),
        Money::from_fen(SALE - REFUND)
    );
}
