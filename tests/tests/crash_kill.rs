//! kill -9 of a real `cardmesh` process at random moments (seeded delays drawn within
//! each command's own run time) during purchases, loads, grey locks with their debits,
//! and stick ingests, many times over; after each kill the card is presented again (or
//! the stick synced again) and nothing may be lost or doubled: ledger = card, one
//! ledger entry per consumed card counter, nothing pending, views equal a refold, and
//! an interrupted ingest leaves a prefix of each feed that the next sync completes.

use cardmesh_drivers::card::{Personalization, VirtualCard};
use cardmesh_drivers::epurse::EPurse;
use cardmesh_drivers::keys::MasterKeys;
use cardmesh_drivers::reader::MemoryReader;
use cardmesh_drivers::types::{Asn, Pin};
use cardmesh_model::body::{BlacklistEvent, BlockReason, Body, CardChange, CardEvent, TxnKind};
use cardmesh_model::docs::DocName;
use cardmesh_model::docs::network::{self, Limits, OperatorInfo, SiteInfo};
use cardmesh_model::docs::pricebook::{self, Product};
use cardmesh_model::{BusinessDay, CardAsn, FeedRange, Money, Role, TerminalId};
use cardmesh_node::identity::{self, DataDir};
use cardmesh_node::keys;
use cardmesh_node::pos::operators::pin_verifier;
use cardmesh_node::store::{Clock, Store, SystemClock};
use cardmesh_node::usb;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TERMINAL: &str = "000000000301";
const CARD_PIN: &str = "123456";
/// Kills per operation kind in a test run; `CARDMESH_CRASH_KILLS` asks for more.
const KILLS: usize = 3;
/// Draws of a kill's moment per round of the stick test before it gives up on landing
/// one mid-sync.
const TRIES: usize = 5;

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// The `cardmesh` binary of this build, built first if `cargo test -p tests` alone did
/// not build it.
fn cardmesh() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .join("cardmesh");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "cardmesh-node",
            "--bin",
            "cardmesh",
        ])
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the cardmesh binary failed");
    assert!(bin.exists(), "{} was not built", bin.display());
    bin
}

/// HQ and a card desk with a till (an issuer node: it loads, sells and grey-locks),
/// made through the real enrollment and key ceremony; both stores closed on return.
struct Net {
    tmp: tempfile::TempDir,
    hq_dir: DataDir,
    desk_dir: DataDir,
    masters: MasterKeys,
    bin: PathBuf,
}

impl Net {
    fn create() -> Net {
        let tmp = tempfile::tempdir().expect("temp dir");
        let hq_dir = DataDir::new(tmp.path().join("hq"));
        let desk_dir = DataDir::new(tmp.path().join("desk"));
        let hq = identity::init_hq(&hq_dir, "crash", clock()).expect("HQ");
        let request =
            std::fs::read(identity::init_site(&desk_dir, "desk", clock().as_ref()).expect("site"))
                .expect("request");
        let package = identity::enroll(
            &hq,
            &hq_dir,
            &request,
            "desk-1".parse().expect("site id"),
            Role::Issuer,
            clock().as_ref(),
        )
        .expect("enroll");
        let desk = identity::join(&desk_dir, &package, clock()).expect("join");
        let a = keys::parse_component("0123456789ABCDEFFEDCBA9876543210").expect("component");
        let b = keys::parse_component("1111111111111111222222222222222F").expect("component");
        keys::ceremony(&hq, &a, &b).expect("ceremony");
        let hq_key = identity::load_key(&hq_dir).expect("HQ key");
        let exported = keys::export(&hq, &hq_key, &desk.node_id()).expect("export");
        keys::import(
            &desk,
            &identity::load_key(&desk_dir).expect("desk key"),
            &exported,
        )
        .expect("import");
        let masters = keys::held(&hq, &hq_key)
            .expect("held")
            .masters()
            .expect("masters");
        seed(&hq);
        deliver(&hq, &desk);
        Net {
            tmp,
            hq_dir,
            desk_dir,
            masters,
            bin: cardmesh(),
        }
    }

    fn hq(&self) -> Store {
        identity::open(&self.hq_dir, clock()).expect("HQ store")
    }

    fn desk(&self) -> Store {
        identity::open(&self.desk_dir, clock()).expect("desk store")
    }

