//! Links: the transports that carry the one sync session between nodes. The session is
//! the model's sans-IO state machine; this module feeds it frames from a byte stream
//! (`drive`), adapts the store to it (`NodeSync`), and provides the transports: iroh
//! QUIC (`iroh`) for LAN and internet, with mDNS discovery of LAN neighbours (`lan`), the
//! same QUIC over a serial line or a dial-up modem (`serial`), and the background loop
//! that dials peers (`service`, timed by `schedule`).

pub mod drive;
pub mod frame;
pub mod iroh;
pub mod lan;
pub mod schedule;
pub mod serial;
pub mod service;

use crate::store::{Store, StoreError};
use cardmesh_model::replica::IngestReport;
use cardmesh_model::sign::Sig;
use cardmesh_model::sync::SyncStore;
use cardmesh_model::{Certificate, Entry, FeedRange, NodeId, NodeKey, VersionVector};

/// A store seen by a sync session, with the node key that signs the handshake.
#[derive(Clone)]
pub struct NodeSync {
    store: Store,
    key: NodeKey,
}

impl NodeSync {
    pub fn new(store: Store, key: NodeKey) -> NodeSync {
        NodeSync { store, key }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn key(&self) -> &NodeKey {
        &self.key
    }
}

impl SyncStore for NodeSync {
    type Error = StoreError;

    fn local_node(&self) -> NodeId {
        self.key.node_id()
    }

    fn local_certificate(&self) -> Result<Certificate, StoreError> {
        Ok(self.store.own_certificate())
    }

    fn hq_certificate(&self) -> Result<Certificate, StoreError> {
        Ok(self.store.hq_certificate())
    }

    fn certificates(&self) -> Result<Vec<Certificate>, StoreError> {
        self.store.certificates()
    }

    fn is_member(&self, node: &NodeId) -> Result<bool, StoreError> {
        self.store.is_member(node)
    }

    fn version_vector(&self) -> Result<VersionVector, StoreError> {
        self.store.version_vector()
    }

    fn entries(&self, range: FeedRange, limit: usize) -> Result<Vec<Entry>, StoreError> {
        self.store.entries(range, limit)
    }

    fn ingest(&mut self, entries: Vec<Entry>) -> Result<IngestReport, StoreError> {
        self.store.ingest(entries)
    }

    fn admit(&mut self, cert: Certificate) -> Result<bool, StoreError> {
        self.store.admit(cert)
    }

    fn sign(&self, transcript: &[u8]) -> Result<Sig, StoreError> {
        Ok(self.key.sign(transcript))
    }
}
