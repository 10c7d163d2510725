//! `sync_stick`: the imperative shell around the pure parts. Reads the stick's segments
//! into the node (HQ's feed first, each feed in order, each segment one atomic ingest),
//! writes what the stick lacks up to the budget, then the manifest.

use super::coverage::{Coverage, entries_in};
use super::files::{self, TMP_SUFFIX};
use super::manifest::{self, Listed, Manifest, ManifestError};
use super::segment::{self, MAX_SEGMENT_ENTRIES, MAX_SEGMENT_FILE, SegmentBody, SegmentError};
use super::{Phase, Progress, SkipReason, Skipped, StickReport, UsbError};
use crate::identity::NetworkKey;
use crate::store::{Queued, Store, StoreError};
use cardmesh_model::entry::CheckedRun;
use cardmesh_model::entry::{signed_prefix, thin_signatures};
use cardmesh_model::replica::IngestReport;
use cardmesh_model::{Certificate, Entry, FeedRange, Hash, NetworkId, NodeId, VersionVector};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::io::{self, ErrorKind, Read};
use std::path::{Path, PathBuf};

/// Segments opened ahead of the one being applied: enough to keep both threads busy,
/// few enough to bound memory at a few segment files.
const OPENED_AHEAD: usize = 2;
/// Segments queued on the store at most, and entries in them. The writer takes what is
/// queued when it starts a commit while the sync tops the queue up, so a commit takes
/// about half of it: some 32k entries, the size that costs least per entry (4k cost a
/// fifth more, 64k a tenth more). The bound also caps the memory the queue holds.
const QUEUED_SEGMENTS: usize = 16;
const QUEUED_ENTRIES: u64 = 64 * 1024;

/// A segment's entries as the reader thread hands them on: a run whose chain and
/// signatures it checked, so that the store's writer need not check them again, or, if
/// they do not pass, the entries as they are, for the store's own check to tell what is
/// wrong (and apply what it may, as it would any entries).
enum Run {
    Checked(CheckedRun),
    Unchecked(Vec<Entry>),
}

impl Run {
    fn of(entries: Vec<Entry>) -> Run {
        match CheckedRun::check(entries) {
            Ok(run) => Run::Checked(run),
            Err(entries) => Run::Unchecked(entries),
        }
    }

    fn last_hash(&self) -> Option<Hash> {
        match self {
            Run::Checked(run) => run.last_hash(),
            Run::Unchecked(entries) => entries.last().map(Entry::hash),
        }
    }

    /// Without its first `n` entries, which the node holds already.
    fn skip(self, n: usize) -> Run {
        match self {
            Run::Checked(run) => Run::Checked(run.skip(n)),
            Run::Unchecked(mut entries) => {
                entries.drain(..n.min(entries.len()));
                Run::Unchecked(entries)
            }
        }
    }

    fn queue(self, store: &Store) -> Result<Queued<IngestReport>, StoreError> {
        match self {
            Run::Checked(run) => store.ingest_run_queued(run),
            Run::Unchecked(entries) => store.ingest_queued(entries),
        }
    }
}

/// A genuine segment on its way into the node.
struct Segment {
    range: FeedRange,
    /// Its path inside the stick folder.
    rel: PathBuf,
    /// Its file's size.
    size: u64,
}

/// The segments queued on the store, oldest first, and the node's heads as the
/// segments answered so far left them.
struct Taking {
    heads: VersionVector,
    queued: VecDeque<(Segment, Queued<IngestReport>)>,
}

impl Taking {
    /// Whether a segment of `entries` more would overfill the queue.
    fn full(&self, entries: u64) -> bool {
        let queued: u64 = self.queued.iter().map(|(s, _)| s.range.len()).sum();
        !self.queued.is_empty()
            && (self.queued.len() == QUEUED_SEGMENTS || queued + entries > QUEUED_ENTRIES)
    }

    /// Where `origin`'s feed will end once the queued segments are applied.
    fn ahead(&self, origin: NodeId) -> u64 {
        self.queued
            .iter()
            .rev()
            .find(|(s, _)| s.range.origin == origin)
            .map_or(self.heads.get(&origin), |(s, _)| s.range.to)
    }
}

