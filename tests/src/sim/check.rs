//! The end of a run: every link heals, every card comes back to a counter (its pending
//! intents settle, its grey lock is debited), and then the invariants must hold on
//! every node. Each check panics with what differs; `run` adds the seed.

use super::line::Faults;
use super::model::blocked_for;
use super::reader::SimReader;
use super::workload::Sim;
use cardmesh_drivers::epurse::EPurse;
use cardmesh_model::body::{Body, CardTxn, CounterSpace, TxnKind};
use cardmesh_model::entry::Entry;
use cardmesh_model::sync::Limits;
use cardmesh_model::{CardAsn, FeedRange, Money, Role};
use cardmesh_node::pos::PosError;
use std::collections::BTreeMap;

/// Every LAN comes back and every site syncs with HQ, both ways, until all nodes hold
/// the same feeds.
pub fn heal(sim: &mut Sim) {
    sim.lan_up.iter_mut().for_each(|up| *up = true);
    let n = sim.world.nodes.len();
    for _ in 0..3 {
        for i in (1..n).chain(1..n) {
            let out = sim.session(i, 0, Faults::CLEAN, Limits::DEFAULT);
            assert!(
                out.completed,
                "a clean session between {} and HQ did not complete: {out:?}",
                sim.world.nodes[i].name
            );
        }
        let first = sim.world.hq().version_vector().expect("version vector");
        if sim
            .world
            .nodes
            .iter()
            .all(|n| n.store().version_vector().expect("version vector") == first)
        {
            return;
        }
    }
    panic!("the network did not converge after healing");
}

/// A card blocked at HQ is refused at every site once the block reached it.
pub fn blocked_cards_are_refused_everywhere(sim: &mut Sim) {
    sim.pull_probability = 0.0;
    let n = sim.world.nodes.len();
    for c in 0..sim.cards.len() {
        let asn = sim.cards[c].asn;
        if !sim.world.hq().is_blocked(&asn).expect("blacklist") {
            continue;
        }
        let hq_vv = sim.world.hq().version_vector().expect("version vector");
        assert!(
            blocked_for(&sim.blacklist, asn, &hq_vv),
            "HQ blocks {asn} but no block the simulation wrote explains it"
        );
        for i in 1..n {
            sim.cards[c].at = i;
            let refused = sim.attempt_purchase(c);
            assert!(
                matches!(refused, Err(PosError::Blacklisted(_))),
                "{}: blocked card {asn} was not refused: {refused:?}",
                sim.world.nodes[i].name
            );
        }
    }
}

/// Every card comes back: to HQ, which lifts its blocks and settles its intents, then
/// to a station if it is still grey-locked.
pub fn return_cards(sim: &mut Sim) {
    sim.pull_probability = 0.0;
    for c in 0..sim.cards.len() {
        let asn = sim.cards[c].asn;
        sim.cards[c].at = 0;
        if sim.world.hq().is_blocked(&asn).expect("blacklist") || sim.chip_blocked(c) {
            sim.hq_unblock(c);
        }
        let pos = sim.world.nodes[0].pos(&sim.world.clock).expect("HQ POS");
        let chip = sim.cards[c].chip.take().expect("card in hand");
        let mut purse = EPurse::new(SimReader::new(chip, None));
        let view = pos.query(&mut purse);
        sim.cards[c].chip = Some(purse.into_reader().take());
        let view = view.unwrap_or_else(|e| panic!("HQ cannot read back {asn}: {e}"));
        sim.tally
            .fault_n("intent settled at the end", view.settled.len());
        if sim.chip_locked(c) {
            sim.cards[c].at = 1;
            assert_eq!(sim.world.nodes[1].role, Role::Station);
            // A station that has not heard of HQ's unblock refuses the card (and blocks
            // its chip again): the customer comes once the unblock has reached it.
            let out = sim.session(1, 0, Faults::CLEAN, Limits::DEFAULT);
            assert!(
                out.completed,
                "a clean session with the station failed: {out:?}"
            );
            assert!(
                sim.unlock(c),
                "{asn}: the station refused the debit for unlock"
            );
            assert!(
                !sim.chip_locked(c),
                "{asn} is still grey-locked after its debit"
            );
        }
    }
}

/// The invariants, on every node.
pub fn invariants(sim: &Sim) {
    converged(sim);
    nothing_pending(sim);
    acknowledged_once_everywhere(sim);
    ledgers_equal_cards(sim);
    float_balances(sim);
}

fn converged(sim: &Sim) {
    let hq = sim.world.hq();
    let vv = hq.version_vector().expect("version vector");
    let digest = hq.replica_digest().expect("digest");
    for n in &sim.world.nodes {
        let s = n.store();
        s.verify_views()
            .unwrap_or_else(|e| panic!("{}: views differ from a refold: {e}", n.name));
        assert_eq!(
            s.version_vector().expect("vv"),
            vv,
            "{} holds other feeds",
            n.name
        );
        assert_eq!(
            s.replica_digest().expect("digest"),
            digest,
            "{} folded the same feeds into other views than HQ",
            n.name
        );
    }
}

