//! A card fill end to end on the device side: the pure pump flow drives the DART
//! driver against the dispenser simulator and prints on the ESC/POS printer, each over
//! its own socat pty pair. The test plays the POS (grey lock, debit for unlock), which
//! the node does with a real card.

#[path = "common/socat.rs"]
mod socat;

use std::time::{Duration, Instant};

use cardmesh_drivers::dispenser::dart::Address;
use cardmesh_drivers::dispenser::driver::{DartConfig, DartDispenser, Parity};
use cardmesh_drivers::dispenser::flow::{Fill, FillEnd, FlowAction, FlowEvent, PumpFlow, Stage};
use cardmesh_drivers::dispenser::run::run_pump_action;
use cardmesh_drivers::dispenser::sim::{Damage, DispenserSimulator};
use cardmesh_drivers::dispenser::{Dispenser, GradePrices, NozzleConfig, NozzleNumber, PointState};
use cardmesh_drivers::printer::{PrintedReceipt, PrinterConfig, PrinterSink, SerialPrinter};
use cardmesh_drivers::types::Asn;
use cardmesh_model::ids::ProductId;
use cardmesh_model::{Money, Quantity};
use socat::PtyPair;

/// What the POS does when the flow asks for a debit.
#[derive(Clone, Copy)]
enum Pos {
    /// Debits the card.
    Debits,
    /// The card was pulled out: the debit is deferred.
    CardGone,
}

struct Station {
    _pump_line: PtyPair,
    _printer_line: PtyPair,
    sim: DispenserSimulator,
    pump: DartDispenser,
    printer: SerialPrinter,
    sink: PrinterSink,
    flow: PumpFlow,
    balance: Money,
    pos: Pos,
    debits: Vec<Fill>,
}

fn grade(s: &str) -> ProductId {
    ProductId::new(s).unwrap()
}

fn prices(p92: i64) -> GradePrices {
    [
        (grade("92"), Money::from_fen(p92)),
        (grade("95"), Money::from_fen(810)),
    ]
    .into()
}

impl Station {
    fn new() -> Station {
        let pump_line = PtyPair::new();
        let printer_line = PtyPair::new();
        let sim =
            DispenserSimulator::spawn(pump_line.open_device(), Address::new(0x50).unwrap(), 2)
                .unwrap();
        let pump = DartDispenser::open(&DartConfig {
            port: pump_line.host.to_str().unwrap().into(),
            baud: 9600,
            parity: Parity::None,
            address: 0x50,
            nozzles: vec![
                NozzleConfig {
                    nozzle: NozzleNumber::new(1).unwrap(),
                    grade: grade("92"),
                },
                NozzleConfig {
                    nozzle: NozzleNumber::new(2).unwrap(),
                    grade: grade("95"),
                },
            ],
            reply_timeout_ms: 300,
        })
        .unwrap();
        let sink = PrinterSink::spawn(printer_line.open_device());
        let printer = SerialPrinter::open(&PrinterConfig {
            port: printer_line.host.to_str().unwrap().into(),
            baud: 9600,
            header: vec!["第一加油站".into()],
            footer: vec!["谢谢惠顾".into()],
            width: 32,
        })
        .unwrap();
        Station {
            _pump_line: pump_line,
            _printer_line: printer_line,
            sim,
            pump,
            printer,
            sink,
            flow: PumpFlow::new(),
            balance: Money::from_fen(1_000_000),
            pos: Pos::Debits,
            debits: Vec::new(),
        }
    }

    /// Feeds an event and carries out every action, as the node's loop would.
    fn feed(&mut self, ev: FlowEvent) {
        let mut events = vec![ev];
        while let Some(ev) = events.pop() {
            for action in self.flow.handle(ev).unwrap() {
                if let Some(next) = run_pump_action(&mut self.pump, &action).unwrap() {
                    events.push(next);
                }
                match action {
                    FlowAction::Debit(fill) => {
                        events.push(match self.pos {
                            Pos::Debits => {
                                self.balance = self.balance.checked_sub(fill.amount).unwrap();
                                FlowEvent::Debited {
                                    balance_after: self.balance,
                                }
                            }
                            Pos::CardGone => FlowEvent::DebitDeferred,
                        });
                        self.debits.push(fill);
                    }
                    FlowAction::Print(r) => self.printer.print(&r).unwrap(),
                    _ => {}
                }
            }
        }
    }

    fn card(&mut self, limit: i64, p92: i64) {
        self.feed(FlowEvent::CardLocked {
            card: Asn::parse("3100000000000042").unwrap(),
            limit: Money::from_fen(limit),
            volume: None,
            prices: prices(p92),
        });
    }

