//! The random workload and the faults, one step at a time, all drawn from the run's
//! one RNG: card operations on virtual cards that travel between sites, HQ's and the
//! operators' actions, links that come and go (LAN sessions, a nightly dial-up on a
//! lossy line, sticks carried around, one of them damaged now and then) and crashes.
//! Each operation checks what it can on the spot (a card blocked where the block
//! arrived is refused); the end state is checked by `check`.

use super::clock::{HOUR_MS, MINUTE_MS};
use super::line::{self, Faults, LineOutcome};
use super::model::{Ack, BlacklistWrite, Card, Tally, blocked_for};
use super::reader::{Pull, SimReader};
use super::world::{FUEL, OPERATOR_PIN, SHOP_ITEM, World};
use cardmesh_drivers::card::{Personalization, VirtualCard};
use cardmesh_drivers::epurse::{EPurse, EpurseError};
use cardmesh_drivers::sam::SoftwareSam;
use cardmesh_drivers::types::{Asn, Pin};
use cardmesh_model::body::{
    BlacklistEvent, BlockReason, Body, CardChange, CardEvent, CounterSpace, Holder,
};
use cardmesh_model::docs::DocName;
use cardmesh_model::docs::pricebook;
use cardmesh_model::sync::Limits;
use cardmesh_model::{BusinessDay, CardAsn, Money, ProductId, Quantity, Role};
use cardmesh_node::pos::{BasketLine, Pos, PosError, Receipt};
use cardmesh_node::sam::{StoreSeq, software_sam};
use cardmesh_node::store::Clock;
use cardmesh_node::usb;
use rand::RngExt;
use rand::rngs::StdRng;
use std::path::PathBuf;

pub const CARD_PIN: &str = "123456";

/// A stick and where it is.
pub struct Stick {
    pub at: usize,
    /// A file damaged since the last visit, which that visit must report.
    pub damaged: Option<PathBuf>,
}

/// The whole state of a run.
pub struct Sim {
    pub world: World,
    pub rng: StdRng,
    pub cards: Vec<Card>,
    pub sticks: Vec<Stick>,
    pub lan_up: Vec<bool>,
    pub acks: Vec<Ack>,
    pub blacklist: Vec<BlacklistWrite>,
    pub tally: Tally,
    /// How many cards a run issues at most.
    pub max_cards: usize,
    /// How often a customer pulls the card out during an operation.
    pub pull_probability: f64,
}

fn pin() -> Pin {
    Pin::parse(CARD_PIN).expect("card PIN")
}

/// What happened to a card operation: for the tallies and the on-the-spot checks.
enum Done {
    Ok,
    Refused,
}

impl Sim {
    pub fn new(world: World, rng: StdRng, max_cards: usize) -> Sim {
        let n = world.nodes.len();
        let mut sim = Sim {
            world,
            rng,
            cards: Vec::new(),
            sticks: (0..2)
                .map(|k| Stick {
                    at: k % n,
                    damaged: None,
                })
                .collect(),
            lan_up: vec![true; n],
            acks: Vec::new(),
            blacklist: Vec::new(),
            tally: Tally::default(),
            max_cards,
            pull_probability: 0.08,
        };
        // A site's first sync, at installation: it brings the registry and the prices.
        for i in 1..n {
            sim.session(0, i, Faults::CLEAN, Limits::DEFAULT);
        }
        for i in 0..n {
            sim.login(i);
        }
        sim
    }

    fn now_ms(&self) -> u64 {
        self.world.clock.now_ms()
    }

    fn pos(&self, i: usize) -> Pos {
        self.world.nodes[i]
            .pos(&self.world.clock)
            .unwrap_or_else(|e| panic!("{}: POS does not open: {e}", self.world.nodes[i].name))
    }

    fn login(&mut self, i: usize) {
        let node = &self.world.nodes[i];
        let pos = self.pos(i);
        if pos.session().is_err() {
            pos.login(&node.operator, OPERATOR_PIN)
                .unwrap_or_else(|e| panic!("{}: login: {e}", node.name));
        }
    }

