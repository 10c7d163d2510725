//! The USB stick as a user meets it: real nodes made with `init`/`enroll`/`join`, a real
//! folder standing in for the stick, damaged and forged files made the way a bad copy or
//! an attacker would make them.

mod store_support;

use cardmesh_model::docs::{DocName, pricebook};
use cardmesh_model::*;
use cardmesh_node::identity::{self, DataDir, NetworkKey};
use cardmesh_node::store::{Clock, Store, SystemClock};
use cardmesh_node::usb::segment::{self, SegmentBody};
use cardmesh_node::usb::{self, Phase, SkipReason, StickReport, UsbError, sync_stick};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use store_support::{asn, block, holder, purchase};

const NO_LIMIT: u64 = u64::MAX;

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

struct Node {
    store: Store,
    key: NetworkKey,
}

impl Node {
    fn sync(&self, stick: &Path) -> StickReport {
        self.sync_budget(stick, NO_LIMIT)
    }

    fn sync_budget(&self, stick: &Path, budget: u64) -> StickReport {
        sync_stick(&self.store, &self.key, stick, budget, &mut |_| {}).unwrap()
    }

    /// A sync expected to be refused: why.
    fn refused(&self, stick: &Path) -> UsbError {
        sync_stick(&self.store, &self.key, stick, NO_LIMIT, &mut |_| {}).unwrap_err()
    }

    fn vv(&self) -> VersionVector {
        self.store.version_vector().unwrap()
    }

    fn site(&self) -> SiteId {
        self.store.own_certificate().site
    }

    fn sell(&self, n: u16) {
        for i in 1..=n {
            self.store
                .append_local(purchase(self.site(), asn(1), i, 100))
                .unwrap();
        }
    }
}

