//! Two hosts' modems on real ttys (socat pty pairs) joined by the simulated exchange:
//! a dial answered automatically, data both ways at the line rate, a hang-up heard by
//! the other side, and a dial to a busy line.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use cardmesh_drivers::modem::at::{Modem, ModemError};
use cardmesh_drivers::modem::pty::SocatPair;
use cardmesh_drivers::modem::sim::{Exchange, LineConfig};

fn read_n(m: &mut Modem, n: usize) -> Vec<u8> {
    read_while(m, |got| got.len() < n)
}

/// What the host reads until `more` says it has enough, or 10 s have passed.
fn read_while(m: &mut Modem, more: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while more(&got) && Instant::now() < deadline {
        let mut buf = [0u8; 256];
        match m.port().read(&mut buf) {
            Ok(k) => got.extend_from_slice(&buf[..k]),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("{e}"),
        }
    }
    got
}

/// The exchange at 33.6 kbit/s with the shop's modem (5551000) and HQ's (5552000),
/// each on a pty pair whose `a` end is its host's.
fn lines(dir: &std::path::Path) -> (Exchange, SocatPair, SocatPair) {
    let (shop, hq) = (
        SocatPair::start(dir, "shop").unwrap(),
        SocatPair::start(dir, "hq").unwrap(),
    );
    let mut exchange = Exchange::new(LineConfig::V34);
    exchange.install("5551000", shop.b()).unwrap();
    exchange.install("5552000", hq.b()).unwrap();
    (exchange, shop, hq)
}

/// The shop's modem dials HQ's (5552000), which answers by itself; the two line
/// rates each side was told.
fn call(shop: &SocatPair, hq: &SocatPair) -> (Modem, Modem, (u32, u32)) {
    let mut answer = Modem::open(hq.a()).unwrap();
    answer.auto_answer().unwrap();
    let answering = std::thread::spawn(move || {
        let rate = answer.wait_for_call(Duration::from_secs(10)).unwrap();
        (answer, rate)
    });
    let mut dial = Modem::open(shop.a()).unwrap();
    let rate = dial.dial("5552000", Duration::from_secs(10)).unwrap();
    let (answer, answered) = answering.join().unwrap();
    (dial, answer, (rate, answered))
}

#[test]
fn dial_answer_carry_data_and_hang_up() {
    let dir = tempfile::tempdir().unwrap();
    let (mut exchange, shop, hq) = lines(dir.path());
    let (mut dial, mut answer, rates) = call(&shop, &hq);
    assert_eq!(rates, (33_600, 33_600));

    // 3,360 bytes take about a second at 33.6 kbit/s.
    let data: Vec<u8> = (0..3360u32).map(|i| (i % 251) as u8).collect();
    let start = Instant::now();
    dial.port().write_all(&data).unwrap();
    assert_eq!(read_n(&mut answer, data.len()), data);
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(900), "{took:?}");
    answer.port().write_all(b"reply").unwrap();
    assert_eq!(read_n(&mut dial, 5), b"reply");

    // A third modem finds the line busy.
    let other = SocatPair::start(dir.path(), "other").unwrap();
    exchange.install("5553000", other.b()).unwrap();
    let mut third = Modem::open(other.a()).unwrap();
    assert!(matches!(
        third.dial("5552000", Duration::from_secs(5)),
        Err(ModemError::CallFailed(ref c)) if c == "BUSY"
    ));

    dial.hang_up().unwrap();
    assert_eq!(read_n(&mut answer, 14), b"\r\nNO CARRIER\r\n");
    assert!(!exchange.is_online("5552000"));
    assert_eq!(exchange.stats().calls, 1);
}

#[test]
fn a_hang_up_while_the_modem_still_sends_data_escapes_on_a_later_try() {
    let dir = tempfile::tempdir().unwrap();
    let (exchange, shop, hq) = lines(dir.path());
    let (mut dial, mut answer, _) = call(&shop, &hq);

    // About a second of data still queued for the line when the host escapes: the
    // modem reads `+++` right behind it, with no guard time before, so it is data.
    let data: Vec<u8> = (0..3360u32).map(|i| (i % 251) as u8).collect();
    dial.port().write_all(&data).unwrap();
    dial.hang_up().unwrap();
    assert!(!exchange.is_online("5551000"));
    let heard = read_while(&mut answer, |got| !got.ends_with(b"\r\nNO CARRIER\r\n"));
    assert!(
        heard.len() >= data.len() + 14 && heard.ends_with(b"\r\nNO CARRIER\r\n"),
        "the call ended after the data, got {} bytes",
        heard.len()
    );
    assert_eq!(&heard[..data.len()], &data[..]);
    // The first escape and its ATH go down the line as data. So may the second on a
    // loaded machine, where the pty hands the modem `+++` and `ATH` in one read and the
    // guard time between them is lost; `hang_up` has a third try for that.
    let lost = &heard[data.len()..heard.len() - b"\r\nNO CARRIER\r\n".len()];
    assert!(
        lost == b"+++ATH\r" || lost == b"+++ATH\r+++ATH\r",
        "whole escapes went down the line before the call ended, got {:?}",
        String::from_utf8_lossy(&heard[data.len()..])
    );
}
