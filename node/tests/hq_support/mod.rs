//! A chain for the HQ tests: HQ and shops made through the real init / enroll / join
//! files, the real key ceremony with each shop's keys exported and imported, virtual
//! cards personalized from HQ's master keys, sales through the shops' software SAMs, and
//! the receipts logged as the card transactions HQ verifies. Entries move between nodes
//! the way every link moves them: `Store::entries` on one side, `Store::ingest` on the
//! other.

#![allow(dead_code)]

use cardmesh_drivers::card::{Personalization, VirtualCard};
use cardmesh_drivers::epurse::{EPurse, LoadKey, LoadReceipt, PurchaseReceipt};
use cardmesh_drivers::keys::MasterKeys;
use cardmesh_drivers::reader::MemoryReader;
use cardmesh_drivers::sam::SoftwareSam;
use cardmesh_drivers::types::{Asn, BcdDateTime, Pin, TerminalId as CardTerminalId};
use cardmesh_model::body::{Body, CardTxn, LineItem, TxnKind};
use cardmesh_model::docs::network::{self, OperatorInfo, SiteInfo};
use cardmesh_model::docs::{DocName, merchants};
use cardmesh_model::settlement::MerchantTerms;
use cardmesh_model::{
    BusinessDay, CardAsn, CardTime, FeedRange, MerchantId, Money, NodeKey, OperatorId, Quantity,
    Role, SiteId, TerminalId,
};
use cardmesh_node::identity::{self, DataDir};
use cardmesh_node::keys;
use cardmesh_node::sam::{StoreSeq, software_sam};
use cardmesh_node::store::{Clock, Store, SystemClock};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const PIN: &str = "123456";

pub fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

pub struct Node {
    pub dir: DataDir,
    pub store: Store,
    pub key: NodeKey,
}

pub struct Chain {
    pub root: PathBuf,
    pub hq: Node,
    pub shops: Vec<Node>,
    pub masters: MasterKeys,
}

/// HQ's card desk terminal (loads).
pub fn hq_terminal() -> TerminalId {
    "000000000001".parse().unwrap()
}

/// Terminal `n` of shop `i` (1-based).
pub fn shop_terminal(i: usize, n: usize) -> TerminalId {
    format!("{:010}{:02}", i, n).parse().unwrap()
}

pub fn day(y: u16, m: u8, d: u8) -> BusinessDay {
    BusinessDay {
        year: y,
        month: m,
        day: d,
    }
}

impl Chain {
    /// HQ and `shops` shops (`shop-1`, ...), keys exported to each, all synced.
    pub fn new(root: &Path, shops: usize) -> Chain {
        let hq_dir = DataDir::new(root.join("hq"));
        let hq_store = identity::init_hq(&hq_dir, "test-chain", clock()).unwrap();
        let hq_key = identity::load_key(&hq_dir).unwrap();
        let a = keys::parse_component("0123456789ABCDEFFEDCBA9876543210").unwrap();
        let b = keys::parse_component("1111111111111111222222222222222F").unwrap();
        keys::ceremony(&hq_store, &a, &b).unwrap();
        let masters = keys::held(&hq_store, &hq_key).unwrap().masters().unwrap();
        let mut nodes = Vec::new();
        for i in 1..=shops {
            let dir = DataDir::new(root.join(format!("shop-{i}")));
            let req = std::fs::read(identity::init_site(&dir, "till", clock().as_ref()).unwrap())
                .unwrap();
            let site: SiteId = format!("shop-{i}").parse().unwrap();
            let pkg = identity::enroll(
                &hq_store,
                &hq_dir,
                &req,
                site,
                Role::Store,
                clock().as_ref(),
            )
            .unwrap();
            let store = identity::join(&dir, &pkg, clock()).unwrap();
            let key = identity::load_key(&dir).unwrap();
            let exported = keys::export(&hq_store, &hq_key, &store.node_id()).unwrap();
            keys::import(&store, &key, &exported).unwrap();
            nodes.push(Node { dir, store, key });
        }
        let chain = Chain {
            root: root.to_path_buf(),
            hq: Node {
                dir: hq_dir,
                store: hq_store,
                key: hq_key,
            },
            shops: nodes,
            masters,
        };
        chain.sync_all();
        chain
    }

