//! An in-memory replica: feeds plus every fold, in one value. It is the reference the
//! node's store is checked against (a refold from the feeds must equal the store's
//! views), and what the property tests and the network simulation run.

use crate::auth::{AuthError, Certificate, Membership};
use crate::blacklist::Blacklist;
use crate::body::{Body, CardTxn, CounterSpace, EntryRef};
use crate::docs::{DocName, Docs, discounts, network, pricebook};
use crate::entry::{Entry, EntryError, FeedHead, check_run, thin_signatures};
use crate::hlc::Hlc;
use crate::ids::{CardAsn, NodeId};
use crate::registry::{CardRegistry, Stamp};
use crate::sign::NodeKey;
use crate::vv::{FeedRange, VersionVector};
use std::collections::{BTreeMap, BTreeSet};

/// One counter of one card.
pub type CounterKey = (CardAsn, CounterSpace, u16);
/// A ledger entry on a counter (when, which) and the transaction it logs.
pub type CounterEntry = (Hlc, EntryRef, CardTxn);

/// The folded state of a replica.
#[derive(Default)]
pub struct Views {
    pub blacklist: Blacklist,
    pub cards: CardRegistry,
    pub docs: Docs,
    /// Card transactions by card, in HLC order (a set: arrival order must not matter).
    pub ledger: BTreeMap<CardAsn, BTreeSet<(Hlc, EntryRef)>>,
    pub alarms: BTreeSet<EntryRef>,
    /// Each card counter's ledger entries and their transactions: one per distinct
    /// transaction (two for a clone), so one transaction completed by two sites stays
    /// one entry, the earlier by (HLC, origin, seq).
    pub counters: BTreeMap<CounterKey, Vec<CounterEntry>>,
    /// Entries whose content could not be folded (a certificate for another network, a
    /// document change automerge refused); kept in the feed, reported here.
    pub unfoldable: Vec<(EntryRef, String)>,
}

impl Views {
    /// Puts a card transaction in the ledger, unless its counter already holds the same
    /// transaction (completed at two sites), in which case the earlier entry is kept.
    fn fold_txn(&mut self, t: &CardTxn, hlc: Hlc, at: EntryRef) {
        if let Some(space) = t.kind.counter_space() {
            let held = self
                .counters
                .entry((t.asn, space, t.card_counter))
                .or_default();
            match held.iter_mut().find(|(_, _, h)| h.same_transaction(t)) {
                Some(twin) => {
                    let old = (twin.0, twin.1);
                    if (hlc, at) < old {
                        *twin = (hlc, at, t.clone());
                        let ledger = self.ledger.entry(t.asn).or_default();
                        ledger.remove(&old);
                        ledger.insert((hlc, at));
                    }
                    return;
                }
                None => held.push((hlc, at, t.clone())),
            }
        }
        self.ledger.entry(t.asn).or_default().insert((hlc, at));
    }
}

/// A comparable digest of the views: equal snapshots mean replicas agree.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub vv: VersionVector,
    pub blocked: Vec<CardAsn>,
    pub cards: CardRegistry,
    pub ledger: BTreeMap<CardAsn, BTreeSet<(Hlc, EntryRef)>>,
    pub price_book: pricebook::PriceBook,
    pub site_prices: BTreeMap<DocName, pricebook::Schedule>,
    pub discounts: discounts::Discounts,
    pub network: network::NetworkRegistry,
}

/// What one `ingest` call did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct IngestReport {
    pub applied: usize,
    pub duplicates: usize,
    pub rejected: Vec<EntryError>,
}

pub struct Replica {
    membership: Membership,
    feeds: BTreeMap<NodeId, Vec<Entry>>,
    views: Views,
}

impl Replica {
    pub fn new(hq_cert: Certificate) -> Result<Replica, AuthError> {
        Ok(Replica {
            membership: Membership::new(hq_cert)?,
            feeds: BTreeMap::new(),
            views: Views::default(),
        })
    }

    /// Installs a certificate that arrived outside the feeds (a file, a sync hello).
    pub fn admit(&mut self, cert: Certificate) -> Result<bool, AuthError> {
        self.membership.admit(cert)
    }

    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    pub fn views(&self) -> &Views {
        &self.views
    }

    pub fn head(&self, origin: &NodeId) -> FeedHead {
        self.feeds
            .get(origin)
            .and_then(|f| f.last())
            .map_or(FeedHead::EMPTY, Entry::head)
    }

    pub fn version_vector(&self) -> VersionVector {
        let mut vv = VersionVector::new();
        for (o, f) in &self.feeds {
            vv.advance(*o, f.len() as u64);
        }
        vv
    }

    /// The entries of one range, as far as this replica holds them.
    pub fn entries(&self, r: FeedRange) -> &[Entry] {
        let feed = self.feeds.get(&r.origin).map_or(&[][..], Vec::as_slice);
        let from = (r.from.max(1) - 1) as usize;
        let to = (r.to as usize).min(feed.len());
        if from >= to { &[] } else { &feed[from..to] }
    }

    /// Signs the next entry of `key`'s feed and applies it here.
    pub fn append(&mut self, key: &NodeKey, hlc: Hlc, body: Body) -> Result<Entry, EntryError> {
        let entry = Entry::create(key, self.head(&key.node_id()), hlc, body);
        let mut report = self.ingest([entry.clone()]);
        match report.rejected.pop() {
            Some(e) => Err(e),
            None => Ok(entry),
        }
    }

