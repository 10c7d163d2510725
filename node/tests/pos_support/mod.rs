//! A small network for the POS tests, built through the real enrollment and key
//! ceremony: HQ, and an issuer node (card desk + till) at site desk-1 holding every key
//! a site may hold, with the registry, price book and a personalized card file.

#![allow(dead_code)]

use cardmesh_drivers::apdu::ApduProcessor;
use cardmesh_drivers::card::{Personalization, VirtualCard};
use cardmesh_drivers::keys::MasterKeys;
use cardmesh_drivers::reader::{CardReader, ReaderError};
use cardmesh_drivers::types::{Asn, Pin};
use cardmesh_model::body::{Body, CardChange, CardEvent, CardStatus, Holder, OperatorActionKind};
use cardmesh_model::docs::DocName;
use cardmesh_model::docs::network::{self, Limits, OperatorInfo, SiteInfo};
use cardmesh_model::docs::pricebook::{self, Product};
use cardmesh_model::{BusinessDay, CardAsn, FeedRange, Money, Role, TerminalId};
use cardmesh_node::identity::{self, DataDir};
use cardmesh_node::keys;
use cardmesh_node::pos::operators::pin_verifier;
use cardmesh_node::store::{Clock, Store, SystemClock};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const TERMINAL: &str = "000000000201";
pub const HQ_TERMINAL: &str = "000000000001";
pub const CARD_PIN: &str = "123456";
/// Operators: id, role, PIN. All at desk-1 except `hq-admin`.
pub const OPERATORS: [(&str, &str, &str); 6] = [
    ("cash-1", "cashier", "1111"),
    ("mgr-1", "manager", "2222"),
    ("fin-1", "finance", "3333"),
    ("desk-op", "card-desk", "4444"),
    ("admin-1", "admin", "5555"),
    ("hq-admin", "admin", "9999"),
];

pub fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// Terminals registered to desk-1: `till(0)` is [`TERMINAL`].
pub const TILLS: u32 = 16;

pub fn till(i: u32) -> TerminalId {
    format!("{:012}", 201 + i).parse().unwrap()
}

pub fn terminal() -> TerminalId {
    TERMINAL.parse().unwrap()
}

pub struct Net {
    /// HQ's store stays open: only the desk's is used by child processes.
    pub hq: Store,
    pub tmp: tempfile::TempDir,
    pub hq_dir: DataDir,
    pub desk_dir: DataDir,
    masters: MasterKeys,
}

/// Card numbers used by the tests: `card(n)`.
pub fn card(n: u8) -> Asn {
    Asn([0x10, 0, 0, 0, 0, 0, 0, n])
}

impl Net {
    /// Creates HQ and desk-1, holds the ceremony, seeds the registry and price book,
    /// and delivers HQ's feed to desk-1. Both stores are closed on return.
    pub fn create() -> Net {
        let tmp = tempfile::tempdir().unwrap();
        let hq_dir = DataDir::new(tmp.path().join("hq"));
        let desk_dir = DataDir::new(tmp.path().join("desk"));
        let hq = identity::init_hq(&hq_dir, "chain", clock()).unwrap();
        let request =
            std::fs::read(identity::init_site(&desk_dir, "desk", clock().as_ref()).unwrap())
                .unwrap();
        let package = identity::enroll(
            &hq,
            &hq_dir,
            &request,
            "desk-1".parse().unwrap(),
            Role::Issuer,
            clock().as_ref(),
        )
        .unwrap();
        let desk = identity::join(&desk_dir, &package, clock()).unwrap();
        let a = keys::parse_component("0123456789ABCDEFFEDCBA9876543210").unwrap();
        let b = keys::parse_component("1111111111111111222222222222222F").unwrap();
        keys::ceremony(&hq, &a, &b).unwrap();
        let hq_key = identity::load_key(&hq_dir).unwrap();
        let exported = keys::export(&hq, &hq_key, &desk.node_id()).unwrap();
        keys::import(&desk, &identity::load_key(&desk_dir).unwrap(), &exported).unwrap();
        let masters = keys::held(&hq, &hq_key).unwrap().masters().unwrap();
        seed(&hq);
        deliver(&hq, &desk);
        Net {
            hq,
            tmp,
            hq_dir,
            desk_dir,
            masters,
        }
    }

    pub fn desk(&self) -> Store {
        identity::open(&self.desk_dir, clock()).unwrap()
    }

    pub fn desk_key(&self) -> cardmesh_model::NodeKey {
        identity::load_key(&self.desk_dir).unwrap()
    }

