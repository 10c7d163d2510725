//! Dial-up links: Hayes AT modems on serial lines.
//!
//! - [`at`]: the AT commands and result codes, and [`at::Modem`], a host's modem.
//! - [`line`]: frames on the raw line after `CONNECT` (sync word, length, CRC32).
//! - [`sim`]: a simulated phone exchange of modems at 33.6 kbit/s, with noise and drops.
//! - [`pty`]: pty pairs made by `socat`, to put a simulated modem on a real tty.

pub mod at;
pub mod line;
pub mod pty;
pub mod sim;