    /// Edits a shared document as `key`'s node and appends the change to its feed.
    /// Returns `None` when the edit changed nothing.
    pub fn edit_doc(
        &mut self,
        key: &NodeKey,
        hlc: Hlc,
        name: DocName,
        f: impl FnOnce(&mut automerge::AutoCommit) -> Result<(), automerge::AutomergeError>,
    ) -> Result<Option<Entry>, EntryError> {
        let at = EntryRef {
            origin: key.node_id(),
            seq: self.head(&key.node_id()).seq + 1,
        };
        // Edit a fork: the change reaches the real document only through `append`, so an
        // edit this node may not make leaves the document as it was.
        let mut draft = self.views.docs.get_mut(&name).fork();
        let change = crate::docs::edit(&mut draft, &key.node_id(), f)
            .map_err(|e| EntryError::BadDocChange(at, e))?;
        change
            .map(|change| {
                self.append(
                    key,
                    hlc,
                    Body::Doc(crate::body::DocChange { doc: name, change }),
                )
            })
            .transpose()
    }

    /// Verifies and applies entries from any origins, in any order, with duplicates.
    /// Each origin's entries are applied as far as they are valid and contiguous; the
    /// first bad one (and everything after it from that origin) is reported and skipped.
    pub fn ingest(&mut self, entries: impl IntoIterator<Item = Entry>) -> IngestReport {
        let mut report = IngestReport::default();
        let mut by_origin: BTreeMap<NodeId, BTreeMap<u64, Entry>> = BTreeMap::new();
        for e in entries {
            let slot = by_origin.entry(e.origin).or_default();
            match slot.get(&e.seq) {
                Some(held) if !held.same_as(&e) => {
                    report.rejected.push(EntryError::Fork(e.entry_ref()));
                }
                Some(_) => report.duplicates += 1,
                None => {
                    slot.insert(e.seq, e);
                }
            }
        }
        // HQ's feed first: it carries the certificates that admit everyone else.
        let hq = self.membership.hq();
        let mut origins: Vec<NodeId> = by_origin.keys().copied().collect();
        origins.sort_by_key(|o| (*o != hq, *o));
        for origin in origins {
            let batch = by_origin.remove(&origin).unwrap_or_default();
            let head = self.head(&origin);
            let mut fresh = Vec::new();
            for (seq, e) in batch {
                if seq == 0 {
                    report.rejected.push(EntryError::Gap {
                        origin,
                        expected: head.seq + 1,
                        got: 0,
                    });
                } else if seq > head.seq {
                    fresh.push(e);
                } else if self.feeds[&origin][(seq - 1) as usize].same_as(&e) {
                    report.duplicates += 1;
                } else {
                    report.rejected.push(EntryError::Fork(e.entry_ref()));
                }
            }
            let check = check_run(head, &self.membership, &fresh);
            fresh.truncate(check.accepted);
            thin_signatures(&mut fresh);
            for e in fresh {
                self.fold(&e);
                self.feeds.entry(origin).or_default().push(e);
                report.applied += 1;
            }
            report.rejected.extend(check.error);
        }
        report
    }

    fn fold(&mut self, e: &Entry) {
        let at = e.entry_ref();
        let v = &mut self.views;
        match &e.body {
            Body::Card(t) | Body::Completion(crate::body::Completion { txn: t, .. }) => {
                v.fold_txn(t, e.hlc, at);
            }
            Body::Blacklist(b) => v.blacklist.apply(at, e.hlc, b),
            Body::CardRegistry(c) => v.cards.apply(c, Stamp { hlc: e.hlc, at }),
            Body::Operator(_) | Body::Intent(_) | Body::IntentVoid(_) | Body::Settlement(_) => {}
            Body::Alarm(_) => {
                v.alarms.insert(at);
            }
            Body::Enroll(cert) => {
                if let Err(err) = self.membership.admit(cert.clone()) {
                    v.unfoldable.push((at, err.to_string()));
                }
            }
            Body::Revoke(r) => self.membership.revoke(r.clone()),
            Body::Doc(d) => {
                if let Err(err) = v.docs.apply(&d.doc, &d.change) {
                    v.unfoldable.push((at, err.to_string()));
                }
            }
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let docs = &self.views.docs;
        let read = |name: &DocName| docs.get(name);
        Snapshot {
            vv: self.version_vector(),
            blocked: self.views.blacklist.blocked_cards().copied().collect(),
            cards: self.views.cards.clone(),
            ledger: self.views.ledger.clone(),
            price_book: read(&DocName::PriceBook)
                .map(pricebook::read)
                .unwrap_or_default(),
            site_prices: docs
                .names()
                .filter(|n| matches!(n, DocName::SitePrices(_)))
                .map(|n| {
                    (
                        n.clone(),
                        pricebook::read(docs.get(n).expect("listed")).prices,
                    )
                })
                .collect(),
            discounts: read(&DocName::Discounts)
                .map(discounts::read)
                .unwrap_or_default(),
            network: read(&DocName::Network)
                .map(network::read)
                .unwrap_or_default(),
        }
    }
}