    pub fn hq_key(&self) -> cardmesh_model::NodeKey {
        identity::load_key(&self.hq_dir).unwrap()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// A personalized chip, registered at HQ (named or anonymous) and active, with
    /// HQ's registry events delivered to desk-1. `expiry` is BCD YYYYMMDD.
    pub fn chip(&self, desk: &Store, n: u8, named: bool, expiry: [u8; 4]) -> VirtualCard {
        let asn = card(n);
        let chip = VirtualCard::new(self.personalization(asn, expiry));
        self.register(desk, asn, named);
        chip
    }

    /// The same as [`Net::chip`], with the chip kept in a state file.
    pub fn card_file(&self, n: u8, named: bool) -> PathBuf {
        let asn = card(n);
        let path = self.path(&format!("card-{n}.card"));
        VirtualCard::create(&path, self.personalization(asn, [0x20, 0x31, 0x12, 0x31])).unwrap();
        self.register(&self.desk(), asn, named);
        path
    }

    /// A personalized chip registered as blank (not sold yet), for `Pos::issue`.
    pub fn blank_chip(&self, desk: &Store, n: u8) -> VirtualCard {
        let asn = card(n);
        let chip = VirtualCard::new(self.personalization(asn, [0x20, 0x31, 0x12, 0x31]));
        self.hq
            .append_local(Body::CardRegistry(CardEvent {
                asn: CardAsn(asn.0),
                change: CardChange::Personalized {
                    class: "standard".parse().unwrap(),
                    expiry: BusinessDay {
                        year: 2031,
                        month: 12,
                        day: 31,
                    },
                    issuer: "hq".parse().unwrap(),
                },
            }))
            .unwrap();
        deliver(&self.hq, desk);
        chip
    }

    /// The same as [`Net::blank_chip`], with the chip kept in a state file.
    pub fn blank_card_file(&self, n: u8) -> PathBuf {
        let path = self.path(&format!("card-{n}.card"));
        let chip = self.blank_chip(&self.desk(), n);
        drop(chip);
        VirtualCard::create(
            &path,
            self.personalization(card(n), [0x20, 0x31, 0x12, 0x31]),
        )
        .unwrap();
        path
    }

    /// Another node, at its own new site with one registered terminal (`terminal`),
    /// holding the keys its role gets; HQ's feed is delivered to it. Returns its data
    /// directory.
    pub fn add_site(&self, site: &str, role: Role, terminal: TerminalId) -> DataDir {
        let dir = DataDir::new(self.tmp.path().join(site));
        let hq_dir = &self.hq_dir;
        let request =
            std::fs::read(identity::init_site(&dir, site, clock().as_ref()).unwrap()).unwrap();
        let package = identity::enroll(
            &self.hq,
            hq_dir,
            &request,
            site.parse().unwrap(),
            role,
            clock().as_ref(),
        )
        .unwrap();
        let store = identity::join(&dir, &package, clock()).unwrap();
        let exported = keys::export(&self.hq, &self.hq_key(), &store.node_id()).unwrap();
        keys::import(&store, &identity::load_key(&dir).unwrap(), &exported).unwrap();
        self.hq
            .edit_doc(DocName::Network, |d| {
                network::set_site(
                    d,
                    &site.parse().unwrap(),
                    &SiteInfo {
                        name: site.into(),
                        merchant: "main".parse().unwrap(),
                        utc_offset_min: 480,
                    },
                )?;
                network::set_terminal(d, &terminal, &site.parse().unwrap())
            })
            .unwrap()
            .unwrap();
        deliver(&self.hq, &store);
        dir
    }

    fn personalization(&self, asn: Asn, expiry: [u8; 4]) -> Personalization {
        Personalization {
            asn,
            keys: self.masters.card_keys(&asn),
            pin: Pin::parse(CARD_PIN).unwrap(),
            issue_date: [0x20, 0x26, 0x01, 0x01],
            expiry,
            card_class: 1,
            max_balance: 1_000_000,
        }
    }

    fn register(&self, desk: &Store, asn: Asn, named: bool) {
        let hq = &self.hq;
        let asn = CardAsn(asn.0);
        let holder = named.then(|| Holder {
            name: "Zhang Wei".into(),
            id_number: "110101199001011234".into(),
            phone: "13800000000".into(),
        });
        for change in [
            CardChange::Personalized {
                class: "standard".parse().unwrap(),
                expiry: BusinessDay {
                    year: 2031,
                    month: 12,
                    day: 31,
                },
                issuer: "hq".parse().unwrap(),
            },
            CardChange::Holder(holder),
            CardChange::Status(CardStatus::Active),
        ] {
            hq.append_local(Body::CardRegistry(CardEvent { asn, change }))
                .unwrap();
        }
        deliver(hq, desk);
    }
}

/// Copies HQ's whole feed into `to`.
pub fn deliver(from: &Store, to: &Store) {
    let origin = from.node_id();
    let head = from.head(&origin).unwrap();
    let entries = from
        .entries(
            FeedRange {
                origin,
                from: 1,
                to: head.seq,
            },
            usize::MAX,
        )
        .unwrap();
    let report = to.ingest(entries).unwrap();
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
}

fn seed(hq: &Store) {
    hq.edit_doc(DocName::Network, |d| {
        for (site, offset) in [("hq", 480), ("desk-1", 480)] {
            network::set_site(
                d,
                &site.parse().unwrap(),
                &SiteInfo {
                    name: site.into(),
                    merchant: "main".parse().unwrap(),
                    utc_offset_min: offset,
                },
            )?;
        }
        for i in 0..TILLS {
            network::set_terminal(d, &till(i), &"desk-1".parse().unwrap())?;
        }
        network::set_terminal(d, &HQ_TERMINAL.parse().unwrap(), &"hq".parse().unwrap())?;
        for (id, role, pin) in OPERATORS {
            let op = id.parse().unwrap();
            let site = if id == "hq-admin" { "hq" } else { "desk-1" };
            network::set_operator(
                d,
                &op,
                &OperatorInfo {
                    name: id.into(),
                    role: role.into(),
                    site: site.parse().unwrap(),
                },
            )?;
            network::set_operator_pin(d, &op, &pin_verifier(&op, pin))?;
        }
        network::set_limits(d, &Limits::default())
    })
    .unwrap()
    .unwrap();
    hq.edit_doc(DocName::PriceBook, |d| {
        for (id, fen) in [("cola", 300), ("ticket", 4500), ("tv", 300_000), ("gum", 1)] {
            let id = id.parse().unwrap();
            pricebook::set_product(
                d,
                &id,
                &Product {
                    name: "thing".into(),
                    unit: "pc".into(),
                    site_override: false,
                },
            )?;
            pricebook::schedule_price(d, &id, 0, Money::from_fen(fen))?;
        }
        Ok(())
    })
    .unwrap()
    .unwrap();
}

/// Path of the `cardmesh` binary under test.
pub fn cardmesh() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_cardmesh"))
}

