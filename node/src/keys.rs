//! Card master keys at rest and in transit. HQ runs the two-person ceremony once; the
//! master keys are kept in HQ's store sealed to HQ's own node key; `export` seals the
//! keys a node's role needs to that node, which `import`s them into its own store.
//! The transport master key of a batch of blank cards comes from the card
//! manufacturer in a key file; `import_transport` seals it into the issuing node's
//! store the same way. Nothing here prints, logs or stores key material in the clear.

use crate::seal::{self, Sealed};
use crate::store::{Store, StoreError};
use cardmesh_drivers::crypto::Key16;
use cardmesh_drivers::keys::{KeyComponent, MasterKeys, combine};
use cardmesh_drivers::perso::TransportKey;
use cardmesh_model::codec::{self, CodecError, Kind};
use cardmesh_model::{NodeId, NodeKey, Role};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

const MASTER: &str = "keys/master";
const HELD: &str = "keys/held";
const TRANSPORT: &str = "keys/transport";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the key ceremony was already held on this network; master keys can never be changed")]
    AlreadyHeld,
    #[error("only HQ holds master keys; this node is a {0}")]
    NotHq(Role),
    #[error("no key ceremony has been held yet: run `cardmesh keys ceremony` at HQ")]
    NoCeremony,
    #[error("a key component is 32 hex digits; {0}")]
    BadComponent(String),
    #[error("the two components are identical: each custodian must enter their own")]
    SameComponents,
    #[error("node {0} is not enrolled in this network")]
    UnknownNode(String),
    #[error("an HQ node does not import keys: it holds the master keys")]
    HqImport,
    #[error("this key package is for node {0}, not this node")]
    NotForThisNode(String),
    #[error(
        "no transport key for blank cards here: import the key file that came with the batch (`cardmesh keys import-transport FILE`)"
    )]
    NoTransportKey,
    #[error("transport key file: {0}")]
    BadTransportFile(String),
    #[error("sealed keys could not be opened: {0}")]
    Seal(#[from] seal::SealError),
    #[error("key package: {0}")]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the ceremony shows the custodians: check values only, never keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CeremonyReport {
    pub kcv_a: [u8; 3],
    pub kcv_b: [u8; 3],
    pub kcv_combined: [u8; 3],
}

/// A set of master keys, some of which a node may lack. Serialized only to be sealed.
#[derive(Default, Serialize, Deserialize)]
pub struct HeldKeys {
    pub purchase: Option<[u8; 16]>,
    pub load: Option<[u8; 16]>,
    pub tac: Option<[u8; 16]>,
    pub pin_unblock: Option<[u8; 16]>,
    pub maintenance: Option<[u8; 16]>,
}

impl Drop for HeldKeys {
    fn drop(&mut self) {
        for k in [
            &mut self.purchase,
            &mut self.load,
            &mut self.tac,
            &mut self.pin_unblock,
            &mut self.maintenance,
        ]
        .into_iter()
        .flatten()
        {
            k.zeroize();
        }
    }
}

impl std::fmt::Debug for HeldKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HeldKeys({})", self.names().join(", "))
    }
}

impl HeldKeys {
    fn all(m: &MasterKeys) -> HeldKeys {
        HeldKeys {
            purchase: Some(*m.purchase.expose_secret()),
            load: Some(*m.load.expose_secret()),
            tac: Some(*m.tac.expose_secret()),
            pin_unblock: Some(*m.pin_unblock.expose_secret()),
            maintenance: Some(*m.maintenance.expose_secret()),
        }
    }

    /// The subset a node of `role` needs: SAMs purchase and block cards; issuers also load.
    fn for_role(&self, role: Role) -> HeldKeys {
        let issuer = role == Role::Issuer;
        HeldKeys {
            purchase: self.purchase,
            load: if issuer { self.load } else { None },
            tac: None,
            pin_unblock: if issuer { self.pin_unblock } else { None },
            maintenance: self.maintenance,
        }
    }

