//! Opening files written by other schema versions: older ones are migrated in place,
//! newer ones refused with a message saying to upgrade.
//!
//! The old formats are written here with redb directly, as they were, independent of
//! the current code.

mod store_support;

use cardmesh_model::money::Money;
use cardmesh_node::store::{SCHEMA_VERSION, Store, StoreError};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use store_support::*;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Added in v2: the index of cards blocked now.
const BLOCKED: TableDefinition<&[u8; 8], ()> = TableDefinition::new("blocked");

/// Rewrites a closed store file as schema `version` left it: `edit` undoes in the same
/// transaction what later versions added, and the file is marked `version`.
fn as_schema(path: &Path, version: u32, edit: impl FnOnce(&redb::WriteTransaction)) {
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    edit(&txn);
    txn.open_table(META)
        .unwrap()
        .insert("schema_version", version.to_le_bytes().as_slice())
        .unwrap();
    txn.commit().unwrap();
}

/// Turns a current file into what schema v1 wrote: the same tables but no index of
/// blocked cards.
fn make_v1(path: &Path) {
    as_schema(path, 1, |txn| {
        as_v9_ledger(txn);
        assert!(txn.delete_table(BLOCKED).unwrap());
        assert!(txn.delete_table(CARD_COUNTERS).unwrap());
    });
}

#[test]
fn a_v1_store_is_migrated_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new();
    let path = dir.path().join("node0.redb");
    let store = net.store(dir.path(), 0);
    let lost = store.append_local(block(asn(1))).unwrap();
    store.append_local(block(asn(2))).unwrap();
    store.append_local(block(asn(3))).unwrap();
    store
        .append_local(clear(asn(1), vec![lost.entry_ref()]))
        .unwrap();
    let vv = store.version_vector().unwrap();
    drop(store);
    make_v1(&path);

    let store = Store::open(&path, net.keys[0].clone(), TestClock::new(0)).unwrap();
    let stats = store.stats().unwrap();
    assert_eq!(stats.schema_version, SCHEMA_VERSION);
    assert_eq!(stats.blacklisted, 2);
    assert!(!store.is_blocked(&asn(1)).unwrap());
    assert!(store.is_blocked(&asn(2)).unwrap());
    assert_eq!(store.blacklisted_cards(10).unwrap(), vec![asn(2), asn(3)]);
    assert_eq!(store.version_vector().unwrap(), vv);
    store.verify_views().unwrap();
    store.append_local(block(asn(4))).unwrap();
    assert!(store.is_blocked(&asn(4)).unwrap());
    drop(store);

    let db = redb::Database::open(&path).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(META).unwrap();
    let version = meta.get("schema_version").unwrap().unwrap();
    assert_eq!(version.value(), SCHEMA_VERSION.to_le_bytes().as_slice());
}

#[test]
fn a_store_from_a_newer_cardmesh_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new();
    let path = dir.path().join("node0.redb");
    drop(net.store(dir.path(), 0));
    as_schema(&path, SCHEMA_VERSION + 1, |_| {});
    let err = Store::open(&path, net.keys[0].clone(), TestClock::new(0))
        .err()
        .unwrap();
    assert!(
        matches!(err, StoreError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade cardmesh"));
}

const FEEDS: TableDefinition<&[u8; 40], &[u8]> = TableDefinition::new("feeds");

/// Turns a current file into a v5 one that holds feed format 1 entries: the codec's
/// format byte of every entry says 1.
fn make_v5_of_feed_format_1(path: &Path) {
    as_schema(path, 5, |txn| {
        let mut feeds = txn.open_table(FEEDS).unwrap();
        let rows: Vec<([u8; 40], Vec<u8>)> = feeds
            .iter()
            .unwrap()
            .map(|r| {
                let (k, v) = r.unwrap();
                (*k.value(), v.value().to_vec())
            })
            .collect();
        assert!(!rows.is_empty());
        for (k, mut v) in rows {
            v[2] = 1;
            feeds.insert(&k, v.as_slice()).unwrap();
        }
    });
}

#[test]
fn a_store_of_feed_format_1_is_refused_untouched_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new();
    let path = dir.path().join("node0.redb");
    let store = net.store(dir.path(), 0);
    store.append_local(block(asn(1))).unwrap();
    drop(store);
    make_v5_of_feed_format_1(&path);

    let err = Store::open(&path, net.keys[0].clone(), TestClock::new(0))
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::OldFeedFormat), "{err}");
    assert!(
        err.to_string().contains("re-create its data folder"),
        "{err}"
    );
    let db = redb::Database::open(&path).unwrap();
    let txn = db.begin_read().unwrap();
    let version = txn
        .open_table(META)
        .unwrap()
        .get("schema_version")
        .unwrap()
        .unwrap();
    assert_eq!(version.value(), 5u32.to_le_bytes().as_slice(), "still v5");
    let feeds = txn.open_table(FEEDS).unwrap();
    for row in feeds.iter().unwrap() {
        assert_eq!(row.unwrap().1.value()[2], 1, "entries left as they were");
    }
}

