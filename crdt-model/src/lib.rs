//! cardmesh's replicated data model, pure: no I/O, no clock, no randomness. Everything
//! that decides — validation, authority, merge rules, pricing, sync planning — lives here
//! so that it can be tested without a disk, a socket or a clock.
//!
//! Facts live in signed, hash-chained feeds ([`entry`]), one per node, folded into views
//! ([`blacklist`], [`registry`]); the small documents people edit together are automerge
//! documents ([`docs`]) whose changes also travel inside feed entries.

pub mod auth;
pub mod blacklist;
pub mod body;
pub mod codec;
pub mod docs;
pub mod entry;
pub mod hlc;
pub mod ids;
pub mod money;
pub mod pricing;
pub mod registry;
pub mod replica;
pub mod report;
pub mod settlement;
pub mod sign;
pub mod sync;
pub mod vv;

pub use auth::{AuthError, CertRequest, Certificate, Membership, Revocation, Role};
pub use body::{Body, EntryRef};
pub use entry::{Entry, EntryError, FeedHead};
pub use hlc::{Hlc, HlcClock};
pub use ids::{
    BusinessDay, CardAsn, CardTime, MemberClass, MerchantId, NetworkId, NodeId, OperatorId,
    ProductId, SiteId, TerminalId,
};
pub use money::{Money, Quantity};
pub use sign::{Hash, NodeKey};
pub use vv::{FeedRange, VersionVector};
