//! Fuel stations for the station tests, on the POS tests' network (HQ and desk-1, the
//! node that runs station 1) with grades 92 and 95 priced: a second station node
//! enrolled through the real files; per station one fuelling point, whose pump is the
//! DART simulator at the far end of a socat pty, a printer pty read by a sink that decodes
//! ESC/POS, and a card slot holding an in-process virtual card.

#![allow(dead_code)]

#[path = "../pos_support/mod.rs"]
mod pos_support;

pub use pos_support::*;

use cardmesh_drivers::card::VirtualCard;
use cardmesh_drivers::dispenser::dart::Address;
use cardmesh_drivers::dispenser::sim::DispenserSimulator;
use cardmesh_drivers::epurse::EPurse;
use cardmesh_drivers::modem::pty::SocatPair;
use cardmesh_drivers::printer::{PrintedReceipt, PrinterSink};
use cardmesh_drivers::reader::{CardReader, MemoryReader, ReaderError};
use cardmesh_drivers::types::Pin;
use cardmesh_model::docs::DocName;
use cardmesh_model::docs::network::{self, OperatorInfo, SiteInfo};
use cardmesh_model::docs::pricebook::{self, Product};
use cardmesh_model::{CardAsn, Money, NodeKey, ProductId, Role, TerminalId};
use cardmesh_node::identity::{self, DataDir};
use cardmesh_node::keys;
use cardmesh_node::pos::Pos;
use cardmesh_node::pos::operators::pin_verifier;
use cardmesh_node::station::{PointSnapshot, Station, StationConfig};
use cardmesh_node::store::Store;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The cashier on shift at station 1 (desk-1).
pub const CASHIER_1: (&str, &str) = ("cash-1", "1111");
/// Station 2's site, terminal and cashier.
pub const SITE_2: &str = "station-2";
pub const TERMINAL_2: &str = "000000000301";
pub const CASHIER_2: (&str, &str) = ("st2-cash", "7777");
pub const HEADER: &str = "第一加油站";
pub const FOOTER: &str = "谢谢惠顾";

/// Station 1's fuelling point terminal.
pub fn terminal_1() -> TerminalId {
    till(1)
}

pub fn terminal_2() -> TerminalId {
    TERMINAL_2.parse().unwrap()
}

/// Sets `grade`'s network price from now on at HQ.
pub fn price(hq: &Store, grade: &str, fen: i64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    hq.edit_doc(DocName::PriceBook, |d| {
        let id: ProductId = grade.parse().unwrap();
        pricebook::set_product(
            d,
            &id,
            &Product {
                name: format!("{grade} petrol"),
                unit: "L".into(),
                site_override: false,
            },
        )?;
        pricebook::schedule_price(d, &id, now - 1, Money::from_fen(fen))
    })
    .unwrap()
    .unwrap();
}

/// The network with fuel prices (92 at 7.50, 95 at 8.10) and desk-1's store open.
pub fn fuel_net() -> (Net, Store) {
    let net = Net::create();
    price(&net.hq, "92", 750);
    price(&net.hq, "95", 810);
    let desk = net.desk();
    deliver(&net.hq, &desk);
    (net, desk)
}

/// Enrolls station 2 (role station) with the keys, site, terminal and cashier it
/// needs; HQ's feed reaches it and desk-1.
pub fn enroll_station_2(net: &Net, desk: &Store) -> (Store, NodeKey) {
    let dir = DataDir::new(net.path(SITE_2));
    let req = std::fs::read(identity::init_site(&dir, SITE_2, clock().as_ref()).unwrap()).unwrap();
    let pkg = identity::enroll(
        &net.hq,
        &net.hq_dir,
        &req,
        SITE_2.parse().unwrap(),
        Role::Station,
        clock().as_ref(),
    )
    .unwrap();
    let store = identity::join(&dir, &pkg, clock()).unwrap();
    let key = identity::load_key(&dir).unwrap();
    let exported = keys::export(&net.hq, &net.hq_key(), &store.node_id()).unwrap();
    keys::import(&store, &key, &exported).unwrap();
    net.hq
        .edit_doc(DocName::Network, |d| {
            let site = SITE_2.parse().unwrap();
            network::set_site(
                d,
                &site,
                &SiteInfo {
                    name: SITE_2.into(),
                    merchant: "main".parse().unwrap(),
                    utc_offset_min: 480,
                },
            )?;
            network::set_terminal(d, &terminal_2(), &site)?;
            let op = CASHIER_2.0.parse().unwrap();
            network::set_operator(
                d,
                &op,
                &OperatorInfo {
                    name: "Li Na".into(),
                    role: "cashier".into(),
                    site,
                },
            )?;
            network::set_operator_pin(d, &op, &pin_verifier(&op, CASHIER_2.1))
        })
        .unwrap()
        .unwrap();
    deliver(&net.hq, &store);
    deliver(&net.hq, desk);
    (store, key)
}

/// Logs the cashier in at `terminal` of `store`'s node.
pub fn login(store: &Store, key: &NodeKey, terminal: TerminalId, (op, pin): (&str, &str)) {
    Pos::open(store, key, terminal, clock())
        .unwrap()
        .login(&op.parse().unwrap(), pin)
        .unwrap();
}

