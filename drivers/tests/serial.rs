//! The serial reader and its simulator over a real pseudo-terminal pair: a whole
//! purchase over the frame protocol, card insertion/removal, and damaged frames on the
//! line giving typed errors.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use cardmesh_drivers::epurse::{EPurse, EpurseError};
use cardmesh_drivers::reader::serial::{
    FrameError, SerialReader, SerialReaderSimulator, encode_frame,
};
use cardmesh_drivers::reader::{CardReader, ReaderError};
use cardmesh_drivers::types::Pin;
use common::*;
use serialport::{SerialPort, TTYPort};

/// A simulator on the master side of a pty pair and a reader opened by path on the
/// slave side, as the node would open /dev/ttyS0.
fn line() -> (SerialReaderSimulator, SerialReader) {
    let (mut master, slave) = TTYPort::pair().unwrap();
    master.set_timeout(Duration::from_millis(50)).unwrap();
    let path = slave.name().unwrap();
    let sim = SerialReaderSimulator::spawn(Box::new(master));
    let reader = SerialReader::open(&path, 115_200, Duration::from_secs(2)).unwrap();
    // Keep the slave fd open only through the reader.
    drop(slave);
    (sim, reader)
}

#[test]
fn purchase_over_the_serial_reader() {
    let mk = master_keys();
    let (sim, mut reader) = line();
    assert!(matches!(
        reader.wait_for_card(Duration::from_millis(120)),
        Err(ReaderError::Timeout)
    ));
    assert!(matches!(
        reader.transmit(&[0x80, 0x5C, 0x00, 0x02, 0x04]),
        Err(ReaderError::NoCard)
    ));
    sim.insert(Box::new(card()));
    reader.wait_for_card(Duration::from_secs(2)).unwrap();
    let mut purse = EPurse::new(&mut reader);
    purse.select().unwrap();
    purse.verify_pin(&Pin::parse(PIN).unwrap()).unwrap();
    purse.load(&load_key(&mk), terminal(), 800, now()).unwrap();
    let r = purse.purchase(&mut sam(&mk), 300, now()).unwrap();
    assert_eq!(r.balance_after, 500);
    assert!(sim.remove().is_some());
    reader.wait_for_removal(Duration::from_secs(2)).unwrap();
    let e = EPurse::new(&mut reader).select().unwrap_err();
    assert!(
        matches!(e, EpurseError::Reader(ReaderError::NoCard)),
        "{e:?}"
    );
}

/// A fake reader device on the master side that answers each request with `reply`.
fn fake_device(reply: Vec<u8>) -> (std::thread::JoinHandle<()>, SerialReader) {
    let (mut master, slave) = TTYPort::pair().unwrap();
    master.set_timeout(Duration::from_secs(2)).unwrap();
    let path = slave.name().unwrap();
    let reader = SerialReader::open(&path, 115_200, Duration::from_millis(300)).unwrap();
    drop(slave);
    let t = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        if master.read(&mut buf).is_ok() {
            master.write_all(&reply).unwrap();
            master.flush().unwrap();
            // Hold the line open until the reader gave up on the frame.
            std::thread::sleep(Duration::from_millis(600));
        }
    });
    (t, reader)
}

#[test]
fn truncated_reply_frame_is_a_typed_error() {
    let mut frame = encode_frame(&[0x00, 0x90, 0x00]);
    frame.truncate(frame.len() - 2);
    let (t, mut reader) = fake_device(frame);
    let e = reader
        .transmit(&[0x80, 0x5C, 0x00, 0x02, 0x04])
        .unwrap_err();
    assert!(
        matches!(e, ReaderError::Frame(FrameError::Truncated { got: 6 })),
        "{e:?}"
    );
    t.join().unwrap();
}

#[test]
fn corrupt_reply_frame_is_a_typed_error() {
    let mut frame = encode_frame(&[0x00, 0x90, 0x00]);
    frame[3] ^= 0xFF;
    let (t, mut reader) = fake_device(frame);
    let e = reader
        .transmit(&[0x80, 0x5C, 0x00, 0x02, 0x04])
        .unwrap_err();
    assert!(
        matches!(e, ReaderError::Frame(FrameError::Checksum { .. })),
        "{e:?}"
    );
    t.join().unwrap();
}

#[test]
fn silent_reader_times_out() {
    let (t, mut reader) = fake_device(Vec::new());
    assert!(matches!(
        reader.transmit(&[0x00]),
        Err(ReaderError::Timeout)
    ));
    t.join().unwrap();
}

#[test]
fn simulator_answers_a_damaged_request_with_bad_frame_status() {
    let (mut master, slave) = TTYPort::pair().unwrap();
    master.set_timeout(Duration::from_millis(50)).unwrap();
    let sim = SerialReaderSimulator::spawn(Box::new(master));
    let mut host = slave;
    host.set_timeout(Duration::from_secs(2)).unwrap();
    let mut bad = encode_frame(&[0x02]);
    bad[3] ^= 0x40;
    host.write_all(&bad).unwrap();
    let reply = cardmesh_drivers::reader::serial::read_frame(&mut host)
        .unwrap()
        .unwrap();
    assert_eq!(reply, vec![0x03]);
    // The line still works after the bad frame.
    host.write_all(&encode_frame(&[0x02])).unwrap();
    let reply = cardmesh_drivers::reader::serial::read_frame(&mut host)
        .unwrap()
        .unwrap();
    assert_eq!(reply, vec![0x00, 0x00]);
    drop(sim);
}