    /// One step: time passes, then one thing happens.
    pub fn step(&mut self) {
        let minutes = self.rng.random_range(1..40);
        self.world.clock.advance(minutes * MINUTE_MS);
        let n = self.world.nodes.len();
        match self.rng.random_range(0..100) {
            0..=5 => self.issue(),
            6..=14 => self.with_card(|s, c| s.load(c)),
            15..=36 => self.with_card(|s, c| s.purchase(c)),
            37..=45 => self.with_card(|s, c| s.fuel(c)),
            46..=48 => self.with_card(|s, c| s.report_lost(c)),
            49..=50 => self.with_card(|s, c| s.hq_block(c)),
            51..=52 => self.with_card(|s, c| s.hq_unblock(c)),
            53..=54 => self.price_change(),
            55..=57 => self.operator_action(),
            58..=65 => self.with_card(|s, c| s.travel(c)),
            66..=75 => {
                let a = self.rng.random_range(0..n);
                let b = self.rng.random_range(0..n);
                self.lan(a, b);
            }
            76..=79 => {
                let i = self.rng.random_range(0..n);
                self.lan_up[i] = !self.lan_up[i];
                self.tally
                    .fault(if self.lan_up[i] { "lan up" } else { "lan down" });
            }
            80..=84 => self.dial_up(),
            85..=91 => self.stick_visit(),
            92..=93 => self.damage_stick(),
            94..=96 => {
                let i = self.rng.random_range(0..n);
                self.crash(i);
            }
            _ => self.crash_mid_session(),
        }
    }

    fn with_card(&mut self, f: impl FnOnce(&mut Sim, usize)) {
        if !self.cards.is_empty() {
            let c = self.rng.random_range(0..self.cards.len());
            f(self, c);
        }
    }

    // ---- card operations ----------------------------------------------------------

    /// Runs a card operation on card `c` at the node where it is, through a reader the
    /// customer may pull it from; checks the blacklist promise on the way.
    fn card_op(
        &mut self,
        c: usize,
        what: &'static str,
        op: impl FnOnce(
            &Pos,
            &mut EPurse<SimReader>,
            &mut SoftwareSam<StoreSeq>,
        ) -> Result<Receipt, PosError>,
    ) -> Option<Done> {
        let at = self.cards[c].at;
        let pull = self.rng.random_bool(self.pull_probability).then(|| Pull {
            at_command: self.rng.random_range(1..12),
            executed: self.rng.random_bool(0.5),
        });
        let asn = self.cards[c].asn;
        let node = &self.world.nodes[at];
        let vv = node.store().version_vector().expect("version vector");
        let must_refuse = blocked_for(&self.blacklist, asn, &vv);
        let chip = self.cards[c].chip.take().expect("card in hand");
        let mut purse = EPurse::new(SimReader::new(chip, pull));
        // Terminal and SAM hold the store: they go before a crash may drop it.
        let result = {
            let pos = self.pos(at);
            let mut sam = software_sam(node.store(), node.key(), node.terminal)
                .unwrap_or_else(|e| panic!("{}: no SAM: {e}", node.name));
            op(&pos, &mut purse, &mut sam)
        };
        let reader = purse.into_reader();
        let pulled = reader.pulled();
        self.cards[c].chip = Some(reader.take());
        self.tally.op(what);
        tracing::debug!(
            card = %asn,
            at = %self.world.nodes[at].name,
            what,
            ?pull,
            pulled,
            result = ?result.as_ref().map(|r| (r.entry, r.txn.card_counter, r.txn.amount, r.txn.balance_after)),
            "card op"
        );
        if pulled {
            self.tally.fault("card pulled mid-operation");
        }
        let refused_as_blocked = matches!(result, Err(PosError::Blacklisted(_)));
        if must_refuse && !pulled {
            assert!(
                refused_as_blocked,
                "{}: card {asn} is blocked in the feeds this node holds, yet the {what} gave {:?}",
                node.name,
                result.as_ref().map(|r| r.entry)
            );
        }
        match result {
            Ok(r) => {
                if let Some(space) = r.txn.kind.counter_space() {
                    self.acks.push(Ack {
                        entry: r.entry,
                        asn,
                        space,
                        counter: r.txn.card_counter,
                    });
                }
                Some(Done::Ok)
            }
            Err(PosError::Interrupted(_)) => {
                self.tally.fault("intent left pending");
                if self.rng.random_bool(0.5) {
                    self.crash(at);
                }
                None
            }
            Err(PosError::Store(e)) => panic!("{}: store failed in a {what}: {e}", node.name),
            Err(e) => {
                self.tally.op(match e {
                    PosError::Blacklisted(_) => "refused: blacklisted",
                    PosError::Risk(_) => "refused: risk limit",
                    PosError::Card(_) => "refused by the card",
                    _ => "refused: other",
                });
                Some(Done::Refused)
            }
        }
    }

