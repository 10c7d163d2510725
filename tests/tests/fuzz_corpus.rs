//! Every input in the committed fuzz corpora (`fuzz/corpus/<target>/`), and every
//! crasher kept in `fuzz/regressions/<target>/`, goes through its decoder on stable: a
//! crash found once stays fixed without nightly or libFuzzer.

#[allow(dead_code)]
#[path = "../../fuzz/harness.rs"]
mod harness;

use std::path::Path;

fn inputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = read
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).expect("corpus file");
            (p.display().to_string(), bytes)
        })
        .collect()
}

#[test]
fn every_corpus_input_decodes_or_is_refused_without_a_panic() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    for (name, target) in harness::TARGETS {
        let corpus = inputs(&fuzz.join("corpus").join(name));
        assert!(
            corpus.len() >= 3,
            "fuzz/corpus/{name} holds {} inputs: the seed corpus is missing",
            corpus.len()
        );
        let crashers = inputs(&fuzz.join("regressions").join(name));
        for (path, bytes) in corpus.iter().chain(&crashers) {
            let outcome = std::panic::catch_unwind(|| target(bytes));
            assert!(outcome.is_ok(), "{name} panics on {path}");
        }
    }
}

/// Writes the seed corpus: genuine inputs of each decoder, from which the fuzzer
/// mutates. Run after a format change: `cargo test -p tests --test fuzz_corpus --
/// --ignored`, then commit `fuzz/corpus/`.
#[test]
#[ignore = "writes fuzz/corpus; run by hand after a format change"]
fn write_seed_corpus() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    for (name, inputs) in seeds::all() {
        let dir = fuzz.join(name);
        std::fs::create_dir_all(&dir).expect("corpus folder");
        for (i, bytes) in inputs.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), bytes).expect("corpus file");
        }
    }
}

/// Genuine inputs, made with the encoders the decoders mirror.
mod seeds {
    use cardmesh_drivers::apdu::ApduProcessor;
    use cardmesh_drivers::card::{Personalization, VirtualCard};
    use cardmesh_drivers::crypto::Key16;
    use cardmesh_drivers::dispenser::dart::{self, Address, Block, Frame, Kind as DartKind};
    use cardmesh_drivers::epurse::EPurse;
    use cardmesh_drivers::keys::MasterKeys;
    use cardmesh_drivers::modem::line;
    use cardmesh_drivers::reader::{CardReader, MemoryReader, ReaderError, serial};
    use cardmesh_drivers::sam::{MemorySeqStore, SoftwareSam};
    use cardmesh_drivers::types::{Asn, BcdDateTime, Pin, TerminalId};
    use cardmesh_model::auth::CertRequest;
    use cardmesh_model::body::{Alarm, AlarmKind, Body};
    use cardmesh_model::sync::{Message, packed};
    use cardmesh_model::{Certificate, Entry, FeedHead, Hlc, NetworkId, NodeKey, Role};
    use cardmesh_node::identity::NetworkKey;
    use cardmesh_node::usb::manifest::{self, Manifest};
    use cardmesh_node::usb::segment::{self, SegmentBody};
    use std::time::Duration;

    fn entries(key: &NodeKey, n: u64) -> Vec<Entry> {
        let mut head = FeedHead::default();
        (0..n)
            .map(|i| {
                let e = Entry::create(
                    key,
                    head,
                    Hlc::new(1_795_219_200_000 + i, 0),
                    Body::Alarm(Alarm {
                        kind: AlarmKind::RiskLimit,
                        asn: None,
                        detail: format!("seed {i}"),
                    }),
                );
                head = e.head();
                e
            })
            .collect()
    }

    /// A reader that records every response of a real chip, length-prefixed as the
    /// `apdu_response` target reads them.
    struct Recording {
        inner: MemoryReader<VirtualCard>,
        transcript: Vec<u8>,
    }

    impl CardReader for Recording {
        fn transmit(&mut self, c: &[u8]) -> Result<Vec<u8>, ReaderError> {
            let r = self.inner.transmit(c)?;
            let kept = &r[..r.len().min(255)];
            self.transcript.push(kept.len() as u8);
            self.transcript.extend_from_slice(kept);
            Ok(r)
        }
        fn wait_for_card(&mut self, t: Duration) -> Result<(), ReaderError> {
            self.inner.wait_for_card(t)
        }
        fn wait_for_removal(&mut self, t: Duration) -> Result<(), ReaderError> {
            self.inner.wait_for_removal(t)
        }
    }