/// Card `n`, registered, active and loaded with `yuan` at desk-1's card desk.
pub fn loaded_card(net: &Net, desk: &Store, n: u8, yuan: &str) -> VirtualCard {
    let chip = net.chip(desk, n, true, [0x20, 0x31, 0x12, 0x31]);
    let pos = Pos::open(desk, &net.desk_key(), terminal(), clock()).unwrap();
    pos.login(&"admin-1".parse().unwrap(), "5555").unwrap();
    let mut purse = EPurse::new(MemoryReader::new(chip));
    pos.load(
        &mut purse,
        yuan.parse().unwrap(),
        &Pin::parse(CARD_PIN).unwrap(),
    )
    .unwrap();
    pos.logout().unwrap();
    purse.into_reader().remove().unwrap()
}

pub fn asn(n: u8) -> CardAsn {
    CardAsn(card(n).0)
}

/// A dispenser's card slot: the test inserts and pulls the card while the station's
/// worker reads it.
#[derive(Clone)]
pub struct Slot(Arc<Mutex<MemoryReader<VirtualCard>>>);

impl Slot {
    pub fn empty() -> Slot {
        Slot(Arc::new(Mutex::new(MemoryReader::empty())))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryReader<VirtualCard>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn insert(&self, chip: VirtualCard) {
        assert!(self.lock().insert(chip).is_none(), "the slot was not empty");
    }

    pub fn remove(&self) -> VirtualCard {
        self.lock().remove().expect("a card in the slot")
    }

    /// Whether the card in the slot is grey-locked.
    pub fn card_locked(&self) -> bool {
        let chip = self.remove();
        let mut purse = EPurse::new(MemoryReader::new(chip));
        purse.select().unwrap();
        let locked = purse.grey_status().unwrap().locked;
        self.insert(purse.into_reader().remove().unwrap());
        locked
    }
}

impl CardReader for Slot {
    fn transmit(&mut self, c_apdu: &[u8]) -> Result<Vec<u8>, ReaderError> {
        self.lock().transmit(c_apdu)
    }
    fn wait_for_card(&mut self, t: Duration) -> Result<(), ReaderError> {
        self.lock().wait_for_card(t)
    }
    fn wait_for_removal(&mut self, t: Duration) -> Result<(), ReaderError> {
        self.lock().wait_for_removal(t)
    }
}

/// One station's devices: a fuelling point (nozzle 1 = 92, nozzle 2 = 95) and a
/// printer, each on its own pty pair, and the card slot.
pub struct Rig {
    pub sim: DispenserSimulator,
    pub sink: PrinterSink,
    pub slot: Slot,
    pub config: StationConfig,
    // Dropped last: the simulator and sink hold the device ends.
    _pump_line: SocatPair,
    _printer_line: SocatPair,
}

fn device_end(path: &str) -> Box<dyn serialport::SerialPort> {
    serialport::new(path, 9600)
        .timeout(Duration::from_millis(20))
        .open()
        .unwrap()
}

impl Rig {
    pub fn new(dir: &Path, name: &str, terminal: TerminalId) -> Rig {
        let pump_line = SocatPair::start(dir, &format!("{name}-pump")).unwrap();
        let printer_line = SocatPair::start(dir, &format!("{name}-printer")).unwrap();
        let sim =
            DispenserSimulator::spawn(device_end(pump_line.b()), Address::new(0x50).unwrap(), 2)
                .unwrap();
        let sink = PrinterSink::spawn(device_end(printer_line.b()));
        let config = StationConfig::one_point(
            pump_line.a(),
            printer_line.a(),
            &["92", "95"],
            (HEADER, FOOTER),
            terminal,
        );
        Rig {
            sim,
            sink,
            slot: Slot::empty(),
            config,
            _pump_line: pump_line,
            _printer_line: printer_line,
        }
    }

    /// Starts the station on `store`'s node with this rig's devices.
    pub fn start(&self, store: &Store, key: &NodeKey) -> Station {
        Station::start(
            store,
            key,
            clock(),
            &self.config,
            vec![Box::new(self.slot.clone())],
        )
        .unwrap()
    }

    pub fn receipt(&self) -> PrintedReceipt {
        self.sink.next_receipt(Duration::from_secs(10)).unwrap()
    }
}

/// Waits until fuelling point 1 satisfies `done`; returns its snapshot.
pub fn wait(station: &Station, what: &str, done: impl Fn(&PointSnapshot) -> bool) -> PointSnapshot {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let p = station.snapshot().remove(0);
        if done(&p) {
            return p;
        }
        assert!(Instant::now() < deadline, "waiting for {what}: {p:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The printed line that starts with `label`, with its value.
pub fn line<'a>(r: &'a PrintedReceipt, label: &str) -> &'a str {
    r.lines
        .iter()
        .find(|l| l.text.starts_with(label))
        .map(|l| l.text.as_str())
        .unwrap_or_else(|| panic!("no {label} line in\n{}", r.text()))
}
