//! Crash safety: a child process appends, ingests, edits a document and reserves
//! terminal numbers from several threads, printing each acknowledgement; the test kills
//! it with SIGKILL at a random moment, reopens the store and checks that everything
//! acknowledged is there, that the version vector matches the feeds, and that every
//! view equals a refold of the feeds. Many rounds, within a time bound.
//!
//! The child is this test binary again, running `crash_worker` with
//! `CARDMESH_CRASH_STORE` naming the store.

mod store_support;

use cardmesh_model::body::{BlacklistEvent, Body};
use cardmesh_model::docs::{DocName, pricebook};
use cardmesh_model::*;
use cardmesh_node::store::Store;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use store_support::*;

const STORE_VAR: &str = "CARDMESH_CRASH_STORE";
const ROUNDS: usize = 30;
const TIME_BOUND: Duration = Duration::from_secs(40);

/// The card a local append blocks: which thread, which round of it.
fn card(thread: u8, n: u32) -> CardAsn {
    let b = n.to_be_bytes();
    CardAsn([0xc0, thread, 0, 0, b[0], b[1], b[2], b[3]])
}

/// Entry `seq` of the remote shop's feed is always the same block, so a restarted
/// worker continues the same feed from whatever the store holds.
fn remote_entry(net: &Net, head: FeedHead) -> Entry {
    let seq = head.seq + 1;
    Entry::create(
        &net.keys[1],
        head,
        Hlc::new(seq, 0),
        block(card(0xee, seq as u32)),
    )
}

#[test]
fn crash_worker() {
    let Ok(path) = std::env::var(STORE_VAR) else {
        return;
    };
    let net = Net::new();
    let store = Store::open(
        Path::new(&path),
        net.keys[0].clone(),
        TestClock::new(5_000_000),
    )
    .expect("worker opens the store");
    let mut threads = Vec::new();
    for t in 0..4u8 {
        let store = store.clone();
        threads.push(std::thread::spawn(move || {
            for n in 0.. {
                let e = store.append_local(block(card(t, n))).unwrap();
                println!("ACK local {} {t} {n}", e.seq);
            }
        }));
    }
    {
        let store = store.clone();
        threads.push(std::thread::spawn(move || {
            let net = Net::new();
            let shop = net.keys[1].node_id();
            loop {
                let mut head = store.head(&shop).unwrap();
                let mut batch = Vec::new();
                for _ in 0..20 {
                    let e = remote_entry(&net, head);
                    head = e.head();
                    batch.push(e);
                }
                // Some again, as a resumed sync would send them.
                batch.extend(batch[..5].to_vec());
                let report = store.ingest(batch).unwrap();
                assert!(report.rejected.is_empty(), "{:?}", report.rejected);
                println!("ACK ingest {}", head.seq);
            }
        }));
    }
    {
        let store = store.clone();
        threads.push(std::thread::spawn(move || {
            let product: ProductId = "diesel-0".parse().unwrap();
            // A price at a time no earlier round used: an unchanged price is no edit.
            let base = 1_000 * store.head(&store.node_id()).unwrap().seq as i64;
            for i in 0i64.. {
                let e = store
                    .edit_doc(DocName::PriceBook, |d| {
                        pricebook::schedule_price(d, &product, base + i, Money::from_fen(500 + i))
                    })
                    .unwrap()
                    .unwrap();
                println!("ACK doc {}", e.seq);
            }
        }));
    }
    {
        let store = store.clone();
        threads.push(std::thread::spawn(move || {
            loop {
                println!("ACK term {}", store.next_term_seq(&terminal(7)).unwrap());
            }
        }));
    }
    // Never reached before the kill; a guard in case the parent died first.
    std::thread::sleep(Duration::from_secs(30));
    std::process::exit(0);
}

#[derive(Default)]
struct Acked {
    local: Vec<(u64, u8, u32)>,
    docs: Vec<u64>,
    ingested: u64,
    terms: BTreeSet<u32>,
}