    /// HQ sells a new card, named or anonymous.
    fn issue(&mut self) {
        if self.cards.len() >= self.max_cards {
            return;
        }
        let n = self.cards.len() as u8 + 1;
        let asn = Asn([0x10, 0, 0, 0, 0, 0, 0x5e, n]);
        let chip = VirtualCard::new(Personalization {
            asn,
            keys: self.world.masters.card_keys(&asn),
            pin: pin(),
            issue_date: [0x20, 0x26, 0x01, 0x01],
            expiry: [0x20, 0x31, 0x12, 0x31],
            card_class: 1,
            max_balance: 1_000_000,
        });
        let asn = CardAsn(asn.0);
        self.world
            .hq()
            .append_local(Body::CardRegistry(CardEvent {
                asn,
                change: CardChange::Personalized {
                    class: "standard".parse().expect("class"),
                    expiry: BusinessDay {
                        year: 2031,
                        month: 12,
                        day: 31,
                    },
                    issuer: "hq".parse().expect("site id"),
                },
            }))
            .expect("personalization");
        let named = self.rng.random_bool(0.7);
        self.cards.push(Card {
            asn,
            chip: Some(chip),
            at: 0,
            named,
        });
        let c = self.cards.len() - 1;
        let holder = named.then(|| Holder {
            name: format!("Customer {n}"),
            id_number: format!("11010119900101{n:04}"),
            phone: "13800000000".into(),
        });
        let done = self.card_op(c, "issue", |pos, purse, _| {
            pos.issue(purse, holder, Money::from_fen(2_000))
        });
        if matches!(done, Some(Done::Ok)) {
            self.load(c);
        }
    }

    /// A load at HQ's card desk (a card elsewhere travels there first).
    fn load(&mut self, c: usize) {
        self.cards[c].at = 0;
        let fen = self.rng.random_range(1..=50) * 1_000;
        self.card_op(c, "load", |pos, purse, _| {
            pos.load(purse, Money::from_fen(fen), &pin())
        });
    }

    /// A purchase at the shop or station where the card is.
    fn purchase(&mut self, c: usize) {
        let station = self.world.nodes[self.cards[c].at].role == Role::Station;
        let basket = if station {
            basket(FUEL, self.rng.random_range(1_000..40_000))
        } else {
            basket(SHOP_ITEM, self.rng.random_range(1..6) * 1_000)
        };
        self.card_op(c, "purchase", |pos, purse, sam| {
            pos.purchase(purse, sam, &basket, Some(&pin()))
        });
    }

    /// Fuelling at a station: grey lock, then the debit for the litres pumped, here and
    /// now or (if the station dies first) at any station the card is taken to.
    fn fuel(&mut self, c: usize) {
        if self.world.nodes[self.cards[c].at].role != Role::Station {
            return;
        }
        let locked = self.chip_locked(c);
        if !locked {
            let done = self.card_op(c, "grey lock", |pos, purse, sam| pos.grey_lock(purse, sam));
            if !matches!(done, Some(Done::Ok)) {
                return;
            }
            if self.rng.random_bool(0.3) {
                self.tally.fault("station died with a card grey-locked");
                return;
            }
        }
        self.unlock(c);
    }

    /// Debits and unlocks a grey-locked card at the station where it is; says whether
    /// the card was debited.
    pub fn unlock(&mut self, c: usize) -> bool {
        let balance = i64::from(self.cards[c].chip.as_ref().expect("card").balance());
        let fen = self.rng.random_range(0..=balance.min(30_000));
        let done = self.card_op(c, "debit for unlock", |pos, purse, sam| {
            pos.unlock(purse, sam, Some(Money::from_fen(fen)))
        });
        matches!(done, Some(Done::Ok))
    }

    pub fn chip_locked(&mut self, c: usize) -> bool {
        let chip = self.cards[c].chip.take().expect("card in hand");
        let mut purse = EPurse::new(SimReader::new(chip, None));
        let locked = purse.select().is_ok() && purse.grey_status().is_ok_and(|s| s.locked);
        self.cards[c].chip = Some(purse.into_reader().take());
        locked
    }

    /// Is the chip's application blocked (by a node that knew of a block)?
    pub fn chip_blocked(&mut self, c: usize) -> bool {
        let chip = self.cards[c].chip.take().expect("card in hand");
        let mut purse = EPurse::new(SimReader::new(chip, None));
        let blocked = matches!(purse.select(), Err(EpurseError::ApplicationBlocked { .. }));
        self.cards[c].chip = Some(purse.into_reader().take());
        blocked
    }