/// HQ and two enrolled shops, each in its own data folder under `root`.
fn network(root: &Path) -> (Node, Node, Node) {
    let hq_dir = DataDir::new(root.join("hq"));
    let hq = identity::init_hq(&hq_dir, "chain", clock()).unwrap();
    let mut sites = ["shop-a", "shop-b"].into_iter().map(|name| {
        let dir = DataDir::new(root.join(name));
        let request =
            std::fs::read(identity::init_site(&dir, name, clock().as_ref()).unwrap()).unwrap();
        let package = identity::enroll(
            &hq,
            &hq_dir,
            &request,
            name.parse().unwrap(),
            Role::Store,
            clock().as_ref(),
        )
        .unwrap();
        Node {
            store: identity::join(&dir, &package, clock()).unwrap(),
            key: identity::load_network_key(&dir).unwrap(),
        }
    });
    let (a, b) = (sites.next().unwrap(), sites.next().unwrap());
    let hq = Node {
        store: hq,
        key: identity::load_network_key(&hq_dir).unwrap(),
    };
    (hq, a, b)
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn segment_of(stick: &Path, origin: NodeId, from: u64, to: u64) -> PathBuf {
    stick.join(segment::relative_path(&FeedRange { origin, from, to }))
}

/// Why the sync skipped the segment at `path` on the stick at `stick`, if it did.
fn skipped(report: &StickReport, stick: &Path, path: &Path) -> Option<SkipReason> {
    let rel = path.strip_prefix(stick).unwrap();
    report
        .skipped
        .iter()
        .find(|s| s.path == rel)
        .map(|s| s.reason.clone())
}

fn reasons(report: &StickReport) -> Vec<String> {
    report
        .skipped
        .iter()
        .map(|s| format!("{}: {}", s.path.display(), s.reason))
        .collect()
}

#[test]
fn a_stick_carried_shop_to_shop_to_hq_and_back_converges_everyone() {
    let tmp = tempfile::tempdir().unwrap();
    let (hq, a, b) = network(tmp.path());
    let stick = usb::stick_folder(tmp.path());

    a.sell(4);
    let first = a.sync(&stick);
    assert_eq!((first.taken_in, first.written_out), (0, 4));
    assert!(first.skipped.is_empty(), "{:?}", reasons(&first));

    b.sell(2);
    let at_b = b.sync(&stick);
    assert_eq!((at_b.taken_in, at_b.written_out), (4, 2));
    assert_eq!(b.vv().get(&a.store.node_id()), 4);

    let at_hq = hq.sync(&stick);
    assert_eq!(at_hq.taken_in, 6);
    assert_eq!(hq.store.card_history(&asn(1)).unwrap().len(), 6);

    // HQ blocks a card and changes a price; the stick takes them back to shop A.
    hq.store.append_local(block(asn(9))).unwrap();
    let diesel: ProductId = "diesel-0".parse().unwrap();
    hq.store
        .edit_doc(DocName::PriceBook, |d| {
            pricebook::schedule_price(d, &diesel, 0, Money::from_fen(789))
        })
        .unwrap()
        .unwrap();
    hq.sync(&stick);
    assert!(!a.store.is_blocked(&asn(9)).unwrap());
    a.sync(&stick);
    assert!(a.store.is_blocked(&asn(9)).unwrap());
    let book = pricebook::read(&a.store.doc(&DocName::PriceBook).unwrap().unwrap());
    assert_eq!(book.prices.at(&diesel, 10), Some((0, Money::from_fen(789))));

    let last = b.sync(&stick);
    assert_eq!(last.stick_lacks, 0);
    for node in [&hq, &a, &b] {
        assert_eq!(node.vv(), hq.vv());
        node.store.verify_views().unwrap();
    }
    assert_eq!(last.stick_vector, hq.vv());
    // A stick that is up to date costs nothing to sync again.
    let again = hq.sync(&stick);
    assert_eq!(
        (again.taken_in, again.written_out, again.bytes_written),
        (0, 0, 0)
    );
}

#[test]
fn bad_segments_are_reported_and_skipped_and_a_clean_copy_heals() {
    let tmp = tempfile::tempdir().unwrap();
    let (hq, a, b) = network(tmp.path());
    let stick = tmp.path().join("stick");
    let older = tmp.path().join("older-stick");
    let a_id = a.store.node_id();
    let network = hq.store.hq_certificate().network;

    // Shop A fills the stick two entries at a time: segments 1-2, 3-4, ... 13-14; an
    // older stick got entries 1-4 in one segment, later copied onto this one (a replay).
    for round in 0..7 {
        a.sell(2);
        a.sync(&stick);
        if round == 1 {
            a.sync(&older);
        }
    }
    b.sell(3);
    b.sync(&stick);
    let seg = |from, to| segment_of(&stick, a_id, from, to);
    std::fs::copy(segment_of(&older, a_id, 1, 4), seg(1, 4)).unwrap();

    let cut = std::fs::read(seg(5, 6)).unwrap();
    std::fs::write(seg(5, 6), &cut[..cut.len() - 10]).unwrap();
    let mut flipped = std::fs::read(seg(7, 8)).unwrap();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x10;
    std::fs::write(seg(7, 8), flipped).unwrap();
    let reseal = |path: &Path, key: &NetworkKey, net: NetworkId, f: &dyn Fn(&mut SegmentBody)| {
        let (_, mut body) =
            segment::open(&a.key, network, None, &std::fs::read(path).unwrap()).unwrap();
        f(&mut body);
        std::fs::write(path, segment::seal(key, net, &body, [1; 24]).unwrap()).unwrap();
    };
    let stranger = NetworkKey([7; 32]);
    reseal(&seg(9, 10), &stranger, network, &|_| {});
    reseal(&seg(11, 12), &a.key, network, &|body| {
        body.entries[0].hlc = Hlc::new(1, 0);
    });
    reseal(&seg(13, 14), &stranger, NetworkId([0xee; 16]), &|_| {});
    // A key that was never enrolled signs a feed; whoever holds the network key seals it.
    let rogue = NodeKey::from_seed(&[0x66; 32]);
    let rogue_entry = Entry::create(&rogue, FeedHead::EMPTY, Hlc::new(5, 0), block(asn(3)));
    let rogue_body = SegmentBody {
        certificate: None,
        entries: vec![rogue_entry],
    };
    let rogue_path = segment_of(&stick, rogue.node_id(), 1, 1);
    std::fs::create_dir_all(rogue_path.parent().unwrap()).unwrap();
    std::fs::write(
        &rogue_path,
        segment::seal(&a.key, network, &rogue_body, [2; 24]).unwrap(),
    )
    .unwrap();

    let mut events = Vec::new();
    let report = sync_stick(&hq.store, &hq.key, &stick, NO_LIMIT, &mut |p| {
        events.push(p)
    })
    .unwrap();
    let why = |from, to| skipped(&report, &stick, &seg(from, to));
    assert!(
        matches!(why(1, 2), Some(SkipReason::Duplicate)),
        "{:?}",
        reasons(&report)
    );
    assert_eq!(why(5, 6), Some(SkipReason::Truncated));
    assert_eq!(why(7, 8), Some(SkipReason::SealBroken));
    assert_eq!(why(9, 10), Some(SkipReason::SealBroken));
    assert!(matches!(why(11, 12), Some(SkipReason::Forged(_))));
    assert_eq!(
        why(13, 14),
        Some(SkipReason::ForeignNetwork(NetworkId([0xee; 16])))
    );
    assert!(report.skipped.iter().any(|s| {
        s.path
            .starts_with(rogue_path.parent().unwrap().strip_prefix(&stick).unwrap())
            && matches!(s.reason, SkipReason::Refused(_))
    }));
    // Nothing of a bad segment is applied; everything else is.
    assert_eq!(hq.vv().get(&a_id), 4);
    assert_eq!(hq.vv().get(&b.store.node_id()), 3);
    assert_eq!(hq.vv().get(&rogue.node_id()), 0);
    assert_eq!(report.taken_in, 7);
    hq.store.verify_views().unwrap();
    assert_eq!(
        report.removed.len(),
        2,
        "the copies the replay made redundant"
    );
    assert!(
        events
            .iter()
            .any(|p| p.phase == Phase::Reading && p.done == p.total)
    );

    // Shop A, which holds its whole feed, rewrites what the stick lost and clears the
    // bad copies away; then HQ takes the rest.
    let heal = a.sync(&stick);
    assert_eq!(heal.written_out, 10, "{:?}", reasons(&heal));
    assert_eq!(heal.removed.len(), 4, "{:?}", heal.removed);
    let after = hq.sync(&stick);
    assert_eq!(after.taken_in, 10);
    assert_eq!(hq.vv().get(&a_id), 14);
    hq.store.verify_views().unwrap();
    // What remains skipped is only what no node here can replace.
    assert!(
        after.skipped.iter().all(|s| matches!(
            s.reason,
            SkipReason::ForeignNetwork(_) | SkipReason::Refused(_)
        )),
        "{:?}",
        reasons(&after)
    );
}

#[test]
fn a_segment_the_node_refuses_leaves_the_rest_of_its_feed_unreached() {
    let tmp = tempfile::tempdir().unwrap();
    let (hq, a, b) = network(tmp.path());
    let stick = tmp.path().join("stick");
    let a_id = a.store.node_id();
    // Twenty segments of shop A, more than the node queues at once, then one of B.
    for _ in 0..20 {
        a.sell(2);
        a.sync(&stick);
    }
    b.sell(3);
    b.sync(&stick);
    // HQ knows A's till was stolen after its 14th entry.
    hq.store
        .append_local(Body::Revoke(Revocation {
            node: a_id,
            upto_seq: 14,
            reason: "till stolen".into(),
        }))
        .unwrap();

    let report = hq.sync(&stick);
    let why = |from, to| skipped(&report, &stick, &segment_of(&stick, a_id, from, to));
    assert!(
        (1..=7).all(|k| why(2 * k - 1, 2 * k).is_none()),
        "{:?}",
        reasons(&report)
    );
    assert!(
        matches!(why(15, 16), Some(SkipReason::Refused(r)) if r.contains("revoked") && r.contains("0 applied")),
        "{:?}",
        reasons(&report)
    );
    assert_eq!(why(17, 18), Some(SkipReason::Unreachable));
    assert!((9..=20).all(|k| why(2 * k - 1, 2 * k) == Some(SkipReason::Unreachable)));
    assert_eq!(report.skipped.len(), 13, "{:?}", reasons(&report));
    assert_eq!(hq.vv().get(&a_id), 14);
    assert_eq!(hq.vv().get(&b.store.node_id()), 3);
    assert_eq!(report.taken_in, 14 + 3);
    assert_eq!(report.segments_read, 8);
    hq.store.verify_views().unwrap();
}

#[test]
fn a_node_hq_revokes_keeps_what_hq_took_in_and_can_add_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (hq, a, b) = network(tmp.path());
    let (to_hq, back) = (tmp.path().join("to-hq"), tmp.path().join("back"));
    let a_id = a.store.node_id();
    a.sell(3);
    a.sync(&to_hq);
    hq.sync(&to_hq);

    let rev = identity::revoke(&hq.store, &a_id, "till stolen").unwrap();
    assert_eq!(rev.upto_seq, 3, "what HQ already holds stays accepted");
    assert!(!hq.store.is_member(&a_id).unwrap());
    // The thief sells on before the news reaches the till.
    a.sell(2);
    a.sync(&to_hq);
    let report = hq.sync(&to_hq);
    assert!(
        matches!(skipped(&report, &to_hq, &segment_of(&to_hq, a_id, 4, 5)), Some(SkipReason::Refused(r)) if r.contains("revoked") && r.contains("till stolen")),
        "{:?}",
        reasons(&report)
    );
    assert_eq!(hq.vv().get(&a_id), 3);

    // The revocation travels to shop B and to the till itself like any entry.
    hq.sync(&back);
    b.sync(&back);
    a.sync(&back);
    assert!(!b.store.is_member(&a_id).unwrap());
    assert_eq!(
        b.vv().get(&a_id),
        3,
        "B takes A's entries only up to the revocation"
    );
    let refused = a
        .store
        .append_local(purchase(a.site(), asn(1), 9, 100))
        .unwrap_err();
    assert!(refused.to_string().contains("revoked"), "{refused}");
    assert_eq!(a.vv().get(&a_id), 5);
    for node in [&hq, &a, &b] {
        node.store.verify_views().unwrap();
    }
}

