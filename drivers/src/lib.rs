//! Devices attached to a cardmesh node: card readers, the e-purse card protocol, SAMs
//! and the 3DES crypto they share. Knows nothing of replication.
//!
//! Code map:
//! - [`constants`]: type codes, AID and status words chosen for cardmesh, in one place.
//! - [`types`]: card number, terminal id, BCD date-time, MACs, PIN.
//! - [`crypto`], [`keys`]: 3DES diversification, session keys, MACs/TACs, KCVs; the
//!   key ceremony's pure part and per-card keys.
//! - [`persist`]: atomic, fsynced 0600 state files for simulated chips and sequences.
//! - [`apdu`]: APDU framing and the [`apdu::ApduProcessor`] trait of simulated chips.
//! - [`card`], [`psam`]: the virtual e-purse card and virtual PSAM (sans-IO).
//! - [`perso`]: primary issuance, what the issuer and a blank chip agree on and the
//!   issuer's side of personalizing one.
//! - [`reader`]: the blocking [`reader::CardReader`] trait with PC/SC, serial and
//!   in-process implementations; [`vpcd`] plugs a simulated chip into pcscd.
//! - [`sam`]: the [`sam::Sam`] trait, software SAM and PSAM client.
//! - [`epurse`]: typed e-purse operations over any reader and SAM.
//! - [`dispenser`]: fuelling points (IFSF-shaped), the [`dispenser::Dispenser`] trait,
//!   the DART-style driver and simulator, and the pure pump flow of a card fill.
//! - [`printer`]: ESC/POS receipts over a serial port (GB18030), and their decoder.
//! - [`station`]: a fuel station's devices as configured, checked as a whole.
//! - [`modem`]: dial-up modems (AT commands, line framing) and a modem simulator.

pub mod apdu;
pub mod card;
pub mod constants;
pub mod crypto;
pub mod dispenser;
pub mod epurse;
pub mod keys;
pub mod modem;
pub mod persist;
pub mod perso;
pub mod printer;
pub mod psam;
pub mod reader;
pub mod sam;
pub mod station;
pub mod types;
pub mod vpcd;