/// Syncs `store` with the stick folder `stick_dir` (see `stick_folder`) both ways.
/// `budget_bytes` bounds the segment bytes this sync writes; the next sync goes on
/// from where it stopped. `progress` is called as segments are read and written.
pub fn sync_stick(
    store: &Store,
    network_key: &NetworkKey,
    stick_dir: &Path,
    budget_bytes: u64,
    progress: &mut dyn FnMut(Progress),
) -> Result<StickReport, UsbError> {
    let hq_cert = store.hq_certificate();
    let mut stick = Stick {
        store,
        key: network_key,
        network: hq_cert.network,
        hq: hq_cert.node,
        dir: stick_dir,
        coverage: Coverage::new(),
        listed: BTreeMap::new(),
        report: StickReport::default(),
    };
    stick.prepare()?;
    let old_manifest = stick.read_manifest()?;
    stick.probe_writable()?;
    let found = stick.list_segments()?;
    if let Some(m) = &old_manifest {
        stick.report_missing(m, &found);
    }
    stick.take_in(found, progress)?;
    stick.give_out(budget_bytes, progress)?;
    stick.remove_superseded();
    stick.finish(old_manifest)?;
    Ok(stick.report)
}

struct Stick<'a> {
    store: &'a Store,
    key: &'a NetworkKey,
    network: NetworkId,
    hq: NodeId,
    dir: &'a Path,
    coverage: Coverage,
    /// Every genuine segment on the stick, read or written, with its size.
    listed: BTreeMap<FeedRange, u64>,
    report: StickReport,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> UsbError + '_ {
    move |source| UsbError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A failed write that is the stick's condition (locked, read-only, full), not a fault.
fn unwritable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem | ErrorKind::StorageFull
    )
}

fn write_err(path: &Path) -> impl FnOnce(io::Error) -> UsbError + '_ {
    move |source| {
        if unwritable(&source) {
            UsbError::Unwritable {
                path: path.to_path_buf(),
                source,
            }
        } else {
            UsbError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    }
}

/// Enough bytes of a segment file to hold its clear header.
const SEGMENT_HEADER_MAX: u64 = 512;

/// Reads a file of at most `limit` bytes; `Ok(None)` if it is larger.
fn read_bounded(path: &Path, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= limit).then_some(bytes))
}

fn random_nonce() -> [u8; 24] {
    let mut nonce = [0u8; 24];
    getrandom::fill(&mut nonce).expect("the operating system has no random source");
    nonce
}

fn skip_reason(e: SegmentError) -> SkipReason {
    match e {
        SegmentError::NotASegment(d) => SkipReason::NotASegment(d),
        SegmentError::Truncated => SkipReason::Truncated,
        SegmentError::Damaged(d) => SkipReason::Damaged(d),
        SegmentError::SealBroken => SkipReason::SealBroken,
        SegmentError::ForeignNetwork(n) => SkipReason::ForeignNetwork(n),
        SegmentError::Misnamed { named, holds } => SkipReason::Misnamed { named, holds },
        SegmentError::Forged(d) => SkipReason::Forged(d),
    }
}