#[test]
fn a_stick_from_a_revoked_till_heard_of_first_waits_for_hqs_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let (hq, a, b) = network(tmp.path());
    let (to_hq, from_till, from_hq) = (
        tmp.path().join("to-hq"),
        tmp.path().join("from-till"),
        tmp.path().join("from-hq"),
    );
    let a_id = a.store.node_id();
    a.sell(3);
    a.sync(&to_hq);
    hq.sync(&to_hq);
    identity::revoke(&hq.store, &a_id, "till stolen").unwrap();
    // The till's next stick holds its whole feed in one segment, signed at its end only.
    a.sell(2);
    a.sync(&from_till);
    // HQ's feed, with the revocation, reaches B first (over a link).
    let hq_id = hq.store.node_id();
    let hq_feed = hq
        .store
        .entries(
            FeedRange {
                origin: hq_id,
                from: 1,
                to: hq.vv().get(&hq_id),
            },
            usize::MAX,
        )
        .unwrap();
    assert!(b.store.ingest(hq_feed).unwrap().rejected.is_empty());

    let report = b.sync(&from_till);
    assert!(
        matches!(skipped(&report, &from_till, &segment_of(&from_till, a_id, 1, 5)), Some(SkipReason::Refused(r)) if r.contains("revoked") && r.contains("0 applied")),
        "{:?}",
        reasons(&report)
    );
    assert_eq!(
        b.vv().get(&a_id),
        0,
        "no entry vouched for only by a refused one"
    );
    b.store.verify_views().unwrap();

    hq.sync(&from_hq);
    b.sync(&from_hq);
    assert_eq!(
        b.vv().get(&a_id),
        3,
        "HQ's copy is signed at the revocation"
    );
    b.store.verify_views().unwrap();
}