    /// A plain purchase of one item where the card is, with no fault: for the checks.
    pub fn attempt_purchase(&mut self, c: usize) -> Result<(), PosError> {
        let at = self.cards[c].at;
        let node = &self.world.nodes[at];
        let pos = self.pos(at);
        let mut sam = software_sam(node.store(), node.key(), node.terminal)
            .unwrap_or_else(|e| panic!("{}: no SAM: {e}", node.name));
        let chip = self.cards[c].chip.take().expect("card in hand");
        let mut purse = EPurse::new(SimReader::new(chip, None));
        let result = pos.purchase(
            &mut purse,
            &mut sam,
            &basket(SHOP_ITEM, 1_000),
            Some(&pin()),
        );
        self.cards[c].chip = Some(purse.into_reader().take());
        let r = result?;
        self.acks.push(Ack {
            entry: r.entry,
            asn: self.cards[c].asn,
            space: CounterSpace::Offline,
            counter: r.txn.card_counter,
        });
        Ok(())
    }

    /// The customer reports the card lost where the card was last seen.
    fn report_lost(&mut self, c: usize) {
        let at = self.cards[c].at;
        let asn = self.cards[c].asn;
        match self.pos(at).report_lost(asn) {
            Ok(e) => self.blacklist.extend(BlacklistWrite::of(&e)),
            Err(PosError::Anonymous(_)) => {}
            Err(e) => panic!("report lost: {e}"),
        }
        self.tally.op("report lost");
    }

    /// HQ blocks a card (fraud, a complaint) on its own.
    fn hq_block(&mut self, c: usize) {
        let asn = self.cards[c].asn;
        let e = self
            .world
            .hq()
            .append_local(Body::Blacklist(BlacklistEvent::Block {
                asn,
                reason: BlockReason::Fraud,
                operator: None,
            }))
            .expect("HQ block");
        self.blacklist.extend(BlacklistWrite::of(&e));
        self.tally.op("hq block");
    }

    /// The customer brings the card to HQ, which lifts its blocks and unblocks the chip.
    pub fn hq_unblock(&mut self, c: usize) {
        self.cards[c].at = 0;
        let asn = self.cards[c].asn;
        let pos = self.pos(0);
        let chip = self.cards[c].chip.take().expect("card in hand");
        let mut purse = EPurse::new(SimReader::new(chip, None));
        let result = pos.unblock(asn, Some(&mut purse), "customer found the card");
        self.cards[c].chip = Some(purse.into_reader().take());
        let e = result.unwrap_or_else(|e| panic!("HQ unblock of {asn}: {e}"));
        self.blacklist.extend(BlacklistWrite::of(&e));
        self.tally.op("hq unblock");
    }

    /// The customer walks or drives to another node.
    fn travel(&mut self, c: usize) {
        self.cards[c].at = self.rng.random_range(0..self.world.nodes.len());
        self.tally.op("card travels");
    }

    // ---- HQ and operators ---------------------------------------------------------

    fn price_change(&mut self) {
        let product: ProductId = if self.rng.random_bool(0.5) {
            FUEL
        } else {
            SHOP_ITEM
        }
        .parse()
        .expect("product id");
        let from = self.now_ms() as i64 + self.rng.random_range(0..48) * HOUR_MS as i64;
        let fen = self.rng.random_range(200..900);
        self.world
            .hq()
            .edit_doc(DocName::PriceBook, |d| {
                pricebook::schedule_price(d, &product, from, Money::from_fen(fen))
            })
            .expect("price change");
        self.tally.op("price change");
    }

    fn operator_action(&mut self) {
        let i = self.rng.random_range(0..self.world.nodes.len());
        let pos = self.pos(i);
        let operator = self.world.nodes[i].operator.clone();
        if self.rng.random_bool(0.3) {
            let wrong = pos.login(&operator, "0000");
            assert!(
                matches!(wrong, Err(PosError::BadOperatorPin(_))),
                "a wrong operator PIN was not refused: {:?}",
                wrong.map(|s| s.operator)
            );
        } else {
            if pos.session().is_ok() {
                pos.logout().expect("logout");
            }
            pos.login(&operator, OPERATOR_PIN).expect("login");
        }
        self.tally.op("operator action");
    }

    // ---- links --------------------------------------------------------------------

    /// One session between nodes `a` and `b`.
    pub fn session(&mut self, a: usize, b: usize, faults: Faults, limits: Limits) -> LineOutcome {
        let mut sa = self.world.nodes[a].sync();
        let mut sb = self.world.nodes[b].sync();
        let now = self.now_ms();
        let out = line::run(&mut sa, &mut sb, &mut self.rng, faults, limits, now);
        self.tally.fault_n("frame dropped", out.dropped);
        self.tally.fault_n("frame duplicated", out.duplicated);
        self.tally.fault_n("frame reordered", out.reordered);
        if out.cut {
            self.tally.fault("link cut mid-session");
        }
        out
    }