    /// A personalized, registered, active named card in a state file.
    fn card_file(&self, n: u8) -> (PathBuf, CardAsn) {
        let asn = Asn([0x10, 0, 0, 0, 0, 0, 0x7c, n]);
        let path = self.tmp.path().join(format!("card-{n}.card"));
        VirtualCard::create(
            &path,
            Personalization {
                asn,
                keys: self.masters.card_keys(&asn),
                pin: Pin::parse(CARD_PIN).expect("PIN"),
                issue_date: [0x20, 0x26, 0x01, 0x01],
                expiry: [0x20, 0x31, 0x12, 0x31],
                card_class: 1,
                max_balance: 1_000_000,
            },
        )
        .expect("card file");
        let asn = CardAsn(asn.0);
        let hq = self.hq();
        for change in [
            CardChange::Personalized {
                class: "standard".parse().expect("class"),
                expiry: BusinessDay {
                    year: 2031,
                    month: 12,
                    day: 31,
                },
                issuer: "hq".parse().expect("site"),
            },
            CardChange::Holder(None),
            CardChange::Status(cardmesh_model::body::CardStatus::Active),
        ] {
            hq.append_local(Body::CardRegistry(CardEvent { asn, change }))
                .expect("registry");
        }
        deliver(&hq, &self.desk());
        (path, asn)
    }

    fn pos<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("pos")
            .arg("--data")
            .arg(self.desk_dir.path())
            .arg("--terminal")
            .arg(TERMINAL)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    }

    /// `cardmesh sync usb` of the node in `data` with the stick at `stick`.
    fn usb(&self, stick: &Path, data: &Path) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(["sync", "usb"])
            .arg(stick)
            .arg("--data")
            .arg(data)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    }
}

fn seed(hq: &Store) {
    hq.edit_doc(DocName::Network, |d| {
        for site in ["hq", "desk-1"] {
            network::set_site(
                d,
                &site.parse().expect("site"),
                &SiteInfo {
                    name: site.into(),
                    merchant: "main".parse().expect("merchant"),
                    utc_offset_min: 480,
                },
            )?;
        }
        let terminal: TerminalId = TERMINAL.parse().expect("terminal");
        network::set_terminal(d, &terminal, &"desk-1".parse().expect("site"))?;
        let op = "admin-1".parse().expect("operator");
        network::set_operator(
            d,
            &op,
            &OperatorInfo {
                name: "admin".into(),
                role: "admin".into(),
                site: "desk-1".parse().expect("site"),
            },
        )?;
        network::set_operator_pin(d, &op, &pin_verifier(&op, "5555"))?;
        network::set_limits(d, &Limits::default())
    })
    .expect("registry")
    .expect("changed");
    hq.edit_doc(DocName::PriceBook, |d| {
        let id = "cola".parse().expect("product");
        pricebook::set_product(
            d,
            &id,
            &Product {
                name: "cola".into(),
                unit: "pc".into(),
                site_override: false,
            },
        )?;
        pricebook::schedule_price(d, &id, 0, Money::from_fen(300))
    })
    .expect("price book")
    .expect("changed");
}

/// Copies HQ's whole feed into `to`.
fn deliver(from: &Store, to: &Store) {
    let origin = from.node_id();
    let head = from.head(&origin).expect("head");
    let entries = from
        .entries(
            FeedRange {
                origin,
                from: 1,
                to: head.seq,
            },
            usize::MAX,
        )
        .expect("entries");
    let report = to.ingest(entries).expect("ingest");
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
}