impl Stick<'_> {
    fn skip(&mut self, path: PathBuf, reason: SkipReason) {
        tracing::warn!(path = %path.display(), %reason, "stick segment skipped");
        self.report.skipped.push(Skipped { path, reason });
    }

    /// Checks that the folder is a stick folder, making an empty one on a fresh stick.
    fn prepare(&self) -> Result<(), UsbError> {
        let dir = self.dir;
        match fs::metadata(dir) {
            Ok(m) if !m.is_dir() => Err(UsbError::NotAStick {
                path: dir.to_path_buf(),
                reason: "it is a file, not a folder".into(),
            }),
            Ok(_) => {
                let strangers = fs::read_dir(dir)
                    .map_err(io_err(dir))?
                    .filter_map(Result::ok)
                    .any(|e| {
                        let name = e.file_name();
                        let name = name.to_string_lossy();
                        name != manifest::FILE_NAME
                            && name != "segments"
                            && !name.ends_with(TMP_SUFFIX)
                    });
                let ours = dir.join(manifest::FILE_NAME).exists() || dir.join("segments").exists();
                if strangers && !ours {
                    return Err(UsbError::NotAStick {
                        path: dir.to_path_buf(),
                        reason: "it holds other files and no cardmesh manifest; cardmesh keeps \
                                 its data in its own `cardmesh` folder on the stick"
                            .into(),
                    });
                }
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                if !dir.parent().is_some_and(Path::is_dir) {
                    return Err(UsbError::NoStick(dir.to_path_buf()));
                }
                fs::create_dir(dir).map_err(write_err(dir))
            }
            Err(e) => Err(io_err(dir)(e)),
        }
    }

    /// The stick's manifest, if it has a readable one of this network; a stick of
    /// another network is refused before anything is written to it.
    fn read_manifest(&mut self) -> Result<Option<Manifest>, UsbError> {
        let path = self.dir.join(manifest::FILE_NAME);
        let bytes = match read_bounded(&path, MAX_SEGMENT_FILE) {
            Ok(Some(b)) => b,
            Ok(None) => {
                self.report.manifest_rebuilt = true;
                return Ok(None);
            }
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let why = match manifest::open(self.key, self.network, &bytes) {
            Ok(m) => return Ok(Some(m)),
            Err(ManifestError::Damaged(why)) => why,
            // Worn flash can garble a manifest past recognition; the segments beside it
            // still say whose stick this is.
            Err(e) if self.holds_segments_of_this_network() => format!("{e:?}"),
            Err(ManifestError::Foreign(network)) => {
                return Err(UsbError::ForeignStick {
                    path: self.dir.to_path_buf(),
                    network,
                });
            }
            Err(ManifestError::NotAManifest(why)) => {
                return Err(UsbError::NotAStick {
                    path: self.dir.to_path_buf(),
                    reason: format!("{} is not a cardmesh manifest ({why})", manifest::FILE_NAME),
                });
            }
        };
        tracing::warn!(%why, "stick manifest damaged; it will be rewritten");
        self.report.manifest_rebuilt = true;
        Ok(None)
    }

    /// Whether any file under `segments/` has this network's clear header. Reads only:
    /// it decides whether a stick may be written to at all.
    fn holds_segments_of_this_network(&self) -> bool {
        let Ok(origins) = fs::read_dir(self.dir.join("segments")) else {
            return false;
        };
        origins
            .filter_map(Result::ok)
            .filter_map(|origin| fs::read_dir(origin.path()).ok())
            .flatten()
            .filter_map(Result::ok)
            .any(|file| {
                // The clear header is at the front, and peek reads nothing else.
                let mut head = Vec::new();
                fs::File::open(file.path())
                    .and_then(|f| f.take(SEGMENT_HEADER_MAX).read_to_end(&mut head))
                    .is_ok_and(|_| segment::peek(self.network, &head).is_ok())
            })
    }

    /// Fails early, before the node takes anything in, on a stick it cannot write.
    fn probe_writable(&self) -> Result<(), UsbError> {
        let probe = self.dir.join(format!(".probe{TMP_SUFFIX}"));
        fs::write(&probe, b"cardmesh")
            .and_then(|_| fs::remove_file(&probe))
            .map_err(write_err(self.dir))
    }

    /// Every file under `segments/` named as a segment, in the order the node takes
    /// them in: HQ's feed first, then by origin, each feed from its start, the widest
    /// of segments that start alike first. Leftovers of interrupted writes are removed.
    fn list_segments(&mut self) -> Result<Vec<(FeedRange, PathBuf)>, UsbError> {
        let root = self.dir.join("segments");
        let origins = match fs::read_dir(&root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&root)(e)),
        };
        let mut found = Vec::new();
        for origin in origins {
            let origin = origin.map_err(io_err(&root))?;
            let origin_name = origin.file_name().to_string_lossy().into_owned();
            let rel_dir = Path::new("segments").join(&origin_name);
            let Ok(files) = fs::read_dir(origin.path()) else {
                self.skip(rel_dir, SkipReason::NotASegment("not a feed folder".into()));
                continue;
            };
            for file in files {
                let file = file.map_err(io_err(&origin.path()))?;
                let name = file.file_name().to_string_lossy().into_owned();
                if name.ends_with(TMP_SUFFIX) {
                    // Best effort: a leftover is harmless if it stays.
                    let _ = fs::remove_file(file.path());
                    continue;
                }
                match segment::parse_name(&origin_name, &name) {
                    Some(range) => found.push((range, rel_dir.join(&name))),
                    None => self.skip(
                        rel_dir.join(&name),
                        SkipReason::NotASegment("not a segment file name".into()),
                    ),
                }
            }
        }
        let hq = self.hq;
        found.sort_by_key(|(r, _)| (r.origin != hq, r.origin, r.from, std::cmp::Reverse(r.to)));
        Ok(found)
    }

    fn report_missing(&mut self, old: &Manifest, found: &[(FeedRange, PathBuf)]) {
        let present: BTreeSet<FeedRange> = found.iter().map(|(r, _)| *r).collect();
        for listed in &old.segments {
            if !present.contains(&listed.range()) {
                self.skip(segment::relative_path(&listed.range()), SkipReason::Missing);
            }
        }
    }

    /// Step one: the node takes in what it lacks, one segment at a time. A second thread
    /// reads and opens (decrypts, decompresses, checks) the next segments while this one
    /// hands them to the store, keeping several queued (`QUEUED_SEGMENTS`) so that they
    /// share commits. Every decision is the one a segment-by-segment sync would make: a
    /// segment that does not continue its feed right where the queued ones end waits
    /// until they are applied.
    fn take_in(
        &mut self,
        found: Vec<(FeedRange, PathBuf)>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(), UsbError> {
        let total = entries_in(&found.iter().map(|(r, _)| *r).collect::<Vec<_>>());
        let mut done = 0;
        let mut taking = Taking {
            heads: self.store.version_vector()?,
            queued: VecDeque::new(),
        };
        let (dir, key, network) = (self.dir, self.key, self.network);
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel(OPENED_AHEAD);
            scope.spawn(move || {
                for (range, rel) in found {
                    let read = read_bounded(&dir.join(&rel), MAX_SEGMENT_FILE);
                    let opened = match &read {
                        Ok(Some(bytes)) => Some(
                            segment::open(key, network, Some(range), bytes)
                                .map(|(_, body)| (body.certificate, Run::of(body.entries))),
                        ),
                        _ => None,
                    };
                    if tx.send((range, rel, read, opened)).is_err() {
                        return;
                    }
                }
            });
            for (range, rel, read, opened) in rx {
                progress(Progress {
                    phase: Phase::Reading,
                    done,
                    total,
                });
                done += range.len();
                let continues = range.from == taking.ahead(range.origin) + 1;
                if !continues {
                    self.settle(&mut taking, true)?;
                }
                while taking.full(range.len()) {
                    self.settle(&mut taking, false)?;
                }
                let bytes = match read {
                    Ok(Some(b)) => b,
                    Ok(None) => {
                        self.skip(rel, SkipReason::Damaged("far too large".into()));
                        continue;
                    }
                    Err(e) => {
                        self.skip(rel, SkipReason::Unreadable(e.to_string()));
                        continue;
                    }
                };
                if self.coverage.contains(&range) {
                    // Nothing to learn from it, but another network's file is not ours to
                    // call a duplicate (nor to remove).
                    let reason = match segment::peek(self.network, &bytes) {
                        Err(SegmentError::ForeignNetwork(n)) => SkipReason::ForeignNetwork(n),
                        _ => SkipReason::Duplicate,
                    };
                    self.skip(rel, reason);
                    continue;
                }
                let size = bytes.len() as u64;
                let (certificate, run) = match opened.expect("opened whenever read") {
                    Ok(opened) => opened,
                    Err(e) => {
                        self.skip(rel, skip_reason(e));
                        continue;
                    }
                };
                let segment = Segment { range, rel, size };
                self.take_segment(&mut taking, segment, certificate, run)?;
            }
            self.settle(&mut taking, true)
        })?;
        progress(Progress {
            phase: Phase::Reading,
            done,
            total,
        });
        Ok(())
    }

    /// Applies one genuine segment, or queues it on the store when it continues its feed
    /// where the node's feed (with the segments queued) ends; a segment it skips is
    /// reported.
    fn take_segment(
        &mut self,
        taking: &mut Taking,
        segment: Segment,
        certificate: Option<Certificate>,
        run: Run,
    ) -> Result<(), UsbError> {
        let range = segment.range;
        let head = taking.ahead(range.origin);
        if range.to <= head {
            // Already held (nothing of its feed is queued: see `take_in`): it is a good
            // copy only if it ends where the node's feed does at that point (the chain
            // makes the last hash stand for the whole run).
            let last = FeedRange {
                from: range.to,
                ..range
            };
            let ours = self.store.entries(last, 1)?;
            if ours.first().map(Entry::hash) == run.last_hash() {
                self.took(&segment);
            } else {
                self.skip(segment.rel, SkipReason::Differs);
            }
            return Ok(());
        }
        if range.from > head + 1 {
            self.skip(segment.rel, SkipReason::Unreachable);
            return Ok(());
        }
        if let Some(cert) = certificate {
            match self.store.admit(cert) {
                Ok(_) => {}
                Err(StoreError::Auth(e)) => {
                    let why = SkipReason::Refused(format!("its certificate: {e}"));
                    self.skip(segment.rel, why);
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        }
        let answer = run
            .skip((head + 1 - range.from) as usize)
            .queue(self.store)?;
        taking.queued.push_back((segment, answer));
        Ok(())
    }

    /// Waits for the queued segments' answers, all of them or (`all` false) the oldest.
    fn settle(&mut self, taking: &mut Taking, all: bool) -> Result<(), UsbError> {
        while let Some((segment, answer)) = taking.queued.pop_front() {
            let ingest = answer.wait()?;
            self.report.taken_in += ingest.applied as u64;
            let range = segment.range;
            match ingest.rejected.first() {
                None => {
                    taking.heads.advance(range.origin, range.to);
                    self.took(&segment);
                }
                // An earlier segment of its feed was refused: alone, this one would not
                // have been tried (and it applied nothing).
                Some(_) if range.from > taking.heads.get(&range.origin) + 1 => {
                    self.skip(segment.rel, SkipReason::Unreachable);
                }
                Some(first) => {
                    let why = format!(
                        "{first} ({} refused, {} applied before it)",
                        ingest.rejected.len(),
                        ingest.applied
                    );
                    self.skip(segment.rel, SkipReason::Refused(why));
                }
            }
            if !all {
                break;
            }
        }
        Ok(())
    }

    /// Records a genuine segment whose entries the node now holds.
    fn took(&mut self, segment: &Segment) {
        self.coverage.add(segment.range);
        self.listed.insert(segment.range, segment.size);
        self.report.segments_read += 1;
    }

    /// Step two: write what the stick lacks, HQ's feed first, until the budget is spent.
    fn give_out(
        &mut self,
        budget: u64,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(), UsbError> {
        let plan = self.coverage.lacks(&self.store.version_vector()?, self.hq);
        let total = entries_in(&plan);
        let certs: BTreeMap<NodeId, Certificate> = self
            .store
            .certificates()?
            .into_iter()
            .map(|c| (c.node, c))
            .collect();
        let mut touched = BTreeSet::new();
        'ranges: for range in plan {
            let mut next = range.from;
            while next <= range.to {
                progress(Progress {
                    phase: Phase::Writing,
                    done: self.report.written_out,
                    total,
                });
                let batch = self.store.entries(
                    FeedRange {
                        from: next,
                        ..range
                    },
                    MAX_SEGMENT_ENTRIES,
                )?;
                if batch.is_empty() {
                    break;
                }
                let certificate = (range.origin != self.hq)
                    .then(|| certs.get(&range.origin).cloned())
                    .flatten();
                let room = budget.saturating_sub(self.report.bytes_written);
                let Some((bytes, body)) = self.fit(certificate, batch, room)? else {
                    self.report.budget_exhausted = true;
                    break 'ranges;
                };
                let written = FeedRange {
                    from: next,
                    to: next + body.entries.len() as u64 - 1,
                    ..range
                };
                match self.write_segment(&written, &bytes) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::StorageFull => {
                        self.report.stick_full = true;
                        break 'ranges;
                    }
                    Err(e) => {
                        return Err(write_err(&self.dir.join(segment::relative_path(&written)))(
                            e,
                        ));
                    }
                }
                touched.insert(range.origin);
                self.coverage.add(written);
                self.listed.insert(written, bytes.len() as u64);
                self.report.bytes_written += bytes.len() as u64;
                self.report.written_out += written.len();
                self.report.segments_written += 1;
                next = written.to + 1;
            }
        }
        progress(Progress {
            phase: Phase::Writing,
            done: self.report.written_out,
            total,
        });
        for origin in touched {
            let dir = self.dir.join("segments").join(origin.to_string());
            files::sync_dir(&dir).map_err(write_err(&dir))?;
        }
        let segments = self.dir.join("segments");
        if segments.exists() {
            files::sync_dir(&segments).map_err(write_err(&segments))?;
        }
        Ok(())
    }

    /// The longest prefix of `batch` that ends at a signed entry and whose sealed
    /// segment stays within the size limits and `room` bytes, sealed, with the
    /// signatures a reader does not need dropped; `None` if no such prefix fits in
    /// `room`. Halving keeps the tries to a dozen at most.
    fn fit(
        &self,
        certificate: Option<Certificate>,
        batch: Vec<Entry>,
        room: u64,
    ) -> Result<Option<(Vec<u8>, SegmentBody)>, UsbError> {
        let mut n = signed_prefix(&batch);
        while n > 0 {
            let mut body = SegmentBody {
                certificate: certificate.clone(),
                entries: batch[..n].to_vec(),
            };
            thin_signatures(&mut body.entries);
            if n == 1 || segment::plain_size(&body) <= segment::MAX_SEGMENT_PLAIN {
                let bytes = segment::seal(self.key, self.network, &body, random_nonce())
                    .map_err(io_err(self.dir))?;
                if bytes.len() as u64 <= room {
                    return Ok(Some((bytes, body)));
                }
            }
            n = signed_prefix(&batch[..n / 2]);
        }
        Ok(None)
    }

    fn write_segment(&self, range: &FeedRange, bytes: &[u8]) -> io::Result<()> {
        let path = self.dir.join(segment::relative_path(range));
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        files::write_atomic(&path, bytes)
    }

    /// Removes skipped segments of this network whose entries good segments on the stick
    /// now hold (damaged, forged, duplicated ones), so a healed stick is also a clean
    /// one. Another network's segments and ones holding what no node could replace are
    /// left for whoever looks at the stick.
    fn remove_superseded(&mut self) {
        for skipped in &self.report.skipped {
            let replaceable = matches!(
                skipped.reason,
                SkipReason::Truncated
                    | SkipReason::Damaged(_)
                    | SkipReason::SealBroken
                    | SkipReason::Misnamed { .. }
                    | SkipReason::Forged(_)
                    | SkipReason::Differs
                    | SkipReason::Duplicate
            );
            let named = skipped
                .path
                .parent()
                .zip(skipped.path.file_name())
                .and_then(|(dir, file)| {
                    segment::parse_name(
                        &dir.file_name()?.to_string_lossy(),
                        &file.to_string_lossy(),
                    )
                });
            if replaceable
                // A good segment written under the same name replaced it already.
                && named.is_some_and(|r| self.coverage.contains(&r) && !self.listed.contains_key(&r))
                && fs::remove_file(self.dir.join(&skipped.path)).is_ok()
            {
                self.report.removed.push(skipped.path.clone());
            }
        }
    }

    /// Step three: the manifest, rewritten only when it changed.
    fn finish(&mut self, old: Option<Manifest>) -> Result<(), UsbError> {
        let vector = self.coverage.version_vector();
        let manifest = Manifest {
            vector: vector.clone(),
            segments: self
                .listed
                .iter()
                .map(|(r, bytes)| Listed {
                    origin: r.origin,
                    from: r.from,
                    to: r.to,
                    bytes: *bytes,
                })
                .collect(),
        };
        let path = self.dir.join(manifest::FILE_NAME);
        if old.as_ref() != Some(&manifest) {
            // Segments without a manifest: it was deleted or never finished.
            if old.is_none() && self.report.segments_read > 0 {
                self.report.manifest_rebuilt = true;
            }
            let bytes = manifest::seal(self.key, self.network, &manifest, random_nonce());
            files::write_atomic(&path, &bytes).map_err(write_err(&path))?;
            files::sync_dir(self.dir).map_err(write_err(self.dir))?;
        }
        let manifest_bytes = fs::metadata(&path).map_or(0, |m| m.len());
        self.report.stick_bytes = self.listed.values().sum::<u64>() + manifest_bytes;
        self.report.stick_lacks =
            entries_in(&self.coverage.lacks(&self.store.version_vector()?, self.hq));
        self.report.stick_vector = vector;
        Ok(())
    }
}
