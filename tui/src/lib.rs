//! The shop manager's console. It sees nodes only through the [`Nodes`] trait, which
//! the node crate implements: this crate does not even depend on the node crate, so it
//! cannot open a store. Keys change the app state and send jobs to a worker thread that
//! owns the nodes; rendering is a pure function of that state (what the snapshot tests
//! use).

pub mod app;
pub mod nodes;
pub mod view;
pub mod worker;

#[cfg(test)]
mod fixture;

pub use app::{App, State, Tab};
pub use nodes::{
    Answer, CardDetails, Dashboard, Failure, FeedRow, HistoryRow, LinkRow, NodeSummary, Nodes,
    Operator, Period, PriceLine, Quote, QuoteLine, Report, ReportRow, Sale, TerminalSales,
    WalletCard,
};