/// A reader whose card is pulled during a command with instruction `ins`: after the
/// card executed it (`executes`), or before. From then on the reader finds no card;
/// [`Pulled::chip`] gives the card back, to be presented again.
pub struct Pulled {
    chip: VirtualCard,
    ins: u8,
    skip: usize,
    executes: bool,
    gone: bool,
}

impl Pulled {
    /// Pulled during the first command with instruction `ins`.
    pub fn during(chip: VirtualCard, ins: u8, executes: bool) -> Pulled {
        Pulled {
            chip,
            ins,
            skip: 0,
            executes,
            gone: false,
        }
    }

    /// Pulled during the command with instruction `ins` that follows `n` others.
    pub fn skipping(self, n: usize) -> Pulled {
        Pulled { skip: n, ..self }
    }

    pub fn chip(self) -> VirtualCard {
        self.chip
    }
}

impl CardReader for Pulled {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, ReaderError> {
        if self.gone {
            return Err(ReaderError::NoCard);
        }
        if apdu.get(1) == Some(&self.ins) {
            if self.skip == 0 {
                if self.executes {
                    self.chip.process(apdu);
                }
                self.gone = true;
                return Err(ReaderError::CardRemoved);
            }
            self.skip -= 1;
        }
        Ok(self.chip.process(apdu))
    }
    fn wait_for_card(&mut self, _: Duration) -> Result<(), ReaderError> {
        Ok(())
    }
    fn wait_for_removal(&mut self, _: Duration) -> Result<(), ReaderError> {
        Ok(())
    }
}

/// The operator actions (the audit log) in this node's own feed, in order.
pub fn operator_actions(store: &Store) -> Vec<OperatorActionKind> {
    let own = store.node_id();
    let head = store.head(&own).unwrap().seq;
    store
        .entries(
            FeedRange {
                origin: own,
                from: 1,
                to: head,
            },
            usize::MAX,
        )
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.body {
            Body::Operator(a) => Some(a.action),
            _ => None,
        })
        .collect()
}
