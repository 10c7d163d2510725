//! Membership and authority: who belongs to the network (certificates signed by HQ),
//! who has been thrown out (revocations in HQ's feed), and which role may write what.

use crate::body::{BlacklistEvent, Body, TxnKind};
use crate::docs::DocName;
use crate::hlc::Hlc;
use crate::ids::{NetworkId, NodeId, SiteId};
use crate::sign::{NodeKey, PublicKey, Sig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// What a node is for; decides what it may write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Head office: signs network-wide changes, holds the TAC key, settles.
    Hq,
    /// A shop or cinema till.
    Store,
    /// A fuel station.
    Station,
    /// A card desk that issues and loads cards.
    Issuer,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Hq => "hq",
            Role::Store => "store",
            Role::Station => "station",
            Role::Issuer => "issuer",
        })
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "hq" => Ok(Role::Hq),
            "store" => Ok(Role::Store),
            "station" => Ok(Role::Station),
            "issuer" => Ok(Role::Issuer),
            other => Err(format!(
                "unknown role '{other}': use store, station or issuer"
            )),
        }
    }
}

/// HQ's statement that `node` belongs to `network` at `site` with `role`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    pub network: NetworkId,
    pub network_name: String,
    pub hq: NodeId,
    pub node: NodeId,
    pub site: SiteId,
    pub role: Role,
    pub issued: Hlc,
    pub sig: Sig,
}

const CERT_DOMAIN: &[u8] = b"cardmesh/cert/1";

#[derive(Serialize)]
struct CertBody<'a> {
    network: &'a NetworkId,
    network_name: &'a str,
    hq: &'a NodeId,
    node: &'a NodeId,
    site: &'a SiteId,
    role: Role,
    issued: Hlc,
}

/// The fields a certificate is about, before HQ signs them.
#[derive(Clone, Debug)]
pub struct CertRequest {
    pub network: NetworkId,
    pub network_name: String,
    pub node: NodeId,
    pub site: SiteId,
    pub role: Role,
    pub issued: Hlc,
}

impl Certificate {
    fn signing_bytes(r: &CertBody<'_>) -> Vec<u8> {
        let mut out = CERT_DOMAIN.to_vec();
        out.extend(postcard::to_stdvec(r).expect("serializing to a Vec cannot fail"));
        out
    }

    pub fn issue(hq: &NodeKey, req: CertRequest) -> Certificate {
        let hq_id = hq.node_id();
        let sig = hq.sign(&Self::signing_bytes(&CertBody {
            network: &req.network,
            network_name: &req.network_name,
            hq: &hq_id,
            node: &req.node,
            site: &req.site,
            role: req.role,
            issued: req.issued,
        }));
        Certificate {
            network: req.network,
            network_name: req.network_name,
            hq: hq_id,
            node: req.node,
            site: req.site,
            role: req.role,
            issued: req.issued,
            sig,
        }
    }

    /// Checks that this certificate was signed by `hq` for `network`.
    pub fn verify(&self, network: NetworkId, hq: NodeId) -> Result<(), AuthError> {
        if self.network != network {
            return Err(AuthError::WrongNetwork {
                expected: network,
                got: self.network,
            });
        }
        if self.hq != hq {
            return Err(AuthError::NotSignedByHq { node: self.node });
        }
        let key = PublicKey::of(&hq).ok_or(AuthError::NotSignedByHq { node: self.node })?;
        let msg = Self::signing_bytes(&CertBody {
            network: &self.network,
            network_name: &self.network_name,
            hq: &self.hq,
            node: &self.node,
            site: &self.site,
            role: self.role,
            issued: self.issued,
        });
        if !key.verify(&msg, &self.sig) {
            return Err(AuthError::NotSignedByHq { node: self.node });
        }
        if (self.role == Role::Hq) != (self.node == hq) {
            return Err(AuthError::HqRoleMisuse { node: self.node });
        }
        Ok(())
    }
}

/// HQ's statement, in its own feed, that `node` is no longer a member: entries it wrote
/// after `upto_seq` are refused everywhere.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub node: NodeId,
    pub upto_seq: u64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("certificate belongs to network {got}, not to this network {expected}")]
    WrongNetwork { expected: NetworkId, got: NetworkId },
    #[error("certificate of node {node} is not signed by this network's HQ")]
    NotSignedByHq { node: NodeId },
    #[error("certificate of node {node} misuses the HQ role")]
    HqRoleMisuse { node: NodeId },
    #[error("node {0} is not enrolled in this network: enroll it at HQ and bring its certificate")]
    UnknownOrigin(NodeId),
    #[error(
        "node {node} was revoked ({reason}); nothing it wrote after entry {upto_seq} is accepted"
    )]
    Revoked {
        node: NodeId,
        upto_seq: u64,
        reason: String,
    },
    #[error("a {role} node may not write a {what}")]
    Unauthorized { role: Role, what: &'static str },
    #[error("a node of site {origin_site} may not write for site {target}")]
    OtherSite { origin_site: SiteId, target: SiteId },
}