#[test]
fn a_small_budget_writes_part_and_later_syncs_go_on_from_there() {
    let tmp = tempfile::tempdir().unwrap();
    let (hq, a, _b) = network(tmp.path());
    let stick = usb::stick_folder(tmp.path());
    a.sell(300);
    assert_eq!(a.sync_budget(&stick, 0).written_out, 0);

    let mut rounds = 0;
    let mut written = 0;
    loop {
        let report = a.sync_budget(&stick, 3_000);
        rounds += 1;
        assert!(report.bytes_written <= 3_000);
        written += report.written_out;
        if report.stick_lacks == 0 {
            assert!(!report.budget_exhausted || report.written_out > 0);
            break;
        }
        assert!(report.budget_exhausted && report.written_out > 0);
        assert!(rounds < 100, "no progress");
    }
    assert!(rounds > 2);
    assert_eq!(written, 300);
    hq.sync(&stick);
    assert_eq!(hq.vv().get(&a.store.node_id()), 300);
    hq.store.verify_views().unwrap();
}

#[test]
fn a_lost_stick_reveals_no_entry_contents() {
    let tmp = tempfile::tempdir().unwrap();
    let (hq, _a, _b) = network(tmp.path());
    let stick = usb::stick_folder(tmp.path());
    let name = "Ouyang Xiaoming";
    for i in 0..20 {
        hq.store
            .append_local(holder(CardAsn([0x31, 0, 0, 0, 0, 0, 0, i]), name))
            .unwrap();
    }
    hq.sync(&stick);
    let files = files_under(&stick);
    assert!(files.len() >= 2);
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        for needle in [name.as_bytes(), b"1101".as_slice(), b"Ouyang".as_slice()] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} shows {:?}",
                file.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }
}

#[test]
fn folders_that_are_not_this_networks_stick_are_refused_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (hq, a, _b) = network(tmp.path());
    let other_root = tmp.path().join("other");
    let (other_hq, _, _) = network(&other_root);

    let holiday = tmp.path().join("photos");
    std::fs::create_dir(&holiday).unwrap();
    std::fs::write(holiday.join("beach.jpg"), b"jpeg").unwrap();
    let err = a.refused(&holiday);
    assert!(matches!(err, UsbError::NotAStick { .. }), "{err}");
    assert!(err.to_string().contains("cardmesh"));

    let stick = usb::stick_folder(tmp.path());
    hq.sync(&stick);
    let err = other_hq.refused(&stick);
    assert!(matches!(err, UsbError::ForeignStick { .. }), "{err}");

    let unplugged = tmp.path().join("no-such-drive").join("cardmesh");
    let err = a.refused(&unplugged);
    assert!(matches!(err, UsbError::NoStick(_)), "{err}");
    assert!(err.to_string().contains("plugged in"));
}