/// Runs the command to its end: it must succeed. Returns how long it took.
fn run_ok(mut c: Command) -> Duration {
    let started = Instant::now();
    let out = c.output().expect("spawn");
    assert!(
        out.status.success(),
        "{c:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

/// What `kill_after` did to the command.
enum Kill {
    /// SIGKILL reached it while it ran.
    Landed,
    /// It ended first, after this long.
    TooLate(Duration),
}

impl Kill {
    fn landed(&self) -> bool {
        matches!(self, Kill::Landed)
    }
}

/// Starts the command and SIGKILLs it after `after`, or lets it finish if it is faster.
fn kill_after(mut c: Command, after: Duration) -> Kill {
    let mut child = c.stderr(Stdio::null()).spawn().expect("spawn");
    let started = Instant::now();
    let deadline = started + after;
    loop {
        if child.try_wait().expect("wait").is_some() {
            return Kill::TooLate(started.elapsed());
        }
        if Instant::now() >= deadline {
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
            return Kill::Landed;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn kills() -> usize {
    std::env::var("CARDMESH_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(KILLS)
}

/// Ledger = card, one entry per consumed counter, nothing pending, views = refold.
fn assert_ledger_equals_card(store: &Store, card_file: &Path, asn: CardAsn, after: &str) {
    let chip = VirtualCard::open(card_file).expect("card file");
    let chip_balance = i64::from(chip.balance());
    let mut purse = EPurse::new(MemoryReader::new(chip));
    purse.select().expect("select");
    let on_card = purse.read_records().expect("records").len();
    assert!(
        store.pending_intents(&asn).expect("intents").is_empty(),
        "{after}: an intent is still pending after the card came back"
    );
    let mut ledger = 0i64;
    let mut counters = BTreeSet::new();
    for e in store.card_history(&asn).expect("history") {
        let Body::Card(t) = &e.body else { continue };
        let Some(space) = t.kind.counter_space() else {
            continue;
        };
        assert!(
            counters.insert((space, t.card_counter)),
            "{after}: two ledger entries for counter {:?}",
            (space, t.card_counter)
        );
        ledger += match t.kind {
            TxnKind::Load => t.amount.fen(),
            TxnKind::Purchase | TxnKind::DebitForUnlock => -t.amount.fen(),
            _ => 0,
        };
    }
    assert_eq!(
        ledger, chip_balance,
        "{after}: ledger balance = card balance"
    );
    // The card's log keeps its last records only; the ledger has at least as many.
    assert!(counters.len() >= on_card.min(counters.len()));
    store.verify_views().expect("views equal a refold");
}

#[test]
fn killing_the_node_at_random_moments_of_card_operations_loses_no_money() {
    let net = Net::create();
    let (file, asn) = net.card_file(1);
    let card = ["--card-file", file.to_str().expect("utf-8 path")];
    let with_card = |args: &[&'static str]| -> Vec<String> {
        args.iter().chain(&card).map(|s| s.to_string()).collect()
    };
    run_ok(net.pos(&["login", "admin-1", "--pin", "5555"]));
    run_ok(net.pos(&with_card(&["load", "--amount", "500", "--pin", CARD_PIN])));

    let purchase = with_card(&["purchase", "--item", "cola:1"]);
    let load = with_card(&["load", "--amount", "1", "--pin", CARD_PIN]);
    let grey_lock = with_card(&["grey-lock"]);
    let unlock = with_card(&["unlock", "--amount", "2.5"]);
    let balance = with_card(&["balance"]);
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut landed = 0;
    for round in 0..kills() {
        for (what, args) in [
            ("purchase", &purchase),
            ("load", &load),
            ("grey lock", &grey_lock),
        ] {
            // How long the command takes whole, so that kills spread over all of it.
            let took = run_ok(net.pos(args));
            if what == "grey lock" {
                run_ok(net.pos(&unlock));
            }
            let at = took.mul_f64(rng.random_range(0.0..1.0));
            landed += usize::from(kill_after(net.pos(args), at).landed());
            run_ok(net.pos(&balance));
            if what == "grey lock" {
                // The lock may or may not have happened: a debit finishes it if it did.
                let locked = {
                    let chip = VirtualCard::open(&file).expect("card file");
                    let mut p = EPurse::new(MemoryReader::new(chip));
                    p.select().expect("select");
                    p.grey_status().expect("grey status").locked
                };
                if locked {
                    let at = took.mul_f64(rng.random_range(0.0..1.0));
                    landed += usize::from(kill_after(net.pos(&unlock), at).landed());
                    run_ok(net.pos(&balance));
                    let chip = VirtualCard::open(&file).expect("card file");
                    let mut p = EPurse::new(MemoryReader::new(chip));
                    p.select().expect("select");
                    if p.grey_status().expect("grey status").locked {
                        run_ok(net.pos(&unlock));
                    }
                }
            }
            let after = format!("round {round}, {what} killed after {at:?}");
            assert_ledger_equals_card(&net.desk(), &file, asn, &after);
        }
    }
    assert!(
        landed > kills(),
        "too few kills landed mid-command: {landed}"
    );
    run_ok(net.pos(&purchase));
    assert_ledger_equals_card(&net.desk(), &file, asn, "the end");
}

#[test]
fn killing_the_node_during_a_stick_ingest_leaves_a_prefix_the_next_sync_completes() {
    let net = Net::create();
    let hq = net.hq();
    let hq_origin = hq.node_id();
    let network_key = identity::load_network_key(&net.hq_dir).expect("network key");
    let mut rng = StdRng::seed_from_u64(0x571c);
    let mut landed = 0;
    for round in 0..kills() {
        // HQ writes a few thousand entries and a stick carries them to the desk.
        for i in 0..2_000u32 {
            let mut asn = [0x20, 0, 0, 0, 0, 0, 0, 0];
            asn[4..].copy_from_slice(&(round as u32 * 10_000 + i).to_be_bytes());
            hq.append_local(Body::Blacklist(BlacklistEvent::Block {
                asn: CardAsn(asn),
                reason: BlockReason::Lost,
                operator: None,
            }))
            .expect("block");
        }
        let stick = net.tmp.path().join(format!("stick-{round}"));
        std::fs::create_dir_all(&stick).expect("stick");
        usb::sync_stick(
            &hq,
            &network_key,
            &usb::stick_folder(&stick),
            1 << 30,
            &mut |_| {},
        )
        .expect("HQ writes the stick");
        // The desk and stick before the sync, to time the whole sync on a copy and to
        // go back to when a kill comes too late.
        let (desk_before, stick_before) = (
            net.tmp.path().join("desk-before"),
            net.tmp.path().join("stick-before"),
        );
        copy_dir(net.desk_dir.path(), &desk_before);
        copy_dir(&stick, &stick_before);
        let (desk_copy, stick_copy) = (
            net.tmp.path().join("desk-copy"),
            net.tmp.path().join("stick-copy"),
        );
        copy_dir(&desk_before, &desk_copy);
        copy_dir(&stick_before, &stick_copy);
        let mut took = run_ok(net.usb(&stick_copy, &desk_copy));
        std::fs::remove_dir_all(&desk_copy).expect("copy");
        std::fs::remove_dir_all(&stick_copy).expect("copy");

        // A sync may run faster than the timed one (the other test of this file loads
        // the same two cores by fits). A kill drawn after its end is drawn again within
        // the time that sync took, from the same desk and stick.
        let mut tries = 0;
        let at = loop {
            tries += 1;
            let at = took.mul_f64(rng.random_range(0.0..1.0));
            match kill_after(net.usb(&stick, net.desk_dir.path()), at) {
                Kill::Landed => {
                    landed += 1;
                    break at;
                }
                Kill::TooLate(ran) => {
                    took = ran;
                    restore_dir(&desk_before, net.desk_dir.path());
                    restore_dir(&stick_before, &stick);
                    if tries == TRIES {
                        break at;
                    }
                }
            }
        };
        std::fs::remove_dir_all(&desk_before).expect("snapshot");
        std::fs::remove_dir_all(&stick_before).expect("snapshot");
        let desk = net.desk();
        desk.verify_views()
            .unwrap_or_else(|e| panic!("round {round}, killed after {at:?}: {e}"));
        let got = desk.version_vector().expect("vv").get(&hq_origin);
        let head = hq.head(&hq_origin).expect("head").seq;
        assert!(got <= head, "the desk holds more of HQ's feed than HQ");
        drop(desk);
        run_ok(net.usb(&stick, net.desk_dir.path()));
        let desk = net.desk();
        assert_eq!(
            desk.version_vector().expect("vv").get(&hq_origin),
            head,
            "round {round}: the sync after the kill did not complete the feed"
        );
        desk.verify_views().expect("views equal a refold");
    }
    assert!(
        landed > kills() / 2,
        "too few kills landed mid-ingest: {landed}"
    );
}

/// Makes `to` a copy of `from` again, dropping whatever was written to it since.
fn restore_dir(from: &Path, to: &Path) {
    std::fs::remove_dir_all(to).expect("remove");
    copy_dir(from, to);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("dir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}