    pub fn names(&self) -> Vec<&'static str> {
        [
            ("purchase", self.purchase.is_some()),
            ("load", self.load.is_some()),
            ("tac", self.tac.is_some()),
            ("pin-unblock", self.pin_unblock.is_some()),
            ("maintenance", self.maintenance.is_some()),
        ]
        .into_iter()
        .filter_map(|(n, held)| held.then_some(n))
        .collect()
    }

    pub fn purchase(&self) -> Option<Key16> {
        self.purchase.map(Key16::from_bytes)
    }

    pub fn load(&self) -> Option<Key16> {
        self.load.map(Key16::from_bytes)
    }

    pub fn tac(&self) -> Option<Key16> {
        self.tac.map(Key16::from_bytes)
    }

    /// Every master key, as only HQ holds them (to personalize cards).
    pub fn masters(&self) -> Option<MasterKeys> {
        Some(MasterKeys {
            purchase: Key16::from_bytes(self.purchase?),
            load: Key16::from_bytes(self.load?),
            tac: Key16::from_bytes(self.tac?),
            pin_unblock: Key16::from_bytes(self.pin_unblock?),
            maintenance: Key16::from_bytes(self.maintenance?),
        })
    }
}

/// A component as typed or read from a file; wiped when dropped.
pub struct KeyComponentInput(pub String);

impl Drop for KeyComponentInput {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Parses one custodian's component: 32 hex digits, spaces allowed between groups.
pub fn parse_component(text: &str) -> Result<KeyComponent, KeyError> {
    let mut digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let bad = |why: &str| KeyError::BadComponent(why.to_string());
    let result = if digits.len() != 32 {
        Err(bad(&format!("got {} digits", digits.len())))
    } else if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        Err(bad("only 0-9 and A-F are allowed"))
    } else {
        let mut bytes = [0u8; 16];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).expect("checked hex");
        }
        let c = KeyComponent::from_bytes(bytes);
        bytes.zeroize();
        Ok(c)
    };
    digits.zeroize();
    result
}

fn seal_keys(to: &NodeId, keys: &HeldKeys) -> Result<Sealed, KeyError> {
    let plain = postcard::to_stdvec(keys).expect("serializing to a Vec cannot fail");
    seal_secret(to, plain)
}

/// Seals secret bytes to a node, wiping the plain copy.
fn seal_secret(to: &NodeId, mut plain: Vec<u8>) -> Result<Sealed, KeyError> {
    let mut randomness = [0u8; 56];
    getrandom::fill(&mut randomness).expect("the operating system has no random source");
    let sealed = seal::seal(to, &plain, &randomness);
    plain.zeroize();
    Ok(sealed?)
}

fn open_keys(key: &NodeKey, sealed: &Sealed) -> Result<HeldKeys, KeyError> {
    let mut plain = seal::open(key, sealed)?;
    let keys = postcard::from_bytes(&plain).map_err(|e| CodecError::Corrupt {
        kind: Kind::KeyPackage,
        detail: e.to_string(),
    });
    plain.zeroize();
    Ok(keys?)
}

/// Holds the ceremony at HQ: combines the two components, derives the master keys and
/// seals them into the store. Refuses to run twice.
pub fn ceremony(
    store: &Store,
    a: &KeyComponent,
    b: &KeyComponent,
) -> Result<CeremonyReport, KeyError> {
    let role = store.own_certificate().role;
    if role != Role::Hq {
        return Err(KeyError::NotHq(role));
    }
    if store.config_get(MASTER)?.is_some() {
        return Err(KeyError::AlreadyHeld);
    }
    let combined = combine(a, b);
    if *combined.expose_secret() == [0; 16] {
        return Err(KeyError::SameComponents);
    }
    let masters = MasterKeys::derive(&combined);
    let sealed = seal_keys(&store.node_id(), &HeldKeys::all(&masters))?;
    store.config_set(MASTER, &codec::encode(Kind::KeyPackage, &sealed))?;
    Ok(CeremonyReport {
        kcv_a: a.kcv(),
        kcv_b: b.kcv(),
        kcv_combined: combined.kcv(),
    })
}

/// A node's keys, sealed to it, as carried from HQ.
#[derive(Serialize, Deserialize)]
struct KeyPackage {
    node: NodeId,
    keys: Sealed,
}

/// At HQ: seals the keys `node`'s role needs to that node; returns the package file bytes.
pub fn export(store: &Store, hq_key: &NodeKey, node: &NodeId) -> Result<Vec<u8>, KeyError> {
    let role = store.own_certificate().role;
    if role != Role::Hq {
        return Err(KeyError::NotHq(role));
    }
    let cert = store
        .certificates()?
        .into_iter()
        .find(|c| c.node == *node)
        .ok_or_else(|| KeyError::UnknownNode(node.short()))?;
    let masters = held(store, hq_key)?;
    let keys = seal_keys(node, &masters.for_role(cert.role))?;
    Ok(codec::encode(
        Kind::KeyPackage,
        &KeyPackage { node: *node, keys },
    ))
}

