//! What each fuzz target does with one input, shared by the cargo-fuzz targets
//! (`fuzz_targets/`) and the stable regression test that replays the committed corpora
//! (`tests/tests/fuzz_corpus.rs`). Every function feeds outside bytes to one decoder
//! and checks what a decoder owes its caller: no panic, a typed error or a value, and
//! for a value, that encoding it again decodes to the same value.

use cardmesh_drivers::apdu::{ApduProcessor, Response};
use cardmesh_drivers::crypto::Key16;
use cardmesh_drivers::dispenser::dart;
use cardmesh_drivers::epurse::EPurse;
use cardmesh_drivers::keys::MasterKeys;
use cardmesh_drivers::modem::line::Deframer;
use cardmesh_drivers::reader::{CardReader, ReaderError, serial};
use cardmesh_drivers::sam::{MemorySeqStore, SoftwareSam};
use cardmesh_drivers::types::{BcdDateTime, Pin, TerminalId};
use cardmesh_model::codec::{self, Kind};

use cardmesh_model::sync::{Message, packed};
use cardmesh_model::{Certificate, Entry, NetworkId, NodeId};
use cardmesh_node::identity::{self, NetworkKey};
use cardmesh_node::usb::segment::{self, SegmentHeader};
use cardmesh_node::usb::{manifest, sealed};
use std::time::Duration;

/// One target: what it does with one input.
pub type Target = fn(&[u8]);

/// The targets, by name: what `cargo fuzz run <name>` and the regression test run.
pub const TARGETS: &[(&str, Target)] = &[
    ("sync_frame", sync_frame),
    ("serial_frame", serial_frame),
    ("stick_segment", stick_segment),
    ("entry_codec", entry_codec),
    ("apdu_response", apdu_response),
    ("dispenser_frame", dispenser_frame),
];

/// A sync session frame from a peer, and a packed batch inside one.
pub fn sync_frame(data: &[u8]) {
    if let Ok(m) = Message::decode(data) {
        assert_eq!(Message::decode(&m.encode()).ok(), Some(m));
    }
    if let Ok(entries) = packed::unpack(data) {
        assert_eq!(packed::unpack(&packed::pack(&entries)).ok(), Some(entries));
    }
}

/// Bytes off a serial line: the modem/null-modem line framing (any chunking), and the
/// serial card reader's frames.
pub fn serial_frame(data: &[u8]) {
    let (split, rest) = data.split_first().unwrap_or((&0, &[]));
    let mut whole = Deframer::new();
    let frames = whole.push(rest);
    let mut chunked = Deframer::new();
    let step = usize::from(*split % 7) + 1;
    let mut again = Vec::new();
    for chunk in rest.chunks(step) {
        again.extend(chunked.push(chunk));
    }
    assert_eq!(
        frames, again,
        "the line framing depends on how bytes arrive"
    );
    for f in &frames {
        let mut d = Deframer::new();
        assert_eq!(
            d.push(&cardmesh_drivers::modem::line::encode(f)),
            vec![f.clone()]
        );
    }
    let mut r = rest;
    while !r.is_empty() {
        match serial::read_frame(&mut r) {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
}

const NETWORK: NetworkId = NetworkId([7; 16]);

fn network_key() -> NetworkKey {
    NetworkKey([9; 32])
}

/// A file found on a stick: as it is (foreign, truncated, forged), and as a genuine
/// seal around fuzzed contents, compressed or not, so that the decoding behind the seal
/// is reached too.
pub fn stick_segment(data: &[u8]) {
    let key = network_key();
    let _ = segment::peek(NETWORK, data);
    let _ = segment::open(&key, NETWORK, None, data);
    let _ = manifest::open(&key, NETWORK, data);
    let header = SegmentHeader {
        network: NETWORK,
        origin: NodeId([3; 32]),
        from: 1,
        to: 2,
    };
    let compressed = zstd_frame(data);
    for payload in [data, &compressed] {
        let file = sealed::seal(Kind::StickSegment, &key, header, payload, [1; 24]);
        let _ = segment::open(&key, NETWORK, Some(header.range()), &file);
        let file = sealed::seal(
            Kind::StickManifest,
            &key,
            manifest::ManifestHeader { network: NETWORK },
            payload,
            [2; 24],
        );
        let _ = manifest::open(&key, NETWORK, &file);
    }
}

/// `data` as one zstd frame: what a stick segment holds behind its seal.
fn zstd_frame(data: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(data, 1).expect("zstd compresses any bytes")
}

/// The one codec, for every kind read from a file or a wire.
pub fn entry_codec(data: &[u8]) {
    if let Ok(e) = Entry::decode(data) {
        assert_eq!(Entry::decode(&e.encode()).ok(), Some(e.clone()));
        if let Some(key) = cardmesh_model::sign::PublicKey::of(&e.origin) {
            let _ = e.signature_valid(&key);
        }
        let _ = e.hash();
    }
    if let Ok(c) = codec::decode::<Certificate>(Kind::Certificate, data) {
        let _ = c.verify(c.network, c.hq);
    }
    let _ = identity::read_request(data);
}

/// A reader that answers each command with the next fuzzed response: a card (or a
/// man in the middle) saying anything at all.
struct Scripted<'a> {
    data: &'a [u8],
}

impl CardReader for Scripted<'_> {
    fn transmit(&mut self, _c_apdu: &[u8]) -> Result<Vec<u8>, ReaderError> {
        let (&len, rest) = self.data.split_first().ok_or(ReaderError::NoCard)?;
        let len = usize::from(len).min(rest.len());
        let (answer, rest) = rest.split_at(len);
        self.data = rest;
        Ok(answer.to_vec())
    }

    fn wait_for_card(&mut self, _: Duration) -> Result<(), ReaderError> {
        Ok(())
    }

    fn wait_for_removal(&mut self, _: Duration) -> Result<(), ReaderError> {
        Ok(())
    }
}