#[test]
fn a_garbled_manifest_is_rebuilt_by_its_network_and_still_refused_by_another() {
    let tmp = tempfile::tempdir().unwrap();
    let (hq, a, _b) = network(tmp.path());
    let (other_hq, _, _) = network(&tmp.path().join("other"));
    let stick = usb::stick_folder(tmp.path());
    a.sell(3);
    a.sync(&stick);
    let manifest = stick.join("manifest.cmm");
    let mut bytes = std::fs::read(&manifest).unwrap();
    // Magic, kind and network id all worn away: nothing in the file says whose it is.
    bytes[..24].fill(0xA5);
    std::fs::write(&manifest, &bytes).unwrap();

    let err = other_hq.refused(&stick);
    assert!(matches!(err, UsbError::NotAStick { .. }), "{err}");
    assert_eq!(std::fs::read(&manifest).unwrap(), bytes, "left as it was");

    let report = hq.sync(&stick);
    assert!(report.manifest_rebuilt, "{report:?}");
    assert_eq!(
        hq.vv().get(&a.store.node_id()),
        a.vv().get(&a.store.node_id())
    );
    assert!(
        !a.sync(&stick).manifest_rebuilt,
        "the rebuilt manifest reads"
    );
}

#[test]
fn a_deleted_manifest_and_segment_are_noticed_and_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    let (hq, a, _b) = network(tmp.path());
    let stick = usb::stick_folder(tmp.path());
    a.sell(2);
    a.sync(&stick);
    a.sell(2);
    a.sync(&stick);
    let a_id = a.store.node_id();
    std::fs::remove_file(segment_of(&stick, a_id, 1, 2)).unwrap();
    let report = hq.sync(&stick);
    let found: Vec<_> = report.skipped.iter().map(|s| s.reason.clone()).collect();
    assert_eq!(found, vec![SkipReason::Missing, SkipReason::Unreachable]);
    assert_eq!(hq.vv().get(&a_id), 0);
    std::fs::remove_file(stick.join("manifest.cmm")).unwrap();
    let rebuilt = a.sync(&stick);
    assert!(rebuilt.manifest_rebuilt);
    assert_eq!(rebuilt.written_out, 2);
    hq.sync(&stick);
    assert_eq!(hq.vv().get(&a_id), 4);
}

#[test]
fn removable_drives_are_found_in_proc_mounts() {
    let mounts = "\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
/dev/nvme0n1p2 / ext4 rw,relatime 0 0
/dev/nvme0n1p1 /boot/efi vfat rw,relatime 0 0
tmpfs /run tmpfs rw,nosuid,nodev 0 0
/dev/sdb1 /media/li/SHOP\\040STICK vfat rw,nosuid,nodev,uid=1000 0 0
/dev/sdc1 /run/media/wang/CARDS exfat rw,nosuid 0 0
/dev/sdd1 /mnt/usb vfat rw 0 0
/dev/sde1 /srv/stick vfat rw 0 0
/dev/sda3 /mnt/backup ext4 rw 0 0
/dev/sdb1 /media/li/SHOP\\040STICK vfat rw 0 0
";
    let removable = |dev: &str| match dev {
        "sdb1" | "sdc1" | "sde1" => Some(true),
        "sda3" | "nvme0n1p1" | "nvme0n1p2" => Some(false),
        _ => None,
    };
    assert_eq!(
        usb::parse_mounts(mounts, &removable),
        vec![
            PathBuf::from("/media/li/SHOP STICK"),
            PathBuf::from("/mnt/usb"),
            PathBuf::from("/run/media/wang/CARDS"),
            PathBuf::from("/srv/stick"),
        ]
    );
    // Without sysfs, the usual places still count; nothing else does.
    assert_eq!(
        usb::parse_mounts(mounts, &|_| None),
        vec![
            PathBuf::from("/media/li/SHOP STICK"),
            PathBuf::from("/mnt/backup"),
            PathBuf::from("/mnt/usb"),
            PathBuf::from("/run/media/wang/CARDS"),
        ]
    );
    // On this machine it runs without failing, whatever is plugged in.
    let _ = usb::find_removable_mounts();
}