/// An enrolled node, with its key ready for verifying.
#[derive(Clone, Debug)]
pub struct Member {
    pub cert: Certificate,
    pub key: PublicKey,
}

/// Everything a node knows about who belongs to its network.
#[derive(Clone, Debug)]
pub struct Membership {
    network: NetworkId,
    hq: NodeId,
    members: BTreeMap<NodeId, Member>,
    revoked: BTreeMap<NodeId, Revocation>,
}

impl Membership {
    /// Starts from HQ's self-signed certificate, which every node receives when it joins.
    pub fn new(hq_cert: Certificate) -> Result<Membership, AuthError> {
        let mut m = Membership {
            network: hq_cert.network,
            hq: hq_cert.hq,
            members: BTreeMap::new(),
            revoked: BTreeMap::new(),
        };
        m.admit(hq_cert)?;
        Ok(m)
    }

    pub fn network(&self) -> NetworkId {
        self.network
    }

    pub fn hq(&self) -> NodeId {
        self.hq
    }

    /// Verifies and records a certificate. Returns whether it was new. A later
    /// certificate for the same node (a move to another site) replaces the older one.
    pub fn admit(&mut self, cert: Certificate) -> Result<bool, AuthError> {
        cert.verify(self.network, self.hq)?;
        if let Some(old) = self.members.get(&cert.node)
            && old.cert.issued >= cert.issued
        {
            return Ok(false);
        }
        let key = PublicKey::of(&cert.node).ok_or(AuthError::UnknownOrigin(cert.node))?;
        self.members.insert(cert.node, Member { cert, key });
        Ok(true)
    }

    pub fn revoke(&mut self, rev: Revocation) {
        let keep_lower = self
            .revoked
            .get(&rev.node)
            .is_some_and(|old| old.upto_seq <= rev.upto_seq);
        if !keep_lower {
            self.revoked.insert(rev.node, rev);
        }
    }

    /// The member that may have written entry `seq` of `node`'s feed.
    pub fn writer(&self, node: &NodeId, seq: u64) -> Result<&Member, AuthError> {
        if let Some(rev) = self.revoked.get(node)
            && seq > rev.upto_seq
        {
            return Err(AuthError::Revoked {
                node: *node,
                upto_seq: rev.upto_seq,
                reason: rev.reason.clone(),
            });
        }
        self.members
            .get(node)
            .ok_or(AuthError::UnknownOrigin(*node))
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    pub fn is_revoked(&self, node: &NodeId) -> bool {
        self.revoked.contains_key(node)
    }

    /// Every revoked node, with the revocation that applies to it.
    pub fn revocations(&self) -> &BTreeMap<NodeId, Revocation> {
        &self.revoked
    }
}

/// May a node holding `cert` write `body`? Pure: depends only on the writer's certificate
/// and the body, never on what else has arrived, so every replica decides the same.
pub fn authorize(cert: &Certificate, body: &Body) -> Result<(), AuthError> {
    let role = cert.role;
    let deny = || {
        Err(AuthError::Unauthorized {
            role,
            what: body.kind(),
        })
    };
    let own_site = |site: &SiteId| {
        if role == Role::Hq || *site == cert.site {
            Ok(())
        } else {
            Err(AuthError::OtherSite {
                origin_site: cert.site.clone(),
                target: site.clone(),
            })
        }
    };
    match body {
        Body::Card(txn) | Body::Intent(txn) => {
            let issuing = matches!(
                txn.kind,
                TxnKind::Load
                    | TxnKind::Issue { .. }
                    | TxnKind::Return { .. }
                    | TxnKind::Replace { .. }
            );
            if issuing && !matches!(role, Role::Hq | Role::Issuer) {
                return deny();
            }
            own_site(&txn.site)
        }
        Body::Blacklist(BlacklistEvent::Block { .. }) => Ok(()),
        Body::Blacklist(BlacklistEvent::Clear { .. }) => {
            if role == Role::Hq {
                Ok(())
            } else {
                deny()
            }
        }
        Body::CardRegistry(_) => {
            if matches!(role, Role::Hq | Role::Issuer) {
                Ok(())
            } else {
                deny()
            }
        }
        Body::Operator(_) | Body::Alarm(_) | Body::IntentVoid(_) => Ok(()),
        // Any site the card is presented at completes another site's intent; only a
        // money operation of the card is completed.
        Body::Completion(c) => {
            if c.txn.kind.counter_space().is_some() {
                Ok(())
            } else {
                deny()
            }
        }
        Body::Enroll(_) | Body::Revoke(_) | Body::Settlement(_) => {
            if role == Role::Hq {
                Ok(())
            } else {
                deny()
            }
        }
        Body::Doc(change) => match &change.doc {
            DocName::SitePrices(site) => own_site(site),
            DocName::PriceBook | DocName::Network | DocName::Discounts => {
                if role == Role::Hq {
                    Ok(())
                } else {
                    deny()
                }
            }
        },
    }
}
