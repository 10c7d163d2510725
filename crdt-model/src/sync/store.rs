//! What a session needs from a replica, as a trait: the in-memory [`Replica`] implements
//! it here (through [`ReplicaNode`], which adds the node's identity), the node's redb
//! store implements it there. Methods are fallible because a disk can fail mid-session.

use crate::auth::{AuthError, Certificate};
use crate::entry::Entry;
use crate::ids::NodeId;
use crate::replica::{IngestReport, Replica};
use crate::sign::{NodeKey, Sig};
use crate::vv::{FeedRange, VersionVector};

pub trait SyncStore {
    type Error: std::error::Error + Send + Sync + 'static;

    /// This node's id (its public key).
    fn local_node(&self) -> NodeId;

    /// This node's enrollment certificate.
    fn local_certificate(&self) -> Result<Certificate, Self::Error>;

    /// HQ's self-signed certificate: names the network and the key that signs members.
    fn hq_certificate(&self) -> Result<Certificate, Self::Error>;

    /// Every member certificate this node holds, its own and HQ's included.
    fn certificates(&self) -> Result<Vec<Certificate>, Self::Error>;

    /// Enrolled and not revoked.
    fn is_member(&self, node: &NodeId) -> Result<bool, Self::Error>;

    fn version_vector(&self) -> Result<VersionVector, Self::Error>;

    /// The entries of `range` this node holds, in feed order, at most `limit` of them.
    fn entries(&self, range: FeedRange, limit: usize) -> Result<Vec<Entry>, Self::Error>;

    /// Verifies and applies a batch in one atomic step: after a crash either all of what
    /// the report says was applied is there, or none of it.
    fn ingest(&mut self, entries: Vec<Entry>) -> Result<IngestReport, Self::Error>;

    /// Records a certificate the session has verified against HQ. Returns whether it was
    /// new.
    fn admit(&mut self, cert: Certificate) -> Result<bool, Self::Error>;

    /// Signs the session transcript with the node's key (the key of its feed and its
    /// iroh identity). The transcript starts with its own domain tag, so the signature
    /// can never pass for an entry's or a certificate's.
    fn sign(&self, transcript: &[u8]) -> Result<Sig, Self::Error>;
}

/// An in-memory replica together with the identity of the node that holds it: what the
/// model's tests and the network simulation sync.
pub struct ReplicaNode {
    pub replica: Replica,
    key: NodeKey,
    certificate: Certificate,
}

impl ReplicaNode {
    /// `certificate` is the node's own, for `key`; it is admitted into the replica.
    pub fn new(
        mut replica: Replica,
        key: NodeKey,
        certificate: Certificate,
    ) -> Result<ReplicaNode, AuthError> {
        if certificate.node != key.node_id() {
            return Err(AuthError::UnknownOrigin(key.node_id()));
        }
        replica.admit(certificate.clone())?;
        Ok(ReplicaNode {
            replica,
            key,
            certificate,
        })
    }
}

impl SyncStore for ReplicaNode {
    type Error = AuthError;

    fn local_node(&self) -> NodeId {
        self.key.node_id()
    }

    fn local_certificate(&self) -> Result<Certificate, AuthError> {
        Ok(self.certificate.clone())
    }

    fn hq_certificate(&self) -> Result<Certificate, AuthError> {
        let m = self.replica.membership();
        let hq = m.hq();
        m.members()
            .find(|member| member.cert.node == hq)
            .map(|member| member.cert.clone())
            .ok_or(AuthError::UnknownOrigin(hq))
    }

    fn certificates(&self) -> Result<Vec<Certificate>, AuthError> {
        Ok(self
            .replica
            .membership()
            .members()
            .map(|m| m.cert.clone())
            .collect())
    }

    fn is_member(&self, node: &NodeId) -> Result<bool, AuthError> {
        let m = self.replica.membership();
        Ok(!m.is_revoked(node) && m.writer(node, 0).is_ok())
    }

    fn version_vector(&self) -> Result<VersionVector, AuthError> {
        Ok(self.replica.version_vector())
    }

    fn entries(&self, range: FeedRange, limit: usize) -> Result<Vec<Entry>, AuthError> {
        Ok(self
            .replica
            .entries(range)
            .iter()
            .take(limit)
            .cloned()
            .collect())
    }

    fn ingest(&mut self, entries: Vec<Entry>) -> Result<IngestReport, AuthError> {
        Ok(self.replica.ingest(entries))
    }

    fn admit(&mut self, cert: Certificate) -> Result<bool, AuthError> {
        self.replica.admit(cert)
    }

    fn sign(&self, transcript: &[u8]) -> Result<Sig, AuthError> {
        Ok(self.key.sign(transcript))
    }
}