/// Card responses through the e-purse client: selection, balance, records, grey
/// status, proofs, and a purchase and a load that read their answers.
pub fn apdu_response(data: &[u8]) {
    let _ = Response::parse(data);
    let _ = cardmesh_drivers::card::TxRecord::from_bytes(data);
    let mut purse = EPurse::new(Scripted { data });
    let _ = purse.select();
    let _ = purse.balance();
    let _ = purse.read_records();
    let _ = purse.grey_status();
    let _ = purse.transaction_prove(cardmesh_drivers::epurse::ProveKind::Offline, 1);
    let _ = purse.verify_pin(&Pin::parse("123456").expect("PIN"));
    let mut sam = SoftwareSam::new(
        TerminalId([0, 0, 0, 0, 0, 1]),
        Key16::from_bytes([0x11; 16]),
        MemorySeqStore::default(),
    );
    let when = BcdDateTime::new(2026, 11, 21, 10, 0, 0).expect("date");
    let _ = purse.purchase(&mut sam, 100, when);
    let _ = purse.grey_lock(&mut sam, when);
    let mut card = cardmesh_drivers::card::VirtualCard::new(personalization());
    let _ = card.process(data);
}

fn personalization() -> cardmesh_drivers::card::Personalization {
    let asn = cardmesh_drivers::types::Asn([0x10, 0, 0, 0, 0, 0, 0, 1]);
    let masters = MasterKeys::derive(&Key16::from_bytes([0x21; 16]));
    cardmesh_drivers::card::Personalization {
        asn,
        keys: masters.card_keys(&asn),
        pin: Pin::parse("123456").expect("PIN"),
        issue_date: [0x20, 0x26, 0x01, 0x01],
        expiry: [0x20, 0x31, 0x12, 0x31],
        card_class: 1,
        max_balance: 1_000_000,
    }
}

/// Bytes from a fuel dispenser on RS-485: split into frames as the driver does, each
/// decoded, and the blocks of a decoded frame read as status and as host data.
pub fn dispenser_frame(data: &[u8]) {
    if let Ok(f) = dart::decode(data) {
        assert_eq!(dart::decode(&dart::encode(&f)).ok(), Some(f.clone()));
        let _ = dart::parse_status(&f.blocks);
        let _ = dart::parse_host_data(&f.blocks);
    }
    let mut splitter = dart::Splitter::new();
    for &b in data {
        if let Some(Ok(raw)) = splitter.push(b) {
            let _ = dart::decode(&raw);
        }
    }
    let _ = dart::from_bcd(data);
}
