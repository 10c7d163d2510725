//! The refold check: rebuild an in-memory `Replica` from the stored feeds and compare
//! every view with it. Run by the crash tests and by `cardmesh check`.
//!
//! The replica is given every stored certificate up front and the other origins' feeds
//! before HQ's, so that revocations come last: an entry the store accepted before it
//! learned of its writer's revocation is kept there, and the refold must accept it too.

use super::docs;
use super::error::StoreError;
use super::schema::*;
use cardmesh_model::blacklist::CardBlocks;
use cardmesh_model::body::{Body, EntryRef};
use cardmesh_model::docs::{DocName, discounts, network, pricebook};
use cardmesh_model::registry::CardRecord;
use cardmesh_model::replica::Replica;
use cardmesh_model::{CardAsn, Certificate, Entry, Hlc, NodeId};
use redb::{
    Key, ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle, Value,
};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

fn differ(what: String) -> StoreError {
    StoreError::ViewsDiffer(what)
}

fn same<T: PartialEq + Debug>(what: &str, stored: &T, refold: &T) -> Result<(), StoreError> {
    if stored == refold {
        Ok(())
    } else {
        Err(differ(format!(
            "{what}: stored {stored:?}, refold {refold:?}"
        )))
    }
}

pub fn verify(txn: &ReadTransaction, hq_cert: &Certificate) -> Result<(), StoreError> {
    let mut replica = Replica::new(hq_cert.clone()).map_err(StoreError::corrupt)?;
    for row in txn.open_table(CERTS)?.iter()? {
        replica
            .admit(decode_cert(row?.1.value())?)
            .map_err(StoreError::corrupt)?;
    }
    let mut feeds: BTreeMap<NodeId, Vec<Entry>> = BTreeMap::new();
    for row in txn.open_table(FEEDS)?.iter()? {
        let (key, bytes) = row?;
        let at = parse_entry_key(key.value());
        let entry = decode_entry(bytes.value())?;
        if entry.entry_ref() != at {
            return Err(differ(format!(
                "feed row {at:?} holds entry {:?}",
                entry.entry_ref()
            )));
        }
        feeds.entry(at.origin).or_default().push(entry);
    }
    let hq = hq_cert.hq;
    let hq_feed = feeds.remove(&hq).unwrap_or_default();
    replica.ingest(feeds.values().flatten().cloned());
    replica.ingest(hq_feed.iter().cloned());
    feeds.insert(hq, hq_feed);

    let stored_vv = {
        let mut vv = cardmesh_model::VersionVector::new();
        for row in txn.open_table(HEADS)?.iter()? {
            let (origin, head) = row?;
            let origin = NodeId(*origin.value());
            let head = parse_head(head.value());
            let last = feeds.get(&origin).and_then(|f| f.last()).map(Entry::head);
            same(&format!("head of feed {origin}"), &Some(head), &last)?;
            vv.advance(origin, head.seq);
        }
        vv
    };
    same("version vector", &stored_vv, &replica.version_vector())?;
    let views = replica.views();
    let entries = || feeds.values().flatten();

    let blacklisted: BTreeSet<CardAsn> = entries()
        .filter_map(|e| match &e.body {
            Body::Blacklist(b) => Some(b.asn()),
            _ => None,
        })
        .collect();
    let mut stored_blacklisted = BTreeSet::new();
    for row in txn.open_table(BLACKLIST)?.iter()? {
        let (asn, state) = row?;
        let asn = CardAsn(*asn.value());
        let state: CardBlocks = decode_view(state.value(), "blacklist")?;
        same(
            &format!("blacklist of card {asn}"),
            &Some(&state),
            &views.blacklist.card(&asn),
        )?;
        stored_blacklisted.insert(asn);
    }
    same(
        "cards with blacklist events",
        &stored_blacklisted,
        &blacklisted,
    )?;
    let mut blocked = BTreeSet::new();
    for row in txn.open_table(BLOCKED)?.iter()? {
        blocked.insert(CardAsn(*row?.0.value()));
    }
    let refold_blocked: BTreeSet<CardAsn> = views.blacklist.blocked_cards().copied().collect();
    same("blocked cards", &blocked, &refold_blocked)?;

    let cards = txn.open_table(CARDS)?;
    for row in cards.iter()? {
        let (asn, record) = row?;
        let asn = CardAsn(*asn.value());
        let record: CardRecord = decode_view(record.value(), "card record")?;
        same(
            &format!("registry record of card {asn}"),
            &Some(&record),
            &views.cards.get(&asn),
        )?;
    }
    same(
        "number of registered cards",
        &(cards.len()? as usize),
        &views.cards.len(),
    )?;

    let mut ledger: BTreeMap<CardAsn, BTreeSet<(Hlc, EntryRef)>> = BTreeMap::new();
    let mut stored_card = BTreeSet::new();
    for row in txn.open_table(LEDGER_BY_CARD)?.iter()? {
        let key = *row?.0.value();
        stored_card.insert(key);
        let asn = CardAsn(key[..8].try_into().expect("8-byte card number"));
        let hlc = card_key_hlc(&key);
        ledger
            .entry(asn)
            .or_default()
            .insert((hlc, index_tail(&key)));
    }
    same("ledger by card", &ledger, &views.ledger)?;

    let (mut by_card, mut by_site) = (BTreeSet::new(), BTreeSet::new());
    let mut days: BTreeMap<[u8; 12], (i64, u32)> = BTreeMap::new();
    let by_ref: BTreeMap<EntryRef, &Entry> = entries().map(|e| (e.entry_ref(), e)).collect();
    for (hlc, at) in views.ledger.values().flatten() {
        if let Some(t) = by_ref.get(at).and_then(|e| e.body.card_txn()) {
            by_card.insert(card_key(t, *hlc, at));
            by_site.insert(site_day_key(&t.site, t.business_day, *hlc, at));
            tally_card_day(&mut days, t);
        }
    }
    let mut stored_days = BTreeMap::new();
    for row in txn.open_table(CARD_DAYS)?.iter()? {
        let (k, v) = row?;
        stored_days.insert(*k.value(), v.value());
    }
    same("cards' spending per day", &stored_days, &days)?;
    let mut stored_site = BTreeSet::new();
    for row in txn.open_table(LEDGER_BY_SITE_DAY)?.iter()? {
        stored_site.insert(*row?.0.value());
    }
    if stored_card != by_card {
        return Err(differ("the ledger index by card and counter".into()));
    }
    if stored_site != by_site {
        return Err(differ("the ledger index by site and day".into()));
    }

    let mut alarms = BTreeSet::new();
    for row in txn.open_table(ALARMS)?.iter()? {
        alarms.insert(parse_entry_key(row?.0.value()));
    }
    same("alarms", &alarms, &views.alarms)?;

    verify_docs(txn, &replica)
}