    /// A LAN session, if both ends are on the LAN now; sometimes the LAN drops mid-way.
    fn lan(&mut self, a: usize, b: usize) {
        if a == b || !self.lan_up[a] || !self.lan_up[b] {
            return;
        }
        let cut_after = self
            .rng
            .random_bool(0.1)
            .then(|| self.rng.random_range(0..20));
        self.session(
            a,
            b,
            Faults {
                cut_after,
                ..Faults::CLEAN
            },
            Limits::DEFAULT,
        );
        self.tally.op("lan session");
    }

    /// At night a site dials HQ over a slow, noisy phone line: small batches, and
    /// frames lost, doubled and overtaken.
    fn dial_up(&mut self) {
        let hour = self.world.clock.local_hour();
        if !(1..5).contains(&hour) {
            return;
        }
        let site = self.rng.random_range(1..self.world.nodes.len());
        let faults = Faults {
            drop: 0.03,
            duplicate: 0.03,
            reorder: 0.03,
            cut_after: self
                .rng
                .random_bool(0.2)
                .then(|| self.rng.random_range(0..40)),
        };
        let limits = Limits {
            batch_entries: 16,
            batch_bytes: 8 << 10,
            window: 1,
        };
        self.session(site, 0, faults, limits);
        self.tally.op("dial-up session");
    }

    /// The stick is plugged in where it is, synced (with a budget that may run out),
    /// and carried on to a random node.
    fn stick_visit(&mut self) {
        let k = self.rng.random_range(0..self.sticks.len());
        let at = self.sticks[k].at;
        let mount = self.world.stick(k);
        let budget = if self.rng.random_bool(0.2) {
            4 << 10
        } else {
            64 << 20
        };
        let node = &self.world.nodes[at];
        let report = usb::sync_stick(
            node.store(),
            &self.world.network_key,
            &usb::stick_folder(&mount),
            budget,
            &mut |_| {},
        )
        .unwrap_or_else(|e| panic!("{} syncing stick {k}: {e}", node.name));
        if let Some(damaged) = self.sticks[k].damaged.take() {
            let reported = report.skipped.iter().any(|s| damaged.ends_with(&s.path))
                || report.manifest_rebuilt;
            assert!(
                reported,
                "{} did not report the damaged {} on stick {k}: {report:?}",
                node.name,
                damaged.display()
            );
        }
        self.sticks[k].at = self.rng.random_range(0..self.world.nodes.len());
        self.tally.op("stick visit");
    }

    /// A bit flips in one file of a stick, a segment or the manifest (a worn flash
    /// cell, a yanked write).
    fn damage_stick(&mut self) {
        let k = self.rng.random_range(0..self.sticks.len());
        let dir = usb::stick_folder(&self.world.stick(k));
        let mut files = Vec::new();
        collect_files(&dir, &mut files);
        files.retain(|p| p.extension().is_some_and(|e| e == "cms" || e == "cmm"));
        files.sort();
        if files.is_empty() {
            return;
        }
        let path = files.swap_remove(self.rng.random_range(0..files.len()));
        let mut bytes = std::fs::read(&path).expect("stick file");
        if bytes.is_empty() {
            return;
        }
        let i = self.rng.random_range(0..bytes.len());
        bytes[i] ^= 1 << self.rng.random_range(0..8);
        std::fs::write(&path, bytes).expect("stick file");
        self.sticks[k].damaged = Some(path);
        self.tally.fault("stick file damaged");
    }

    // ---- crashes ------------------------------------------------------------------

    pub fn crash(&mut self, i: usize) {
        self.world.nodes[i].crash();
        self.world.nodes[i].restart(&self.world.clock);
        self.tally.fault("node crash and restart");
    }

    /// A node dies in the middle of a sync session.
    fn crash_mid_session(&mut self) {
        let n = self.world.nodes.len();
        let a = self.rng.random_range(0..n);
        let b = (a + self.rng.random_range(1..n)) % n;
        let cut_after = Some(self.rng.random_range(0..12));
        self.session(
            a,
            b,
            Faults {
                cut_after,
                ..Faults::CLEAN
            },
            Limits {
                batch_entries: 4,
                batch_bytes: 4 << 10,
                window: 2,
            },
        );
        let victim = if self.rng.random_bool(0.5) { a } else { b };
        self.crash(victim);
    }
}

fn basket(product: &str, milli: i64) -> Vec<BasketLine> {
    vec![BasketLine {
        product: product.parse().expect("product id"),
        quantity: Quantity::from_milli(milli),
    }]
}

fn collect_files(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    for e in read.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

impl Tally {
    pub fn fault_n(&mut self, what: &'static str, n: usize) {
        if n > 0 {
            *self.faults.entry(what).or_default() += n as u64;
        }
    }
}