    /// Sites, terminals, operators and merchants in the network registry: shop `i`
    /// belongs to `merchant_of[i - 1]`, HQ to `hq-desk`.
    pub fn register(&self, merchant_of: &[&str], terms: &[(&str, MerchantTerms)]) {
        self.hq
            .store
            .edit_doc(DocName::Network, |d| {
                let info = |m: &str| SiteInfo {
                    name: "site".into(),
                    merchant: m.parse().unwrap(),
                    utc_offset_min: 480,
                };
                network::set_site(d, &"hq".parse().unwrap(), &info("hq-desk"))?;
                network::set_terminal(d, &hq_terminal(), &"hq".parse().unwrap())?;
                for (i, m) in merchant_of.iter().enumerate() {
                    let site: SiteId = format!("shop-{}", i + 1).parse().unwrap();
                    network::set_site(d, &site, &info(m))?;
                    for n in 1..=2 {
                        network::set_terminal(d, &shop_terminal(i + 1, n), &site)?;
                    }
                    for n in 1..=2 {
                        network::set_operator(
                            d,
                            &operator(i + 1, n),
                            &OperatorInfo {
                                name: "cashier".into(),
                                role: "cashier".into(),
                                site: site.clone(),
                            },
                        )?;
                    }
                }
                for (id, t) in terms {
                    merchants::set_merchant(d, &id.parse::<MerchantId>().unwrap(), t)?;
                }
                Ok(())
            })
            .unwrap();
    }

    pub fn nodes(&self) -> Vec<&Node> {
        std::iter::once(&self.hq).chain(self.shops.iter()).collect()
    }

    /// Two rounds of every node pulling what it lacks from every other node.
    pub fn sync_all(&self) {
        for _ in 0..2 {
            for a in self.nodes() {
                for b in self.nodes() {
                    if a.store.node_id() != b.store.node_id() {
                        pull(&a.store, &b.store);
                    }
                }
            }
        }
    }

    /// A personalized virtual card whose chip lives in a state file under the chain's
    /// folder (so that it can be copied: a cloned card).
    pub fn card(&self, n: u8) -> (Asn, PathBuf) {
        let asn = Asn([0x10, 0, 0, 0, 0, 0, 0, n]);
        let path = self.root.join(format!("card-{n}.chip"));
        VirtualCard::create(
            &path,
            Personalization {
                asn,
                keys: self.masters.card_keys(&asn),
                pin: Pin::parse(PIN).unwrap(),
                issue_date: [0x20, 0x26, 0x01, 0x01],
                expiry: [0x20, 0x31, 0x12, 0x31],
                card_class: 1,
                max_balance: 500_000,
            },
        )
        .unwrap();
        (asn, path)
    }

    /// HQ's desk loads `amount` onto the card in `chip` and logs the load.
    pub fn load(&self, chip: &Path, amount: u32, when: BcdDateTime, bday: BusinessDay) -> CardTxn {
        let mut purse = purse(chip);
        purse.verify_pin(&Pin::parse(PIN).unwrap()).unwrap();
        let r = purse
            .load(
                &LoadKey::new(self.masters.load.clone()),
                CardTerminalId(hq_terminal().0),
                amount,
                when,
            )
            .unwrap();
        let t = load_txn(&r, "hq".parse().unwrap(), bday);
        self.hq.store.append_local(Body::Card(t.clone())).unwrap();
        t
    }

    /// At till `(shop i, terminal, operator)`, shop `i` sells `items` to the card in
    /// `chip` and logs it.
    pub fn sell(
        &self,
        (i, term, op): (usize, usize, usize),
        chip: &Path,
        items: Vec<LineItem>,
        when: BcdDateTime,
        bday: BusinessDay,
    ) -> CardTxn {
        let shop = &self.shops[i - 1];
        let mut sam = self.sam(i, term);
        let amount: i64 = items.iter().map(|l| l.amount.fen()).sum();
        let r = purse(chip).purchase(&mut sam, amount as u32, when).unwrap();
        let t = purchase_txn(
            &r,
            format!("shop-{i}").parse().unwrap(),
            Some(operator(i, op)),
            bday,
            items,
        );
        shop.store.append_local(Body::Card(t.clone())).unwrap();
        t
    }

