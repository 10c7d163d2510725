//! What `cardmesh status` shows: a node's identity, membership and feeds, gathered from
//! the store into one value that the CLI prints and the console renders.

use crate::store::{Store, StoreError};
use cardmesh_model::{Certificate, NodeId, Revocation, Role};
use std::collections::BTreeMap;
use std::fmt;

pub struct NodeStatus {
    pub cert: Certificate,
    pub members: Vec<Certificate>,
    pub feeds: Vec<(Certificate, u64)>,
    pub revoked: BTreeMap<NodeId, Revocation>,
    pub stats: crate::store::StoreStats,
}

impl NodeStatus {
    pub fn gather(store: &Store) -> Result<NodeStatus, StoreError> {
        let cert = store.own_certificate();
        let members = store.certificates()?;
        let vv = store.version_vector()?;
        let feeds = members
            .iter()
            .map(|c| (c.clone(), vv.get(&c.node)))
            .collect();
        Ok(NodeStatus {
            cert,
            members,
            feeds,
            revoked: store.revocations()?,
            stats: store.stats()?,
        })
    }
}

fn role(r: Role) -> String {
    r.to_string()
}

impl fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.cert;
        writeln!(
            f,
            "node      {} ({} at site {})",
            c.node,
            role(c.role),
            c.site
        )?;
        writeln!(f, "network   {} ({})", c.network_name, c.network)?;
        writeln!(
            f,
            "store     {} entries, {} bytes, schema v{}",
            self.stats.total_entries, self.stats.file_bytes, self.stats.schema_version
        )?;
        writeln!(
            f,
            "cards     {} known, {} blacklisted",
            self.stats.cards, self.stats.blacklisted
        )?;
        writeln!(f, "members   {}", self.members.len())?;
        for (m, seq) in &self.feeds {
            let me = if m.node == c.node { " (this node)" } else { "" };
            let revoked = match self.revoked.get(&m.node) {
                Some(r) => format!(", revoked after entry {} ({})", r.upto_seq, r.reason),
                None => String::new(),
            };
            writeln!(
                f,
                "  {:<8} {:<8} {:<12} feed at {seq}{me}{revoked}",
                m.node.short(),
                role(m.role),
                m.site.as_str()
            )?;
        }
        Ok(())
    }
}
