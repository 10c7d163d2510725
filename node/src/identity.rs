//! A node's identity on disk and the enrollment flow, all with files so that it works by
//! USB stick with no network: `init` makes a key (and, at HQ, the network), a site's
//! request goes to HQ, `enroll` answers with a join package, `join` installs it.
//!
//! Data folder layout: `node.key` (the node's ed25519 seed, 0600), `network.key` (the
//! network's bundle-sealing key, 0600), `store.redb`, and on a new site
//! `enroll-request.cmreq` until it has joined.

use crate::seal::{self, Sealed};
use crate::store::{Clock, Store, StoreError};
use cardmesh_model::body::Body;
use cardmesh_model::codec::{self, CodecError, Kind};
use cardmesh_model::sign::{PublicKey, Sig};
use cardmesh_model::{
    CertRequest, Certificate, Hlc, NetworkId, NodeId, NodeKey, Revocation, Role, SiteId,
};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The secret every node of a network shares to seal USB bundles. Never printed.
#[derive(Clone)]
pub struct NetworkKey(pub [u8; 32]);

impl fmt::Debug for NetworkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NetworkKey(<redacted>)")
    }
}

impl Drop for NetworkKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{0} is already a cardmesh node; use another --data folder")]
    AlreadyInitialized(PathBuf),
    #[error("{0} is not initialized: run `cardmesh init` first")]
    NotInitialized(PathBuf),
    #[error(
        "{0} has not joined a network yet: bring its join package from HQ and run `cardmesh join`"
    )]
    NotJoined(PathBuf),
    #[error(
        "{path} can be read by other users (mode {mode:o}); run `chmod 600 {path}` and check who copied it"
    )]
    KeyExposed { path: PathBuf, mode: u32 },
    #[error("{0} is damaged: expected 32 key bytes")]
    BadKeyFile(PathBuf),
    #[error("the enrollment request is not signed by the node it names: it was altered or forged")]
    ForgedRequest,
    #[error("this join package is for node {for_node}, but this node is {this_node}")]
    NotForThisNode { for_node: String, this_node: String },
    #[error("the join package is not valid: {0}")]
    BadPackage(String),
    #[error("only HQ can enroll or revoke nodes; this node is a {0}")]
    NotHq(Role),
    #[error("node {0} is not a member of this network")]
    NotMember(NodeId),
    #[error("HQ cannot revoke itself")]
    RevokeHq,
    #[error(
        "node {node} is already revoked ({reason}): nothing it wrote after entry {upto_seq} is accepted"
    )]
    AlreadyRevoked {
        node: NodeId,
        upto_seq: u64,
        reason: String,
    },
    #[error("say why the node is revoked (--reason), for the members' audit")]
    NoReason,
    #[error("reading {what}: {source}")]
    Codec {
        what: &'static str,
        source: CodecError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Paths inside a node's data folder.
#[derive(Clone, Debug)]
pub struct DataDir(PathBuf);

impl DataDir {
    pub fn new(path: impl Into<PathBuf>) -> DataDir {
        DataDir(path.into())
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn key_file(&self) -> PathBuf {
        self.0.join("node.key")
    }
    pub fn network_key_file(&self) -> PathBuf {
        self.0.join("network.key")
    }
    pub fn store_file(&self) -> PathBuf {
        self.0.join("store.redb")
    }
    pub fn request_file(&self) -> PathBuf {
        self.0.join("enroll-request.cmreq")
    }
}

/// A site's request to join, carried to HQ. Signed by the new node's key, which proves
/// that whoever asks holds the key the certificate will name.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EnrollRequest {
    pub node: NodeId,
    pub label: String,
    pub created_ms: u64,
    pub sig: Sig,
}

const REQUEST_DOMAIN: &[u8] = b"cardmesh/enroll-request/1";

fn request_signing_bytes(node: &NodeId, label: &str, created_ms: u64) -> Vec<u8> {
    let mut out = REQUEST_DOMAIN.to_vec();
    out.extend(
        postcard::to_stdvec(&(node, label, created_ms)).expect("serializing to a Vec cannot fail"),
    );
    out
}

impl EnrollRequest {
    pub fn new(key: &NodeKey, label: &str, created_ms: u64) -> EnrollRequest {
        let node = key.node_id();
        let sig = key.sign(&request_signing_bytes(&node, label, created_ms));
        EnrollRequest {
            node,
            label: label.to_string(),
            created_ms,
            sig,
        }
    }

    pub fn verify(&self) -> Result<(), IdentityError> {
        let key = PublicKey::of(&self.node).ok_or(IdentityError::ForgedRequest)?;
        if key.verify(
            &request_signing_bytes(&self.node, &self.label, self.created_ms),
            &self.sig,
        ) {
            Ok(())
        } else {
            Err(IdentityError::ForgedRequest)
        }
    }
}

/// HQ's answer to a request: the node's certificate, HQ's own, and the network key
/// sealed so that only the new node can read it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JoinPackage {
    pub cert: Certificate,
    pub hq_cert: Certificate,
    pub network_key: Sealed,
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the operating system has no random source");
    b
}