/// On a node: installs the keys HQ exported for it. Returns the names of the keys held.
pub fn import(store: &Store, key: &NodeKey, package: &[u8]) -> Result<Vec<&'static str>, KeyError> {
    if store.own_certificate().role == Role::Hq {
        return Err(KeyError::HqImport);
    }
    let pkg: KeyPackage = codec::decode(Kind::KeyPackage, package)?;
    if pkg.node != key.node_id() {
        return Err(KeyError::NotForThisNode(pkg.node.short()));
    }
    let keys = open_keys(key, &pkg.keys)?;
    let names = keys.names();
    store.config_set(HELD, &codec::encode(Kind::KeyPackage, &pkg.keys))?;
    Ok(names)
}

/// The keys this node holds (all master keys at HQ, its role's share elsewhere).
pub fn held(store: &Store, key: &NodeKey) -> Result<HeldKeys, KeyError> {
    let name = if store.own_certificate().role == Role::Hq {
        MASTER
    } else {
        HELD
    };
    let bytes = store.config_get(name)?.ok_or(KeyError::NoCeremony)?;
    let sealed: Sealed = codec::decode(Kind::KeyPackage, &bytes)?;
    open_keys(key, &sealed)
}

/// Parses a manufacturer's transport key file: the 32 hex digits of the transport master
/// key, optionally followed by its 6-hex-digit KCV, which must then match. Spaces,
/// newlines and `#` comment lines are ignored.
pub fn parse_transport_file(text: &str) -> Result<TransportKey, KeyError> {
    let bad = |why: &str| KeyError::BadTransportFile(why.to_string());
    let mut digits: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect();
    let result = (|| {
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("only hex digits 0-9 and A-F are allowed"));
        }
        let (key, kcv) = match digits.len() {
            32 => (&digits[..], None),
            38 => (&digits[..32], Some(&digits[32..])),
            n => {
                return Err(bad(&format!(
                    "expected 32 hex digits (the key) and optionally 6 more (its KCV), got {n}"
                )));
            }
        };
        let mut bytes = [0u8; 16];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&key[2 * i..2 * i + 2], 16).expect("checked hex");
        }
        let transport = TransportKey::new(Key16::from_bytes(bytes));
        bytes.zeroize();
        if let Some(kcv) = kcv
            && !kcv.eq_ignore_ascii_case(&hex(&transport.kcv()))
        {
            return Err(bad(
                "the key does not match its check value (KCV): the file is damaged or mistyped",
            ));
        }
        Ok(transport)
    })();
    digits.zeroize();
    result
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// Seals a batch's transport master key into this node's store (replacing the previous
/// batch's). Returns its KCV, to compare with the manufacturer's.
pub fn import_transport(
    store: &Store,
    key: &NodeKey,
    transport: &TransportKey,
) -> Result<[u8; 3], KeyError> {
    let sealed = seal_secret(&key.node_id(), transport.expose_secret().to_vec())?;
    store.config_set(TRANSPORT, &codec::encode(Kind::KeyPackage, &sealed))?;
    Ok(transport.kcv())
}

/// The transport master key this node holds, if one was imported.
pub fn transport(store: &Store, key: &NodeKey) -> Result<Option<TransportKey>, KeyError> {
    let Some(bytes) = store.config_get(TRANSPORT)? else {
        return Ok(None);
    };
    let sealed: Sealed = codec::decode(Kind::KeyPackage, &bytes)?;
    let plain = zeroize::Zeroizing::new(seal::open(key, &sealed)?);
    let raw: [u8; 16] = plain.as_slice().try_into().map_err(|_| {
        KeyError::Codec(CodecError::Corrupt {
            kind: Kind::KeyPackage,
            detail: "transport key is not 16 bytes".into(),
        })
    })?;
    Ok(Some(TransportKey::new(Key16::from_bytes(raw))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_file_takes_key_and_checks_its_kcv() {
        let key = "# batch 7\n0123456789ABCDEF 0123456789ABCDEF\n";
        let t = parse_transport_file(key).unwrap();
        let kcv = hex(&t.kcv());
        assert!(parse_transport_file(&format!("{key}{kcv}\n")).is_ok());
        let wrong = if kcv == "000000" { "000001" } else { "000000" };
        let err = parse_transport_file(&format!("{key}{wrong}")).unwrap_err();
        assert!(err.to_string().contains("KCV"), "{err}");
        assert!(parse_transport_file("0123").is_err());
        assert!(parse_transport_file(&"G".repeat(32)).is_err());
    }
}
