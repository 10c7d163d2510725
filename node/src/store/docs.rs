//! Shared automerge documents on disk: per document a saved snapshot plus the changes
//! applied since, compacted into a new snapshot once enough have piled up.
//!
//! A change whose dependencies have not arrived yet waits inside the loaded document, but
//! a snapshot does not hold it; compaction therefore keeps such changes as incremental
//! ones, so they still apply when their dependencies come.

use super::error::StoreError;
use super::schema;
use automerge::AutoCommit;
use cardmesh_model::docs::{DocName, parse_change};
use redb::{ReadableTable, Table};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Changes kept beside a snapshot before it is re-saved: loading applies at most about
/// this many changes on top of `AutoCommit::load`.
const COMPACT_AFTER: u64 = 64;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DocState {
    saved: Option<Vec<u8>>,
    /// The number the next incremental change is stored under.
    next: u64,
    /// Incremental changes stored beside the snapshot.
    pending: u64,
}

/// Reads one document: its snapshot with every incremental change applied.
pub fn load(
    docs: &impl ReadableTable<&'static [u8], &'static [u8]>,
    changes: &impl ReadableTable<(&'static [u8], u64), &'static [u8]>,
    name: &DocName,
) -> Result<Option<(AutoCommit, DocState)>, StoreError> {
    load_key(docs, changes, &schema::doc_key(name), name)
}

/// [`load`] by the document's table key; `label` names it in errors.
pub fn load_key(
    docs: &impl ReadableTable<&'static [u8], &'static [u8]>,
    changes: &impl ReadableTable<(&'static [u8], u64), &'static [u8]>,
    key: &[u8],
    label: &dyn std::fmt::Display,
) -> Result<Option<(AutoCommit, DocState)>, StoreError> {
    let Some(state) = docs.get(key)? else {
        return Ok(None);
    };
    let state: DocState = schema::decode_view(state.value(), "document state")?;
    let bad = |e: &dyn std::fmt::Display| StoreError::corrupt(format!("{label}: {e}"));
    let mut doc = match &state.saved {
        Some(bytes) => AutoCommit::load(bytes).map_err(|e| bad(&e))?,
        None => AutoCommit::new(),
    };
    let mut incremental = Vec::new();
    for row in changes.range((key, 0)..=(key, u64::MAX))? {
        let (_, bytes) = row?;
        incremental.push(parse_change(bytes.value()).map_err(|e| bad(&e))?);
    }
    doc.apply_changes(incremental).map_err(|e| bad(&e))?;
    Ok(Some((doc, state)))
}

struct Loaded {
    doc: AutoCommit,
    state: DocState,
    dirty: bool,
}

/// The documents one write transaction has touched, loaded once per transaction.
#[derive(Default)]
pub struct DocCache {
    docs: BTreeMap<DocName, Loaded>,
}

impl DocCache {
    /// Applies a change carried by a feed entry, as `Docs::apply` does in a replica.
    /// `Ok(Err(why))` means the change could not be applied and was not stored.
    pub fn apply(
        &mut self,
        docs: &Table<'_, &'static [u8], &'static [u8]>,
        changes: &mut Table<'_, (&'static [u8], u64), &'static [u8]>,
        name: &DocName,
        change: &[u8],
    ) -> Result<Result<(), String>, StoreError> {
        if !self.docs.contains_key(name) {
            let (doc, state) = load(docs, changes, name)?.unwrap_or_default();
            self.docs.insert(
                name.clone(),
                Loaded {
                    doc,
                    state,
                    dirty: false,
                },
            );
        }
        let loaded = self.docs.get_mut(name).expect("inserted above");
        // Like the replica, a document exists once any change for it arrived.
        loaded.dirty = true;
        let parsed = match parse_change(change) {
            Ok(c) => c,
            Err(e) => return Ok(Err(e.to_string())),
        };
        if let Err(e) = loaded.doc.apply_changes([parsed]) {
            return Ok(Err(e.to_string()));
        }
        let key = schema::doc_key(name);
        changes.insert((key.as_slice(), loaded.state.next), change)?;
        loaded.state.next += 1;
        loaded.state.pending += 1;
        Ok(Ok(()))
    }

    /// Writes the state of every touched document, compacting those with many changes.
    pub fn flush(
        self,
        docs: &mut Table<'_, &'static [u8], &'static [u8]>,
        changes: &mut Table<'_, (&'static [u8], u64), &'static [u8]>,
    ) -> Result<(), StoreError> {
        for (name, mut loaded) in self.docs.into_iter().filter(|(_, l)| l.dirty) {
            let key = schema::doc_key(&name);
            if loaded.state.pending > COMPACT_AFTER {
                compact(&mut loaded, changes, &key)?;
            }
            docs.insert(
                key.as_slice(),
                schema::encode_view(&loaded.state).as_slice(),
            )?;
        }
        Ok(())
    }
}

fn compact(
    loaded: &mut Loaded,
    changes: &mut Table<'_, (&'static [u8], u64), &'static [u8]>,
    key: &[u8],
) -> Result<(), StoreError> {
    let mut waiting = Vec::new();
    let mut stored = Vec::new();
    for row in changes.range((key, 0)..=(key, u64::MAX))? {
        let (k, bytes) = row?;
        let (_, n) = k.value();
        stored.push(n);
        let change = parse_change(bytes.value()).map_err(StoreError::corrupt)?;
        if loaded.doc.get_change_by_hash(&change.hash()).is_none() {
            waiting.push(bytes.value().to_vec());
        }
    }
    for n in stored {
        changes.remove((key, n))?;
    }
    let count = waiting.len() as u64;
    for (n, bytes) in waiting.into_iter().enumerate() {
        changes.insert((key, n as u64), bytes.as_slice())?;
    }
    loaded.state = DocState {
        saved: Some(loaded.doc.save()),
        next: count,
        pending: count,
    };
    Ok(())
}