fn parse(out: &str, acked: &mut Acked) {
    for line in out.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["ACK", "local", seq, t, n] => {
                acked
                    .local
                    .push((seq.parse().unwrap(), t.parse().unwrap(), n.parse().unwrap()))
            }
            ["ACK", "ingest", seq] => acked.ingested = acked.ingested.max(seq.parse().unwrap()),
            ["ACK", "doc", seq] => acked.docs.push(seq.parse().unwrap()),
            ["ACK", "term", n] => assert!(
                acked.terms.insert(n.parse().unwrap()),
                "terminal number {n} handed out twice"
            ),
            _ => {}
        }
    }
}

/// A small xorshift for the kill delays; the seed is printed to replay a failure.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn acknowledged_writes_survive_sigkill_at_random_moments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node0.redb");
    let net = Net::new();
    {
        let store = net.store(dir.path(), 0);
        store.admit(net.certs[1].clone()).unwrap();
    }
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("crash test seed {seed} (set CRASH_SEED to replay the delays)");
    let mut rng = Rng(seed);
    let mut acked = Acked::default();
    let started = Instant::now();
    let mut rounds = 0;
    while rounds < ROUNDS && started.elapsed() < TIME_BOUND {
        rounds += 1;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_worker", "--nocapture", "--test-threads=1"])
            .env(STORE_VAR, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut out = String::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                out.push_str(&line);
                out.push('\n');
            }
            out
        });
        std::thread::sleep(Duration::from_millis(20 + rng.below(600)));
        child.kill().unwrap();
        child.wait().unwrap();
        parse(&reader.join().unwrap(), &mut acked);

        let store = Store::open(&path, net.keys[0].clone(), TestClock::new(9_000_000))
            .unwrap_or_else(|e| panic!("round {rounds}: reopen failed: {e}"));
        let me = net.keys[0].node_id();
        let vv = store.version_vector().unwrap();
        for &(seq, t, n) in &acked.local {
            let e = store
                .entries(
                    FeedRange {
                        origin: me,
                        from: seq,
                        to: seq,
                    },
                    1,
                )
                .unwrap();
            assert!(
                matches!(e.as_slice(), [e] if matches!(&e.body, Body::Blacklist(BlacklistEvent::Block { asn, .. }) if *asn == card(t, n))),
                "round {rounds}: acknowledged local entry {seq} is missing or different"
            );
        }
        for &seq in &acked.docs {
            assert!(
                seq <= vv.get(&me),
                "round {rounds}: document edit {seq} lost"
            );
        }
        assert!(
            vv.get(&net.keys[1].node_id()) >= acked.ingested,
            "round {rounds}: acknowledged ingest lost"
        );
        let next = store.next_term_seq(&terminal(7)).unwrap();
        assert!(
            acked.terms.last().is_none_or(|&last| next > last),
            "round {rounds}: terminal number {next} reissued"
        );
        acked.terms.insert(next);
        for (origin, n) in vv.iter() {
            let held = store
                .entries(
                    FeedRange {
                        origin: *origin,
                        from: 1,
                        to: *n,
                    },
                    usize::MAX,
                )
                .unwrap();
            assert_eq!(
                held.len() as u64,
                *n,
                "round {rounds}: feed {origin} has gaps"
            );
        }
        store
            .verify_views()
            .unwrap_or_else(|e| panic!("round {rounds}: {e}"));
    }
    println!(
        "{rounds} rounds in {:?}: {} local appends, {} document edits, {} ingested, {} terminal numbers acknowledged",
        started.elapsed(),
        acked.local.len(),
        acked.docs.len(),
        acked.ingested,
        acked.terms.len()
    );
    assert!(rounds >= 5, "too few rounds to mean anything");
    assert!(!acked.local.is_empty() && acked.ingested > 0);
}
