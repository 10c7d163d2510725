//! The shop manager's console. It sees nodes only through the [`Nodes`] trait, which
//! the node crate implements: this crate does not even depend on the node crate, so it
//! cannot open a store. Input maps to actions, actions change the app state, and
//! rendering is a pure function of that state (what the snapshot tests use).

pub mod app;
pub mod nodes;
pub mod view;

pub use app::{Action, App};
pub use nodes::{FeedRow, NodeSummary, Nodes, PriceLine};