/// Writes a secret file readable by its owner only, atomically.
fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}

fn read_secret(path: &Path) -> Result<[u8; 32], IdentityError> {
    let meta = fs::metadata(path).map_err(io(path))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(IdentityError::KeyExposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    let bytes = fs::read(path).map_err(io(path))?;
    bytes
        .try_into()
        .map_err(|_| IdentityError::BadKeyFile(path.to_path_buf()))
}

fn new_key(dir: &DataDir) -> Result<NodeKey, IdentityError> {
    if dir.key_file().exists() {
        return Err(IdentityError::AlreadyInitialized(dir.path().to_path_buf()));
    }
    fs::create_dir_all(dir.path()).map_err(io(dir.path()))?;
    let mut seed = random::<32>();
    let key = NodeKey::from_seed(&seed);
    write_secret(&dir.key_file(), &seed)?;
    zeroize::Zeroize::zeroize(&mut seed);
    Ok(key)
}

pub fn load_key(dir: &DataDir) -> Result<NodeKey, IdentityError> {
    if !dir.key_file().exists() {
        return Err(IdentityError::NotInitialized(dir.path().to_path_buf()));
    }
    let mut seed = read_secret(&dir.key_file())?;
    let key = NodeKey::from_seed(&seed);
    zeroize::Zeroize::zeroize(&mut seed);
    Ok(key)
}

pub fn load_network_key(dir: &DataDir) -> Result<NetworkKey, IdentityError> {
    read_secret(&dir.network_key_file()).map(NetworkKey)
}

fn hlc_now(clock: &dyn Clock) -> Hlc {
    Hlc::new(clock.now_ms(), 0)
}

/// Creates a network with this folder as its HQ node.
pub fn init_hq(
    dir: &DataDir,
    network_name: &str,
    clock: Arc<dyn Clock>,
) -> Result<Store, IdentityError> {
    let key = new_key(dir)?;
    let req = CertRequest {
        network: NetworkId(random()),
        network_name: network_name.to_string(),
        node: key.node_id(),
        site: "hq".parse().expect("valid site id"),
        role: Role::Hq,
        issued: hlc_now(clock.as_ref()),
    };
    let cert = Certificate::issue(&key, req);
    write_secret(&dir.network_key_file(), &random::<32>())?;
    Ok(Store::create(
        &dir.store_file(),
        key,
        cert.clone(),
        cert,
        clock,
    )?)
}

/// Creates a site node's key and its enrollment request file; returns the file's path.
pub fn init_site(dir: &DataDir, label: &str, clock: &dyn Clock) -> Result<PathBuf, IdentityError> {
    let key = new_key(dir)?;
    let req = EnrollRequest::new(&key, label, clock.now_ms());
    let path = dir.request_file();
    fs::write(&path, codec::encode(Kind::EnrollRequest, &req)).map_err(io(&path))?;
    Ok(path)
}

pub fn read_request(bytes: &[u8]) -> Result<EnrollRequest, IdentityError> {
    codec::decode(Kind::EnrollRequest, bytes).map_err(|source| IdentityError::Codec {
        what: "enrollment request",
        source,
    })
}

/// At HQ: checks a request, certifies the node, records the certificate in HQ's feed
/// (so every node learns of the new member), and returns the join package bytes.
pub fn enroll(
    hq: &Store,
    hq_dir: &DataDir,
    request: &[u8],
    site: SiteId,
    role: Role,
    clock: &dyn Clock,
) -> Result<Vec<u8>, IdentityError> {
    let own = hq.own_certificate();
    if own.role != Role::Hq {
        return Err(IdentityError::NotHq(own.role));
    }
    let req = read_request(request)?;
    req.verify()?;
    let hq_key = load_key(hq_dir)?;
    let issued = hlc_now(clock);
    let cert = Certificate::issue(
        &hq_key,
        CertRequest {
            network: own.network,
            network_name: own.network_name.clone(),
            node: req.node,
            site,
            role,
            issued,
        },
    );
    hq.append_local(Body::Enroll(cert.clone()))?;
    let network_key = load_network_key(hq_dir)?;
    let sealed = seal::seal(&req.node, &network_key.0, &random())
        .map_err(|e| IdentityError::BadPackage(e.to_string()))?;
    Ok(codec::encode(
        Kind::JoinPackage,
        &JoinPackage {
            cert,
            hq_cert: own,
            network_key: sealed,
        },
    ))
}

/// At HQ: revokes `node`, a lost, stolen or retired one. HQ's revocation refuses every
/// entry the node writes after the last one HQ holds, so nothing HQ has already taken in
/// (and folded into reports and settlement) is undone; and every node that receives it
/// stops syncing with the revoked one. The revocation is an entry of HQ's feed and
/// spreads like any other.
pub fn revoke(hq: &Store, node: &NodeId, reason: &str) -> Result<Revocation, IdentityError> {
    let own = hq.own_certificate();
    if own.role != Role::Hq {
        return Err(IdentityError::NotHq(own.role));
    }
    if *node == own.node {
        return Err(IdentityError::RevokeHq);
    }
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(IdentityError::NoReason);
    }
    if !hq.certificates()?.iter().any(|c| c.node == *node) {
        return Err(IdentityError::NotMember(*node));
    }
    if let Some(held) = hq.revocations()?.remove(node) {
        return Err(IdentityError::AlreadyRevoked {
            node: *node,
            upto_seq: held.upto_seq,
            reason: held.reason,
        });
    }
    // HQ's head of the node's feed is signed in HQ's store (a stored run ends at a
    // signature), so HQ can pass on every entry up to it.
    let rev = Revocation {
        node: *node,
        upto_seq: hq.head(node)?.seq,
        reason: reason.to_string(),
    };
    hq.append_local(Body::Revoke(rev.clone()))?;
    Ok(rev)
}

