//! The node's own settings, in `config.toml` in its data folder, written by the site's
//! admin: where to listen, which peers to dial and how often, and how far the node looks
//! for peers. Everything shared by the network (sites, prices, limits) lives in the
//! replicated documents instead.
//!
//! ```toml
//! [sync]
//! listen = "0.0.0.0:7470"
//! interval_secs = 60
//! # Find enrolled nodes on the local network by mDNS and sync with them (default on).
//! lan_discovery = true
//! # Fall back to n0's public relays when no direct path works (default off).
//! relays = false
//! # Publish this node's address to n0's public DNS and look peers up there (default off).
//! public_discovery = false
//!
//! [[sync.peer]]
//! name = "hq"
//! node = "<64 hex digits, from the peer's `cardmesh status`>"
//! addr = "203.0.113.7:7470"
//! ```

use crate::link::iroh::Reach;
use crate::link::schedule::Policy;
use crate::link::service::Peer;
use cardmesh_model::NodeId;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;

pub const FILE: &str = "config.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    pub listen: SocketAddr,
    pub policy: Policy,
    pub peers: Vec<NamedPeer>,
    pub reach: Reach,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedPeer {
    pub name: String,
    pub peer: Peer,
}

impl Default for NodeConfig {
    fn default() -> NodeConfig {
        NodeConfig {
            listen: "0.0.0.0:7470".parse().expect("valid address"),
            policy: Policy::default(),
            peers: Vec::new(),
            reach: Reach::default(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    sync: SyncSection,
    /// The fuel station's devices: read and checked by `station::config`.
    #[serde(default, rename = "station")]
    _station: Option<toml::Table>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SyncSection {
    listen: Option<SocketAddr>,
    interval_secs: Option<u64>,
    lan_discovery: Option<bool>,
    relays: Option<bool>,
    public_discovery: Option<bool>,
    #[serde(default)]
    peer: Vec<PeerEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerEntry {
    name: Option<String>,
    node: String,
    addr: SocketAddr,
}

/// Parses the text of a config file; `path` only names it in errors.
pub fn parse(text: &str, path: &str) -> Result<NodeConfig, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        path: path.to_string(),
        message,
    };
    let file: File = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let mut config = NodeConfig::default();
    if let Some(listen) = file.sync.listen {
        config.listen = listen;
    }
    if let Some(secs) = file.sync.interval_secs {
        if secs == 0 {
            return Err(invalid("sync.interval_secs must be at least 1".into()));
        }
        config.policy.interval_ms = secs.saturating_mul(1000);
    }
    let reach = &mut config.reach;
    for (set, value) in [
        (&mut reach.lan_discovery, file.sync.lan_discovery),
        (&mut reach.relays, file.sync.relays),
        (&mut reach.public_discovery, file.sync.public_discovery),
    ] {
        if let Some(value) = value {
            *set = value;
        }
    }
    for (i, p) in file.sync.peer.into_iter().enumerate() {
        let node: NodeId = p
            .node
            .parse()
            .map_err(|e| invalid(format!("peer {}: node id {:?}: {e}", i + 1, p.node)))?;
        if config.peers.iter().any(|q| q.peer.node == node) {
            return Err(invalid(format!("peer {} is listed twice", node.short())));
        }
        config.peers.push(NamedPeer {
            name: p.name.unwrap_or_else(|| node.short()),
            peer: Peer { node, addr: p.addr },
        });
    }
    Ok(config)
}

/// Reads `config.toml` from the data folder; no file means the defaults.
pub fn load(data: &Path) -> Result<NodeConfig, ConfigError> {
    let path = data.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text, &path.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(NodeConfig::default()),
        Err(source) => Err(ConfigError::Read {
            path: path.display().to_string(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: &str = "0101010101010101010101010101010101010101010101010101010101010101";

    #[test]
    fn an_empty_file_is_the_defaults() {
        assert_eq!(parse("", "c").unwrap(), NodeConfig::default());
    }

    #[test]
    fn peers_listen_and_interval_are_read() {
        let text = format!(
            "[sync]\nlisten = \"127.0.0.1:9000\"\ninterval_secs = 30\n\n\
             [[sync.peer]]\nname = \"hq\"\nnode = \"{NODE}\"\naddr = \"10.0.0.1:7470\"\n"
        );
        let c = parse(&text, "c").unwrap();
        assert_eq!(c.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(c.policy.interval_ms, 30_000);
        assert_eq!(c.peers.len(), 1);
        assert_eq!(c.peers[0].name, "hq");
        assert_eq!(c.peers[0].peer.node, NodeId([1; 32]));
    }

    #[test]
    fn lan_discovery_is_on_and_relays_and_public_discovery_off_unless_set() {
        let c = parse("[sync]\n", "c").unwrap();
        assert_eq!(
            c.reach,
            Reach {
                lan_discovery: true,
                relays: false,
                public_discovery: false
            }
        );
        let all = "[sync]\nlan_discovery = false\nrelays = true\npublic_discovery = true\n";
        assert_eq!(
            parse(all, "c").unwrap().reach,
            Reach {
                lan_discovery: false,
                relays: true,
                public_discovery: true
            }
        );
        let only_relays = parse("[sync]\nrelays = true\n", "c").unwrap().reach;
        assert!(only_relays.lan_discovery && only_relays.relays && !only_relays.public_discovery);
        let not_a_bool = parse("[sync]\nrelays = \"yes\"\n", "c").unwrap_err();
        assert!(not_a_bool.to_string().contains("relays"), "{not_a_bool}");
        let typo = parse("[sync]\nrelay = true\n", "c").unwrap_err();
        assert!(typo.to_string().contains("relay"), "{typo}");
    }

    #[test]
    fn mistakes_are_named() {
        let bad_node = "[[sync.peer]]\nnode = \"xyz\"\naddr = \"10.0.0.1:1\"\n";
        assert!(
            parse(bad_node, "c")
                .unwrap_err()
                .to_string()
                .contains("peer 1")
        );
        let typo = "[sync]\nlisten_on = \"1.2.3.4:5\"\n";
        assert!(
            parse(typo, "c")
                .unwrap_err()
                .to_string()
                .contains("listen_on")
        );
        let twice = format!(
            "[[sync.peer]]\nnode = \"{NODE}\"\naddr = \"10.0.0.1:1\"\n\
             [[sync.peer]]\nnode = \"{NODE}\"\naddr = \"10.0.0.2:1\"\n"
        );
        assert!(
            parse(&twice, "c")
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        assert!(parse("[sync]\ninterval_secs = 0\n", "c").is_err());
    }
}