#[test]
fn a_file_that_is_not_a_store_is_reported_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new();
    let path = dir.path().join("other.redb");
    drop(redb::Database::create(&path).unwrap());
    let err = Store::open(&path, net.keys[0].clone(), TestClock::new(0))
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
}

/// Added in v3: the card-counter index and the intent tables.
const CARD_COUNTERS: TableDefinition<&[u8; 11], &[u8; 40]> = TableDefinition::new("card_counters");
const INTENTS: TableDefinition<&[u8; 40], u8> = TableDefinition::new("intents");
const PENDING_INTENTS: TableDefinition<&[u8; 51], ()> = TableDefinition::new("pending_intents");

#[test]
fn a_v2_store_gets_its_card_counters_indexed_on_open() {
    use cardmesh_model::body::CounterSpace;
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new();
    let path = dir.path().join("node1.redb");
    let store = net.store(dir.path(), 1);
    let sale = store
        .append_local(purchase(net.site_of(1), asn(1), 7, 500))
        .unwrap();
    drop(store);
    as_schema(&path, 2, |txn| {
        as_v9_ledger(txn);
        assert!(txn.delete_table(CARD_COUNTERS).unwrap());
        assert!(txn.delete_table(INTENTS).unwrap());
        assert!(txn.delete_table(PENDING_INTENTS).unwrap());
    });

    let store = Store::open(&path, net.keys[1].clone(), TestClock::new(0)).unwrap();
    assert_eq!(store.stats().unwrap().schema_version, SCHEMA_VERSION);
    let found = store
        .counter_entry(&asn(1), CounterSpace::Offline, 7)
        .unwrap()
        .unwrap();
    assert_eq!(found.entry_ref(), sale.entry_ref());
    assert!(
        store
            .counter_entry(&asn(1), CounterSpace::Offline, 8)
            .unwrap()
            .is_none()
    );
    assert!(store.pending_intents(&asn(1)).unwrap().is_empty());
    store.verify_views().unwrap();
}

/// Added in v7: each card's spending per business day.
const CARD_DAYS: TableDefinition<&[u8; 12], (i64, u32)> = TableDefinition::new("card_days");

/// Node 1's store with three purchases: card 1 at counters 0 and 1, card 2 at 0.
fn store_with_purchases(net: &Net, dir: &Path) -> (std::path::PathBuf, Store) {
    let store = net.store(dir, 1);
    for (card, counter, fen) in [(1, 0, 500), (1, 1, 250), (2, 0, 99)] {
        store
            .append_local(purchase(net.site_of(1), asn(card), counter, fen))
            .unwrap();
    }
    (dir.join("node1.redb"), store)
}

/// `store_with_purchases`, and counter 1 of card 1 again with other contents: a clone.
fn store_with_a_clone(net: &Net, dir: &Path) -> (std::path::PathBuf, Store) {
    let (path, store) = store_with_purchases(net, dir);
    store
        .append_local(purchase(net.site_of(1), asn(1), 1, 300))
        .unwrap();
    (path, store)
}

/// Asserts that the closed store at `path` has none of the tables `names`.
fn assert_tables_gone(path: &Path, names: &[&str]) {
    use redb::TableHandle;
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_read().unwrap();
    let held: Vec<String> = txn
        .list_tables()
        .unwrap()
        .map(|t| t.name().to_string())
        .collect();
    for name in names {
        assert!(!held.iter().any(|h| h == name), "{name} is gone");
    }
}

#[test]
fn a_v6_store_gets_its_cards_spending_per_day_summed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new();
    let (path, store) = store_with_purchases(&net, dir.path());
    let before = (
        store.card_spending(&asn(1), day()).unwrap(),
        store.card_spending(&asn(2), day()).unwrap(),
    );
    assert_eq!(before.0, (Money::from_fen(750), 2));
    drop(store);
    as_schema(&path, 6, |txn| {
        as_v9_ledger(txn);
        assert!(txn.delete_table(CARD_DAYS).unwrap())
    });

    let store = Store::open(&path, net.keys[1].clone(), TestClock::new(0)).unwrap();
    assert_eq!(store.stats().unwrap().schema_version, SCHEMA_VERSION);
    let after = (
        store.card_spending(&asn(1), day()).unwrap(),
        store.card_spending(&asn(2), day()).unwrap(),
    );
    assert_eq!(after, before);
    assert_eq!(
        store.card_spending(&asn(3), day()).unwrap(),
        (Money::ZERO, 0)
    );
    store.verify_views().unwrap();
}

/// Before v8: card -> its whole history as one value. Replaced in v8 by rows.
const CARD_CHAINS: TableDefinition<&[u8; 8], &[u8]> = TableDefinition::new("card_chains");
const CARD_HISTORY: TableDefinition<&[u8; 11], &[u8]> = TableDefinition::new("card_history");