    /// Polls the pump into the flow until `done`.
    fn poll_until(&mut self, done: impl Fn(&PumpFlow) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done(&self.flow) {
            assert!(
                Instant::now() < deadline,
                "flow stuck at {:?}",
                self.flow.stage()
            );
            let s = self.pump.status().unwrap();
            self.feed(FlowEvent::Pump(s));
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn receipt(&self) -> PrintedReceipt {
        self.sink.next_receipt(Duration::from_secs(5)).unwrap()
    }
}

#[test]
fn card_fill_is_debited_at_the_authorized_price_and_printed() {
    let mut st = Station::new();
    st.sim.lift(1).unwrap();
    st.card(300_000, 750);
    assert_eq!(st.flow.stage(), &Stage::Fuelling);
    assert_eq!(
        st.pump.status().unwrap().point.state,
        PointState::Authorized
    );
    st.sim.start_flow(25_000);
    st.poll_until(|f| f.live().is_some_and(|l| l.volume.milli() >= 8_000));
    let live = st.flow.live().unwrap();
    assert_eq!(live.state, PointState::Filling);
    assert_eq!(
        live.amount,
        Money::from_fen(750).times_quantity(live.volume).unwrap()
    );
    st.sim.hang_up().unwrap();
    let pumped = st.sim.status().volume;
    st.poll_until(|f| f.stage() == &Stage::Done);

    let fill = &st.debits[0];
    assert_eq!(fill.end, FillEnd::Completed);
    assert_eq!(fill.grade, Some(grade("92")));
    assert_eq!(fill.price, Money::from_fen(750));
    assert_eq!(fill.volume, pumped);
    assert_eq!(
        fill.amount,
        Money::from_fen(750).times_quantity(pumped).unwrap()
    );
    assert_eq!(
        st.balance,
        Money::from_fen(1_000_000).checked_sub(fill.amount).unwrap()
    );
    // The pump was reset after the debit, ready for the next car.
    assert_eq!(st.pump.status().unwrap().point.state, PointState::Idle);

    let text = st.receipt().text();
    assert!(text.contains("第一加油站"), "{text}");
    assert!(text.contains("3100000000000042"), "{text}");
    assert!(text.contains(&fill.amount.to_string()), "{text}");
    assert!(text.contains(&st.balance.to_string()), "{text}");
    assert!(text.contains("7.50"), "{text}");
    assert!(!text.contains("待扣款"), "{text}");
}

#[test]
fn the_grey_lock_caps_the_fill_through_the_pump_preset() {
    let mut st = Station::new();
    st.card(5_000, 750);
    st.sim.lift(1).unwrap();
    st.sim.start_flow(50_000);
    st.poll_until(|f| f.stage() == &Stage::Done);
    let fill = &st.debits[0];
    // The pump stopped itself at the locked 50.00: 6.667 litres.
    assert_eq!(fill.volume, Quantity::from_milli(6_667));
    assert_eq!(fill.amount, Money::from_fen(5_000));
    assert!(st.receipt().text().contains("50.00"));
}

#[test]
fn stop_mid_fill_then_card_gone_defers_the_debit_of_what_was_delivered() {
    let mut st = Station::new();
    st.pos = Pos::CardGone;
    st.sim.lift(2).unwrap();
    st.card(400_000, 750);
    st.sim.start_flow(20_000);
    st.poll_until(|f| f.live().is_some_and(|l| l.volume.milli() >= 2_000));
    st.feed(FlowEvent::StopPressed);
    let delivered = st.sim.status().volume;
    st.poll_until(|f| f.stage() == &Stage::Deferred);
    let fill = &st.debits[0];
    assert_eq!(fill.end, FillEnd::Stopped);
    assert_eq!(fill.grade, Some(grade("95")));
    assert_eq!(fill.volume, delivered);
    assert_eq!(
        fill.amount,
        Money::from_fen(810).times_quantity(fill.volume).unwrap()
    );
    assert_eq!(
        st.balance,
        Money::from_fen(1_000_000),
        "nothing debited yet"
    );
    let text = st.receipt().text();
    assert!(text.contains("中途停止"), "{text}");
    assert!(text.contains("待扣款"), "{text}");
}

#[test]
fn pump_fault_debits_what_was_delivered() {
    let mut st = Station::new();
    st.card(40_000, 750);
    st.sim.lift(1).unwrap();
    st.sim.pump(4_000).unwrap();
    st.poll_until(|f| f.live().is_some_and(|l| l.volume.milli() == 4_000));
    st.sim.fault(0x33);
    st.poll_until(|f| f.stage() == &Stage::Done);
    let fill = &st.debits[0];
    assert_eq!(fill.end, FillEnd::Fault(0x33));
    assert_eq!(fill.amount, Money::from_fen(3_000));
    assert!(st.receipt().text().contains("油机故障 Pump fault 0x33"));
    // The reset after the debit cleared the alarm.
    assert_eq!(st.pump.status().unwrap().point.alarm, None);
}

#[test]
fn a_lost_authorize_ack_still_charges_the_fill() {
    let mut st = Station::new();
    st.sim.lift(1).unwrap();
    // The reset's ACK passes; the AUTHORIZE is applied but its ACK is cut off.
    st.sim.damage_reply(1, Damage::Truncate);
    st.card(30_000, 750);
    assert_eq!(st.flow.stage(), &Stage::Fuelling);
    st.sim.pump(2_000).unwrap();
    st.sim.hang_up().unwrap();
    st.poll_until(|f| f.stage() == &Stage::Done);
    assert_eq!(st.debits[0].amount, Money::from_fen(1_500));
}

#[test]
fn each_fill_is_charged_at_the_price_of_its_own_authorization() {
    let mut st = Station::new();
    st.sim.lift(1).unwrap();
    st.card(30_000, 750);
    st.sim.pump(10_000).unwrap();
    st.sim.hang_up().unwrap();
    st.poll_until(|f| f.stage() == &Stage::Done);
    assert_eq!(st.debits[0].amount, Money::from_fen(7_500));
    st.receipt();

    // The station repriced 92: the next card is authorized, and charged, at 7.99.
    st.flow = PumpFlow::new();
    st.sim.lift(1).unwrap();
    st.card(30_000, 799);
    st.sim.pump(10_000).unwrap();
    st.sim.hang_up().unwrap();
    st.poll_until(|f| f.stage() == &Stage::Done);
    assert_eq!(st.debits[1].amount, Money::from_fen(7_990));
    assert!(st.receipt().text().contains("7.99"));
}