    fn card_transcripts() -> Vec<Vec<u8>> {
        let masters = MasterKeys::derive(&Key16::from_bytes([0x21; 16]));
        let asn = Asn([0x10, 0, 0, 0, 0, 0, 0, 1]);
        let chip = VirtualCard::new(Personalization {
            asn,
            keys: masters.card_keys(&asn),
            pin: Pin::parse("123456").expect("PIN"),
            issue_date: [0x20, 0x26, 0x01, 0x01],
            expiry: [0x20, 0x31, 0x12, 0x31],
            card_class: 1,
            max_balance: 1_000_000,
        });
        let mut purse = EPurse::new(Recording {
            inner: MemoryReader::new(chip),
            transcript: Vec::new(),
        });
        let mut out = Vec::new();
        let mut cut = |p: &mut EPurse<Recording>| {
            out.push(std::mem::take(&mut p.reader_mut().transcript));
        };
        let _ = purse.select();
        let _ = purse.balance();
        cut(&mut purse);
        let _ = purse.select();
        let _ = purse.read_records();
        let _ = purse.grey_status();
        cut(&mut purse);
        let mut sam = SoftwareSam::new(
            TerminalId([0, 0, 0, 0, 0, 1]),
            masters.purchase,
            MemorySeqStore::default(),
        );
        let when = BcdDateTime::new(2026, 11, 21, 10, 0, 0).expect("date");
        let _ = purse.select();
        let _ = purse.purchase(&mut sam, 0, when);
        cut(&mut purse);
        let _ = purse.select();
        let _ = purse.grey_lock(&mut sam, when);
        cut(&mut purse);
        let mut chip = purse.into_reader().inner.remove().expect("chip");
        out.push(chip.process(&[0x00, 0xA4, 0x04, 0x00, 0x02, 0x3F, 0x00]));
        out
    }

    pub fn all() -> Vec<(&'static str, Vec<Vec<u8>>)> {
        let hq = NodeKey::from_seed(&[1; 32]);
        let network = NetworkId([7; 16]);
        let cert = Certificate::issue(
            &hq,
            CertRequest {
                network,
                network_name: "fuzz".into(),
                node: hq.node_id(),
                site: "hq".parse().expect("site"),
                role: Role::Hq,
                issued: Hlc::new(1_795_219_200_000, 0),
            },
        );
        let feed = entries(&hq, 5);
        let key = NetworkKey([9; 32]);
        let sync = vec![
            Message::Done.encode(),
            Message::Error {
                reason: "the peer's store failed; try again later".into(),
            }
            .encode(),
            Message::Batch(cardmesh_model::sync::message::Batch {
                id: 1,
                certificates: vec![cert.clone()],
                packed: packed::pack(&feed),
            })
            .encode(),
            packed::pack(&feed),
        ];
        let serial = vec![
            line::encode(b"quic packet"),
            [line::encode(&[0x7E; 40]), line::encode(&[0xC3; 3])].concat(),
            [vec![3], serial::encode_frame(&[0x90, 0x00])].concat(),
        ];
        let segment = SegmentBody {
            certificate: None,
            entries: feed.clone(),
        };
        let stick = vec![
            segment::seal(&key, network, &segment, [3; 24]).expect("segment"),
            manifest::seal(&key, network, &Manifest::default(), [4; 24]),
            postcard_plain(&segment),
        ];
        let codec = vec![
            feed[0].encode(),
            feed[4].encode(),
            cardmesh_model::codec::encode(cardmesh_model::codec::Kind::Certificate, &cert),
        ];
        let address = Address::new(0x50).expect("address");
        let frame = |kind, blocks| {
            dart::encode(&Frame {
                address,
                kind,
                seq: 2,
                blocks,
            })
        };
        let dispenser = vec![
            frame(
                DartKind::Data,
                vec![
                    Block::new(0x01, vec![0x06]).expect("block"),
                    Block::new(0x02, vec![0x00, 0x00, 0x12, 0x50, 0x00, 0x00, 0x45, 0x00])
                        .expect("block"),
                ],
            ),
            frame(DartKind::Ack, Vec::new()),
            frame(DartKind::Eot, Vec::new()),
        ];
        vec![
            ("sync_frame", sync),
            ("serial_frame", serial),
            ("stick_segment", stick),
            ("entry_codec", codec),
            ("apdu_response", card_transcripts()),
            ("dispenser_frame", dispenser),
        ]
    }

    /// A segment body as it is behind the seal, uncompressed: the target compresses
    /// and seals it to reach the decoding.
    fn postcard_plain(body: &SegmentBody) -> Vec<u8> {
        let mut v = Vec::new();
        for e in &body.entries {
            v.extend(e.encode());
        }
        v
    }
}
