//! When to sync with whom. Every peer is due periodically, sooner after this node's store
//! changed (so a block written at HQ leaves within seconds, not at the next period), and
//! later after failures, backing off exponentially so an unreachable shop costs little.
//! Peers are the configured ones plus the [`Neighbours`] found on the LAN that the store
//! knows as enrolled and not revoked; a stranger is noted, never dialled.
//! Pure: the caller says what time it is, what happened and who is a member.

use cardmesh_model::NodeId;
use std::collections::BTreeMap;
use std::net::SocketAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// A healthy peer is synced at least this often.
    pub interval_ms: u64,
    /// After a change to the store, peers are synced this soon (changes closer together
    /// than this share one session).
    pub debounce_ms: u64,
    /// The wait after a first failure, doubled after each further one...
    pub min_backoff_ms: u64,
    /// ...up to this.
    pub max_backoff_ms: u64,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            interval_ms: 60_000,
            debounce_ms: 2_000,
            min_backoff_ms: 5_000,
            max_backoff_ms: 600_000,
        }
    }
}

/// What the console shows of one peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerState {
    pub next_due_ms: u64,
    pub failures: u32,
    pub last_ok_ms: Option<u64>,
    pub last_error: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Schedule {
    policy: Policy,
    peers: BTreeMap<NodeId, PeerState>,
}

impl Schedule {
    pub fn new(policy: Policy) -> Schedule {
        Schedule {
            policy,
            peers: BTreeMap::new(),
        }
    }

    /// A new peer is due at once; a known one keeps its state.
    pub fn add_peer(&mut self, peer: NodeId, now_ms: u64) {
        self.peers.entry(peer).or_insert(PeerState {
            next_due_ms: now_ms,
            ..PeerState::default()
        });
    }

    pub fn remove_peer(&mut self, peer: &NodeId) {
        self.peers.remove(peer);
    }

    /// Peers whose session is due, the longest-waiting first.
    pub fn due(&self, now_ms: u64) -> Vec<NodeId> {
        let mut due: Vec<(u64, NodeId)> = self
            .peers
            .iter()
            .filter(|(_, s)| s.next_due_ms <= now_ms)
            .map(|(p, s)| (s.next_due_ms, *p))
            .collect();
        due.sort();
        due.into_iter().map(|(_, p)| p).collect()
    }

    /// How long until the next peer is due (zero if one is; `None` with no peers).
    pub fn wait_ms(&self, now_ms: u64) -> Option<u64> {
        self.peers
            .values()
            .map(|s| s.next_due_ms.saturating_sub(now_ms))
            .min()
    }

    pub fn succeeded(&mut self, peer: &NodeId, now_ms: u64) {
        if let Some(s) = self.peers.get_mut(peer) {
            s.failures = 0;
            s.last_ok_ms = Some(now_ms);
            s.last_error = None;
            s.next_due_ms = now_ms + self.policy.interval_ms;
        }
    }

    pub fn failed(&mut self, peer: &NodeId, now_ms: u64, error: String) {
        if let Some(s) = self.peers.get_mut(peer) {
            s.failures = s.failures.saturating_add(1);
            s.last_error = Some(error);
            let doublings = (s.failures - 1).min(30);
            let backoff = self
                .policy
                .min_backoff_ms
                .saturating_mul(1 << doublings)
                .min(self.policy.max_backoff_ms);
            s.next_due_ms = now_ms + backoff;
        }
    }

    /// The store changed: bring healthy peers forward to within the debounce. A peer in
    /// backoff keeps waiting — hammering a dead line helps nobody.
    pub fn store_changed(&mut self, now_ms: u64) {
        let soon = now_ms + self.policy.debounce_ms;
        for s in self.peers.values_mut() {
            if s.failures == 0 && s.next_due_ms > soon {
                s.next_due_ms = soon;
            }
        }
    }

    pub fn peers(&self) -> &BTreeMap<NodeId, PeerState> {
        &self.peers
    }
}

/// Where a node found on the LAN stands with this one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Enrolled and not revoked in this node's store: synced with.
    Member,
    /// Unknown to this node's store, or revoked: never dialled.
    Stranger,
}

impl Standing {
    fn of(member: bool) -> Standing {
        match member {
            true => Standing::Member,
            false => Standing::Stranger,
        }
    }

    /// Why a stranger is not dialled, for the log and the console.
    pub const STRANGER_REASON: &'static str =
        "not an enrolled member of this network (unknown or revoked): not dialled";
}

/// A node found on the LAN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub addrs: Vec<SocketAddr>,
    pub standing: Standing,
}

/// What a sighting changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Noticed {
    /// A member not seen before (or one that was a stranger): dial it.
    NewMember,
    /// A stranger not seen before (or a member no longer): stop dialling it, log why.
    NewStranger,
    /// Known already, with the same standing (its addresses may have moved).
    Known,
}

/// The nodes found on the LAN and their standing. Standing follows the store: it is
/// given at each sighting and re-examined when the store changes (an enrollment or a
/// revocation arrives by sync).
#[derive(Clone, Debug, Default)]
pub struct Neighbours {
    nodes: BTreeMap<NodeId, Neighbour>,
}

impl Neighbours {
    pub fn new() -> Neighbours {
        Neighbours::default()
    }

    /// `node` announced itself at `addrs`; `member` is what the store says of it now.
    pub fn seen(&mut self, node: NodeId, addrs: Vec<SocketAddr>, member: bool) -> Noticed {
        let standing = Standing::of(member);
        let before = self
            .nodes
            .insert(node, Neighbour { addrs, standing })
            .map(|n| n.standing);
        match (before == Some(standing), standing) {
            (true, _) => Noticed::Known,
            (false, Standing::Member) => Noticed::NewMember,
            (false, Standing::Stranger) => Noticed::NewStranger,
        }
    }

