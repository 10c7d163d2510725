//! The dial-up link: iroh QUIC over a serial line, directly (a null-modem cable) or
//! through Hayes modems on the phone network. QUIC packets travel as line frames
//! ([`line`]); the connection is authenticated and encrypted exactly like the LAN link
//! and runs the same sync session, with batches sized for a slow line.
//!
//! - [`line`]: the serial line as an iroh custom transport.
//! - [`call`]: one QUIC connection and sync session over a connected line, and the
//!   modem calls around it (`dial`, `answer`).
//! - [`cli`]: `cardmesh sync dial PORT NUMBER` and `cardmesh sync answer PORT`.

pub mod call;
pub mod cli;
pub mod line;