    pub fn sam(&self, i: usize, term: usize) -> SoftwareSam<StoreSeq> {
        let shop = &self.shops[i - 1];
        software_sam(&shop.store, &shop.key, shop_terminal(i, term)).unwrap()
    }
}

pub fn operator(i: usize, n: usize) -> OperatorId {
    format!("cashier-{i}-{n}").parse().unwrap()
}

pub fn purse(chip: &Path) -> EPurse<MemoryReader<VirtualCard>> {
    let mut p = EPurse::new(MemoryReader::new(VirtualCard::open(chip).unwrap()));
    p.select().unwrap();
    p
}

/// `to` takes every entry `from` holds that it lacks.
pub fn pull(to: &Store, from: &Store) {
    let mine = to.version_vector().unwrap();
    let theirs = from.version_vector().unwrap();
    let mut entries = Vec::new();
    for range in mine.lacks(&theirs) {
        entries.extend(from.entries(range, usize::MAX).unwrap());
    }
    let report = to.ingest(entries).unwrap();
    assert!(
        report.rejected.is_empty(),
        "entries refused: {:?}",
        report.rejected
    );
}

/// Every card transaction a store holds, from its feeds.
pub fn card_txns(store: &Store) -> Vec<CardTxn> {
    let vv = store.version_vector().unwrap();
    let mut out = Vec::new();
    for (origin, &to) in vv.iter() {
        for e in store
            .entries(
                FeedRange {
                    origin: *origin,
                    from: 1,
                    to,
                },
                usize::MAX,
            )
            .unwrap()
        {
            if let Body::Card(t) = e.body {
                out.push(t);
            }
        }
    }
    out
}

pub fn item(product: &str, milli: i64, unit_fen: i64) -> LineItem {
    let quantity = Quantity::from_milli(milli);
    let amount = Money::from_fen(unit_fen).times_quantity(quantity).unwrap();
    LineItem {
        product: product.parse().unwrap(),
        quantity,
        unit_price: Money::from_fen(unit_fen),
        paid_percent: 100,
        amount,
    }
}

fn card_time(dt: &BcdDateTime) -> CardTime {
    CardTime(dt.0)
}

pub fn purchase_txn(
    r: &PurchaseReceipt,
    site: SiteId,
    operator: Option<OperatorId>,
    bday: BusinessDay,
    items: Vec<LineItem>,
) -> CardTxn {
    CardTxn {
        kind: TxnKind::Purchase,
        asn: CardAsn(r.asn.0),
        site,
        terminal: TerminalId(r.terminal.0),
        operator,
        business_day: bday,
        card_time: card_time(&r.datetime),
        card_counter: r.offline_counter,
        term_seq: r.term_seq,
        amount: Money::from_fen(i64::from(r.amount)),
        balance_before: Money::from_fen(i64::from(r.balance_before)),
        balance_after: Money::from_fen(i64::from(r.balance_after)),
        mac1: r.mac1.0,
        mac2: r.mac2.0,
        tac: r.tac.0,
        items,
        refers_to: None,
    }
}

pub fn load_txn(r: &LoadReceipt, site: SiteId, bday: BusinessDay) -> CardTxn {
    CardTxn {
        kind: TxnKind::Load,
        asn: CardAsn(r.asn.0),
        site,
        terminal: TerminalId(r.terminal.0),
        operator: None,
        business_day: bday,
        card_time: card_time(&r.datetime),
        card_counter: r.online_counter,
        term_seq: 0,
        amount: Money::from_fen(i64::from(r.amount)),
        balance_before: Money::from_fen(i64::from(r.balance_before)),
        balance_after: Money::from_fen(i64::from(r.balance_after)),
        mac1: r.mac1.0,
        mac2: r.mac2.0,
        tac: r.tac.0,
        items: Vec::new(),
        refers_to: None,
    }
}

/// The TAC master key HQ holds.
pub fn tac_key(chain: &Chain) -> cardmesh_drivers::crypto::Key16 {
    chain.masters.tac.clone()
}