fn nothing_pending(sim: &Sim) {
    for n in &sim.world.nodes {
        for card in &sim.cards {
            let pending = n.store().pending_intents(&card.asn).expect("intents");
            assert!(
                pending.is_empty(),
                "{}: card {} came back yet {} intents are pending",
                n.name,
                card.asn,
                pending.len()
            );
        }
        let open = n.store().open_grey_locks().expect("grey locks");
        if let Some(lock) = open.first() {
            let history: Vec<String> = n
                .store()
                .card_history(&lock.asn)
                .expect("history")
                .iter()
                .filter_map(|e| match &e.body {
                    Body::Card(t) => Some(format!(
                        "{}#{} {} counter {} refers to {:?}",
                        e.origin.short(),
                        e.seq,
                        t.kind.name(),
                        t.card_counter,
                        t.refers_to.map(|r| (r.origin.short(), r.seq))
                    )),
                    _ => None,
                })
                .collect();
            let entry = n.store().entry(lock.at).expect("the lock's entry");
            panic!(
                "{}: grey lock {}#{} of {} left open after every card returned; the lock: {:?}; its history: {history:#?}",
                n.name,
                lock.at.origin.short(),
                lock.at.seq,
                lock.asn,
                entry.map(|e| e.body)
            );
        }
    }
}

fn acknowledged_once_everywhere(sim: &Sim) {
    for n in &sim.world.nodes {
        let s = n.store();
        for ack in &sim.acks {
            let held = s.entry(ack.entry).expect("entries");
            assert!(
                matches!(held.map(|e| e.body), Some(Body::Card(_))),
                "{}: acknowledged {:?} is missing",
                n.name,
                ack.entry
            );
            let indexed = s
                .counter_entry(&ack.asn, ack.space, ack.counter)
                .expect("counter index")
                .map(|e| e.entry_ref());
            assert_eq!(
                indexed,
                Some(ack.entry),
                "{}: card {} counter {} ({:?}) is not the acknowledged entry",
                n.name,
                ack.asn,
                ack.counter,
                ack.space
            );
        }
    }
}

/// What a transaction does to the balance on the card.
fn balance_effect(kind: &TxnKind, amount: Money) -> i64 {
    match kind {
        TxnKind::Load | TxnKind::Refund | TxnKind::Reversal => amount.fen(),
        TxnKind::Purchase | TxnKind::Return { .. } | TxnKind::DebitForUnlock => -amount.fen(),
        TxnKind::GreyLock | TxnKind::Issue { .. } | TxnKind::Replace { .. } => 0,
    }
}

/// The card transactions of `entries` as a ledger counts them: a transaction logged
/// where it happened and the completions other nodes logged of its intent hold the
/// same card counter, and count once. Two different transactions on one counter fail.
fn ledger(node: &str, entries: Vec<Entry>) -> Vec<CardTxn> {
    let mut seen: BTreeMap<(CardAsn, bool, u16), CardTxn> = BTreeMap::new();
    let mut out = Vec::new();
    for e in entries {
        let Some(t) = e.body.card_txn() else { continue };
        if let Some(space) = t.kind.counter_space() {
            let key = (t.asn, space == CounterSpace::Online, t.card_counter);
            if let Some(first) = seen.get(&key) {
                let same = (first.kind == t.kind)
                    && first.amount == t.amount
                    && first.terminal == t.terminal
                    && first.card_time == t.card_time;
                assert!(
                    same,
                    "{node}: card {} has two different ledger entries for counter {} ({space:?}): {first:?} and {t:?}",
                    t.asn, t.card_counter
                );
                continue;
            }
            seen.insert(key, t.clone());
        }
        out.push(t.clone());
    }
    out
}

fn ledgers_equal_cards(sim: &Sim) {
    for n in &sim.world.nodes {
        for card in &sim.cards {
            let history = n.store().card_history(&card.asn).expect("history");
            let balance: i64 = ledger(&n.name, history)
                .iter()
                .map(|t| balance_effect(&t.kind, t.amount))
                .sum();
            let chip = i64::from(card.chip.as_ref().expect("card in hand").balance());
            assert_eq!(
                balance, chip,
                "{}: the ledger of {} says {balance} fen, the card holds {chip}",
                n.name, card.asn
            );
        }
    }
}

/// Money on all cards = loads - purchases - debits - refunds paid to cards, summed over
/// every feed HQ holds (not through the card index).
fn float_balances(sim: &Sim) {
    let hq = sim.world.hq();
    let vv = hq.version_vector().expect("version vector");
    let mut entries = Vec::new();
    for (origin, seq) in vv.iter() {
        let range = FeedRange {
            origin: *origin,
            from: 1,
            to: *seq,
        };
        entries.extend(hq.entries(range, usize::MAX).expect("feed"));
    }
    let ledger: i64 = ledger("hq", entries)
        .iter()
        .map(|t| balance_effect(&t.kind, t.amount))
        .sum();
    let cards: i64 = sim
        .cards
        .iter()
        .map(|c| i64::from(c.chip.as_ref().expect("card in hand").balance()))
        .sum();
    assert_eq!(
        ledger, cards,
        "float: the feeds say {ledger} fen, the cards hold {cards}"
    );
}