/// What a document says, read the way its users read it.
#[derive(Debug, PartialEq)]
enum DocView {
    PriceBook(pricebook::PriceBook),
    Prices(pricebook::Schedule),
    Network(network::NetworkRegistry),
    Discounts(discounts::Discounts),
}

fn read_doc(name: &DocName, doc: &automerge::AutoCommit) -> DocView {
    match name {
        DocName::PriceBook => DocView::PriceBook(pricebook::read(doc)),
        DocName::SitePrices(_) => DocView::Prices(pricebook::read(doc).prices),
        DocName::Network => DocView::Network(network::read(doc)),
        DocName::Discounts => DocView::Discounts(discounts::read(doc)),
    }
}

fn verify_docs(txn: &ReadTransaction, replica: &Replica) -> Result<(), StoreError> {
    let table = txn.open_table(DOCS)?;
    let changes = txn.open_table(DOC_CHANGES)?;
    let mut names = BTreeSet::new();
    for row in table.iter()? {
        let name: DocName = postcard::from_bytes(row?.0.value())
            .map_err(|e| StoreError::corrupt(format!("document name: {e}")))?;
        names.insert(name);
    }
    let refold_names: BTreeSet<DocName> = replica.views().docs.names().cloned().collect();
    same("documents", &names, &refold_names)?;
    for name in names {
        let (mut stored, _) = docs::load(&table, &changes, &name)?.expect("listed above");
        let mut refold = replica.views().docs.get(&name).expect("same names").clone();
        same(
            &format!("{name}"),
            &read_doc(&name, &stored),
            &read_doc(&name, &refold),
        )?;
        let (mut a, mut b) = (stored.get_heads(), refold.get_heads());
        a.sort();
        b.sort();
        same(&format!("heads of {name}"), &a, &b)?;
    }
    Ok(())
}

/// A hash of everything replicas must agree on once they hold the same entries: feed
/// heads, membership, and every folded view (the documents by their automerge heads,
/// since two replicas may store the same document state in different snapshots).
/// Node-local tables (config, terminal counters, schema) are left out.
pub fn replica_digest(txn: &ReadTransaction) -> Result<cardmesh_model::Hash, StoreError> {
    let mut h = blake3::Hasher::new();
    hash_table(txn, HEADS, &mut h)?;
    hash_table(txn, CERTS, &mut h)?;
    hash_table(txn, REVOCATIONS, &mut h)?;
    hash_table(txn, BLACKLIST, &mut h)?;
    hash_table(txn, BLOCKED, &mut h)?;
    hash_table(txn, CARDS, &mut h)?;
    hash_table(txn, LEDGER_BY_CARD, &mut h)?;
    hash_table(txn, LEDGER_BY_SITE_DAY, &mut h)?;
    hash_table(txn, CARD_DAYS, &mut h)?;
    hash_table(txn, ALARMS, &mut h)?;
    hash_table(txn, UNFOLDABLE, &mut h)?;
    let docs_table = txn.open_table(DOCS)?;
    let changes = txn.open_table(DOC_CHANGES)?;
    for row in docs_table.iter()? {
        let (key, _) = row?;
        let key = key.value().to_vec();
        let label = String::from_utf8_lossy(&key).into_owned();
        if let Some((mut doc, _)) = docs::load_key(&docs_table, &changes, &key, &label)? {
            let mut heads = doc.get_heads();
            heads.sort();
            h.update(&key);
            for head in heads {
                h.update(&head.0);
            }
        }
    }
    Ok(cardmesh_model::Hash(*h.finalize().as_bytes()))
}

fn hash_table<K: Key + 'static, V: Value + 'static>(
    txn: &ReadTransaction,
    table: TableDefinition<K, V>,
    h: &mut blake3::Hasher,
) -> Result<(), StoreError> {
    h.update(table.name().as_bytes());
    for row in txn.open_table(table)?.iter()? {
        let (k, v) = row?;
        for bytes in [
            K::as_bytes(&k.value()).as_ref(),
            V::as_bytes(&v.value()).as_ref(),
        ] {
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        }
    }
    Ok(())
}