#[test]
fn a_v7_store_gets_its_card_histories_split_into_rows_on_open() {
    use cardmesh_model::codec::{self, Kind};
    use cardmesh_model::report::{AnomalyKind, CardChain, ChainMarks, CounterSpace, Link, MarksV7};
    use std::collections::{BTreeMap, BTreeSet};
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new();
    let (path, store) = store_with_a_clone(&net, dir.path());
    let links = |n: u8| -> BTreeMap<(CounterSpace, u16), Link> {
        let chain = store.card_chain(&asn(n)).unwrap().unwrap();
        chain.links().map(|(s, c, l)| ((s, c), l.clone())).collect()
    };
    let old: [(BTreeMap<_, _>, MarksV7); 2] = [
        (
            links(1),
            (
                BTreeSet::from([(AnomalyKind::CloneSuspected, Some(CounterSpace::Offline), 1)]),
                BTreeMap::new(),
                BTreeSet::new(),
            ),
        ),
        (links(2), Default::default()),
    ];
    assert_eq!(old[0].0.len(), 2);
    let anomalies = store.anomalies().unwrap();
    assert!(!anomalies.is_empty());
    drop(store);
    // A v7 history was one value: its links, then its marks without the walk.
    as_schema(&path, 7, |txn| {
        as_v9_ledger(txn);
        assert!(txn.delete_table(CARD_HISTORY).unwrap());
        let mut chains = txn.open_table(CARD_CHAINS).unwrap();
        for (n, value) in [1, 2].into_iter().zip(&old) {
            let value = codec::encode(Kind::View, value);
            chains.insert(&asn(n).0, value.as_slice()).unwrap();
        }
    });

    let store = Store::open(&path, net.keys[1].clone(), TestClock::new(0)).unwrap();
    assert_eq!(store.stats().unwrap().schema_version, SCHEMA_VERSION);
    for (n, (links, marks)) in [1, 2].into_iter().zip(old) {
        let expected = CardChain::from_parts(
            links.into_iter().map(|((s, c), l)| (s, c, l)),
            ChainMarks::from(marks),
        );
        assert_eq!(store.card_chain(&asn(n)).unwrap().unwrap(), expected);
    }
    assert_eq!(store.anomalies().unwrap(), anomalies);
    // The next operation extends the migrated history.
    store
        .append_local(purchase(net.site_of(1), asn(2), 1, 1))
        .unwrap();
    assert_eq!(store.card_chain(&asn(2)).unwrap().unwrap().len(), 2);
    store.verify_views().unwrap();
    drop(store);
    assert_tables_gone(&path, &["card_chains"]);
}

/// Before v9: card transactions by terminal and day. Dropped in v9.
const LEDGER_BY_TERMINAL_DAY: TableDefinition<&[u8; 62], ()> =
    TableDefinition::new("ledger_by_terminal_day");

#[test]
fn a_v8_store_loses_its_ledger_by_terminal_and_still_answers_by_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new();
    let (path, store) = store_with_purchases(&net, dir.path());
    let site = net.site_of(1);
    let before = store.terminal_ledger(&site, &terminal(1), day()).unwrap();
    assert_eq!(before.len(), 3);
    drop(store);
    as_schema(&path, 8, |txn| {
        as_v9_ledger(txn);
        // What v8 held: one key per transaction, whatever it pointed at.
        let mut old = txn.open_table(LEDGER_BY_TERMINAL_DAY).unwrap();
        for n in 0..3u8 {
            old.insert(&[n; 62], ()).unwrap();
        }
    });

    let store = Store::open(&path, net.keys[1].clone(), TestClock::new(0)).unwrap();
    assert_eq!(store.stats().unwrap().schema_version, SCHEMA_VERSION);
    assert_eq!(
        store.terminal_ledger(&site, &terminal(1), day()).unwrap(),
        before
    );
    assert!(
        store
            .terminal_ledger(&site, &terminal(2), day())
            .unwrap()
            .is_empty()
    );
    store.verify_views().unwrap();
    drop(store);
    assert_tables_gone(&path, &["ledger_by_terminal_day"]);
}

#[test]
fn a_v9_store_gets_its_ledger_keyed_by_card_counter_on_open() {
    use cardmesh_model::body::CounterSpace;
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new();
    let (path, store) = store_with_a_clone(&net, dir.path());
    // The ledger keeps the clone too.
    let history = store.card_history(&asn(1)).unwrap();
    assert_eq!(history.len(), 3);
    let counter = |store: &Store, n| {
        store
            .counter_entry(&asn(1), CounterSpace::Offline, n)
            .unwrap()
            .map(|e| e.entry_ref())
    };
    let first_of_1 = counter(&store, 1);
    assert_eq!(first_of_1, Some(history[1].entry_ref()));
    drop(store);
    as_schema(&path, 9, as_v9_ledger);

    let store = Store::open(&path, net.keys[1].clone(), TestClock::new(0)).unwrap();
    assert_eq!(store.stats().unwrap().schema_version, SCHEMA_VERSION);
    assert_eq!(store.card_history(&asn(1)).unwrap(), history);
    assert_eq!(counter(&store, 1), first_of_1);
    assert_eq!(counter(&store, 0), Some(history[0].entry_ref()));
    assert_eq!(counter(&store, 2), None);
    store.verify_views().unwrap();
    drop(store);
    assert_tables_gone(&path, &["ledger_by_card", "card_counters"]);
}