    /// `node` stopped announcing itself; returns what it was.
    pub fn gone(&mut self, node: &NodeId) -> Option<Standing> {
        self.nodes.remove(node).map(|n| n.standing)
    }

    /// Re-examines every neighbour's standing; returns those whose standing changed.
    pub fn recheck(&mut self, mut member: impl FnMut(&NodeId) -> bool) -> Vec<(NodeId, Standing)> {
        let mut changed = Vec::new();
        for (node, n) in &mut self.nodes {
            let now = Standing::of(member(node));
            if now != n.standing {
                n.standing = now;
                changed.push((*node, now));
            }
        }
        changed
    }

    pub fn get(&self, node: &NodeId) -> Option<&Neighbour> {
        self.nodes.get(node)
    }

    pub fn all(&self) -> &BTreeMap<NodeId, Neighbour> {
        &self.nodes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8) -> NodeId {
        NodeId([n; 32])
    }

    fn at(port: u16) -> Vec<SocketAddr> {
        vec![SocketAddr::from(([192, 168, 1, 9], port))]
    }

    #[test]
    fn a_member_is_new_once_and_a_stranger_is_only_noted() {
        let mut n = Neighbours::new();
        assert_eq!(n.seen(peer(1), at(1), true), Noticed::NewMember);
        assert_eq!(n.seen(peer(1), at(2), true), Noticed::Known);
        assert_eq!(
            n.get(&peer(1)).unwrap().addrs,
            at(2),
            "the latest addresses"
        );
        assert_eq!(n.seen(peer(2), at(1), false), Noticed::NewStranger);
        assert_eq!(n.seen(peer(2), at(1), false), Noticed::Known);
        assert_eq!(n.get(&peer(2)).unwrap().standing, Standing::Stranger);
        assert_eq!(n.gone(&peer(2)), Some(Standing::Stranger));
        assert_eq!(n.gone(&peer(2)), None);
        assert_eq!(n.seen(peer(2), at(1), false), Noticed::NewStranger);
    }

    #[test]
    fn standing_follows_the_store_on_recheck_and_on_sightings() {
        let mut n = Neighbours::new();
        n.seen(peer(1), at(1), true);
        n.seen(peer(2), at(1), false);
        n.seen(peer(3), at(1), false);
        // Peer 2's enrollment arrived by sync; peer 1 was revoked.
        let changed = n.recheck(|p| *p == peer(2));
        assert_eq!(
            changed,
            vec![(peer(1), Standing::Stranger), (peer(2), Standing::Member)]
        );
        assert!(
            n.recheck(|p| *p == peer(2)).is_empty(),
            "nothing changed since"
        );
        assert_eq!(n.seen(peer(3), at(1), true), Noticed::NewMember);
        assert_eq!(n.seen(peer(3), at(1), false), Noticed::NewStranger);
    }

    fn policy() -> Policy {
        Policy {
            interval_ms: 60_000,
            debounce_ms: 2_000,
            min_backoff_ms: 5_000,
            max_backoff_ms: 40_000,
        }
    }

    #[test]
    fn new_peers_are_due_at_once_and_then_every_interval() {
        let mut s = Schedule::new(policy());
        s.add_peer(peer(1), 1_000);
        assert_eq!(s.due(1_000), vec![peer(1)]);
        s.succeeded(&peer(1), 1_000);
        assert!(s.due(60_999).is_empty());
        assert_eq!(s.wait_ms(1_000), Some(60_000));
        assert_eq!(s.due(61_000), vec![peer(1)]);
    }

    #[test]
    fn failures_back_off_doubling_up_to_the_cap_and_success_resets() {
        let mut s = Schedule::new(policy());
        s.add_peer(peer(1), 0);
        let mut now = 0;
        let mut waits = Vec::new();
        for _ in 0..6 {
            s.failed(&peer(1), now, "no route".into());
            let wait = s.wait_ms(now).unwrap();
            waits.push(wait);
            now += wait;
        }
        assert_eq!(waits, [5_000, 10_000, 20_000, 40_000, 40_000, 40_000]);
        assert_eq!(s.peers()[&peer(1)].last_error.as_deref(), Some("no route"));
        s.succeeded(&peer(1), now);
        assert_eq!(s.peers()[&peer(1)].failures, 0);
        assert_eq!(s.wait_ms(now), Some(60_000));
    }

    #[test]
    fn a_store_change_brings_healthy_peers_forward_but_not_failing_ones() {
        let mut s = Schedule::new(policy());
        s.add_peer(peer(1), 0);
        s.add_peer(peer(2), 0);
        s.succeeded(&peer(1), 0);
        s.failed(&peer(2), 0, "timeout".into());
        s.store_changed(1_000);
        assert_eq!(s.due(3_000), vec![peer(1)], "peer 2 is still backing off");
        assert_eq!(s.due(5_000), vec![peer(1), peer(2)]);
    }

    #[test]
    fn the_longest_waiting_peer_goes_first() {
        let mut s = Schedule::new(policy());
        s.add_peer(peer(3), 10);
        s.add_peer(peer(1), 20);
        s.add_peer(peer(2), 5);
        assert_eq!(s.due(100), vec![peer(2), peer(3), peer(1)]);
        s.remove_peer(&peer(3));
        assert_eq!(s.due(100), vec![peer(2), peer(1)]);
    }
}
