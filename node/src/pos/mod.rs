//! The point of sale: every card operation of a cashier and a card desk, offline, on
//! one node. The decisions are pure functions ([`operators`], [`risk`], [`resolve`]);
//! [`terminal`] orchestrates card, SAM and store around them, [`cli`] is
//! `cardmesh pos`. Beyond the sale: [`credit`] gives money back (refund, reversal),
//! [`desk`] takes cards back and replaces them, [`receipt`] prints and reprints,
//! [`personalize`] turns blank chips into cards (primary issue) with numbers from
//! [`card_numbers`].
//!
//! Atomicity between card and node: before a money command goes to the card the
//! transaction is logged durably as an intent (`Body::Intent`, with the card counter it
//! will consume); after the card answers it is logged with its TAC (`Body::Card`). If
//! the node dies or the card is pulled in between, the next presentation of the card
//! settles the intent from the card's proof and log ([`resolve::decide`]): it is either
//! completed or voided. One card counter is one ledger entry (the store's counter index).

pub mod card_numbers;
pub mod cli;
pub mod credit;
pub mod desk;
pub mod operators;
pub mod personalize;
pub mod receipt;
pub mod resolve;
pub mod risk;
pub mod seq;
pub mod steps;
pub mod terminal;

pub use credit::{CreditRefusal, ManagerCode};
pub use desk::{CardReturn, Issuance, Replacement};
pub use operators::{Operation, OperatorRole, Session};
pub use personalize::{CardOrder, Personalized};
pub use terminal::{BasketLine, Pos, PosError, Receipt, Settled};