/// On the site: installs a join package and creates the node's store.
pub fn join(dir: &DataDir, package: &[u8], clock: Arc<dyn Clock>) -> Result<Store, IdentityError> {
    let key = load_key(dir)?;
    if dir.store_file().exists() {
        return Err(IdentityError::AlreadyInitialized(dir.path().to_path_buf()));
    }
    let pkg: JoinPackage =
        codec::decode(Kind::JoinPackage, package).map_err(|source| IdentityError::Codec {
            what: "join package",
            source,
        })?;
    if pkg.cert.node != key.node_id() {
        return Err(IdentityError::NotForThisNode {
            for_node: pkg.cert.node.short(),
            this_node: key.node_id().short(),
        });
    }
    let bad = |e: &dyn fmt::Display| IdentityError::BadPackage(e.to_string());
    pkg.hq_cert
        .verify(pkg.hq_cert.network, pkg.hq_cert.hq)
        .map_err(|e| bad(&e))?;
    if pkg.hq_cert.role != Role::Hq {
        return Err(bad(&"the HQ certificate is not an HQ certificate"));
    }
    pkg.cert
        .verify(pkg.hq_cert.network, pkg.hq_cert.hq)
        .map_err(|e| bad(&e))?;
    let secret = seal::open(&key, &pkg.network_key).map_err(|e| bad(&e))?;
    let network_key: [u8; 32] = secret
        .try_into()
        .map_err(|_| bad(&"network key has the wrong length"))?;
    write_secret(&dir.network_key_file(), &network_key)?;
    let store = Store::create(&dir.store_file(), key, pkg.cert, pkg.hq_cert, clock)?;
    let _ = fs::remove_file(dir.request_file());
    Ok(store)
}

/// Opens an initialized, joined node's store, refusing exposed key files.
pub fn open(dir: &DataDir, clock: Arc<dyn Clock>) -> Result<Store, IdentityError> {
    let key = load_key(dir)?;
    if !dir.store_file().exists() {
        return Err(IdentityError::NotJoined(dir.path().to_path_buf()));
    }
    load_network_key(dir)?;
    Ok(Store::open(&dir.store_file(), key, clock)?)
}
