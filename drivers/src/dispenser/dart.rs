//! The DART-style line protocol of a fuelling point (Wayne DART shape, see
//! `shared/reference/devices.md`): frames, blocks, CRC-16, escaping, packed BCD, and the
//! typed messages the driver and the simulator exchange.
//!
//! Frame: `ADR CTRL [TRANS LNG DATA]* CRC-L CRC-H ETX(03) SF(FA)`.
//! - ADR 0x50..=0x6F, the pump's address, in both directions.
//! - CTRL: high nibble the kind (2 POLL, 3 DATA, C ACK, 5 NAK, 7 EOT), low nibble a
//!   sequence number the reply echoes, so a late reply is never taken for a fresh one.
//! - CRC-16/ARC (DART's polynomial x^16+x^15+x^2+1) over ADR..last data byte, low byte
//!   first.
//! - Every byte from ADR to CRC-H that equals FA is sent as DLE(10) FA. Only FA is
//!   escaped, as DART does; reading left to right, DLE FA is a data FA, any other DLE is
//!   data, and an FA not after a DLE is the frame's SF (the byte before SF is always ETX).
//! - Unlike DART, every frame (POLL, ACK, NAK and EOT too) carries CRC and ETX, so one
//!   decoder checks all of them.
//!
//! Host to pump (DATA blocks): CD1 (01) command: 00 return status, 05 reset,
//! 06 authorize, 08 stop; CD2 (02) allowed nozzles (one byte each); CD3 (03) preset
//! volume, 4 bytes BCD ml; CD4 (04) preset amount, 4 bytes BCD fen; CD5 (05) prices,
//! 3 bytes BCD fen per litre for each allowed nozzle in CD2 order.
//! Pump to host, answering POLL with DATA: DC1 (01) pump status: 0 not programmed,
//! 1 reset, 2 authorized, 4 filling, 5 filling completed, 6 preset reached; DC2 (02)
//! volume and amount, 4+4 bytes BCD (ml, fen); DC3 (03) price (3 bytes BCD) and nozzle
//! (high nibble 1 = out, low nibble the number, 0 none); DC5 (05) alarm code, only while
//! the pump is in error. A DATA from the host is answered ACK if every block was applied
//! and NAK if the pump refused it (nothing applied). A frame for another address, or a
//! damaged one, gets no answer: the host times out.

use cardmesh_model::{Money, Quantity};
use crc::{CRC_16_ARC, Crc};
use thiserror::Error;

use super::point::{MAX_8_DIGITS, MAX_PRICE_FEN, NozzleNumber, PointState, PointStatus};

/// End of text, the byte before SF.
pub const ETX: u8 = 0x03;
/// Stop flag, the last byte of a frame.
pub const SF: u8 = 0xFA;
/// Escapes a data FA.
pub const DLE: u8 = 0x10;
/// Longest frame on the line, escapes included; longer input is garbage.
pub const MAX_FRAME: usize = 256;

const CRC16: Crc<u16> = Crc::<u16>::new(&CRC_16_ARC);

/// A pump address, 0x50..=0x6F.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Address(u8);

impl Address {
    /// The address `a`, if in 0x50..=0x6F.
    pub fn new(a: u8) -> Result<Address, DartError> {
        if (0x50..=0x6F).contains(&a) {
            Ok(Address(a))
        } else {
            Err(DartError::BadAddress(a))
        }
    }

    /// The address byte.
    pub fn get(self) -> u8 {
        self.0
    }
}

/// The kind of frame, CTRL's high nibble.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Host asks the pump for its news.
    Poll,
    /// Carries blocks.
    Data,
    /// The DATA was applied.
    Ack,
    /// The DATA was refused.
    Nak,
    /// Nothing to say.
    Eot,
}

impl Kind {
    fn nibble(self) -> u8 {
        match self {
            Kind::Poll => 0x2,
            Kind::Data => 0x3,
            Kind::Ack => 0xC,
            Kind::Nak => 0x5,
            Kind::Eot => 0x7,
        }
    }

    fn from_nibble(n: u8) -> Option<Kind> {
        Some(match n {
            0x2 => Kind::Poll,
            0x3 => Kind::Data,
            0xC => Kind::Ack,
            0x5 => Kind::Nak,
            0x7 => Kind::Eot,
            _ => return None,
        })
    }
}

/// One block: a transaction code and its data (at most 255 bytes, so that every block
/// can be encoded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    trans: u8,
    data: Vec<u8>,
}

impl Block {
    /// A block, if `data` fits LNG's one byte.
    pub fn new(trans: u8, data: Vec<u8>) -> Result<Block, DartError> {
        if data.len() > 255 {
            return Err(DartError::BlockTooLong(data.len()));
        }
        Ok(Block { trans, data })
    }

    /// TRANS.
    pub fn trans(&self) -> u8 {
        self.trans
    }

    /// DATA (LNG is its length).
    pub fn data(&self) -> &[u8] {
        &self.data
    }
}

/// One frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The pump's address.
    pub address: Address,
    /// The kind.
    pub kind: Kind,
    /// Sequence number 0..=15.
    pub seq: u8,
    /// Blocks (DATA frames only).
    pub blocks: Vec<Block>,
}

/// A frame that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DartError {
    /// The line went quiet before the frame's SF.
    #[error(
        "frame cut off after {got} bytes (no end flag): the line dropped or the pump stopped mid-frame"
    )]
    Truncated {
        /// Bytes received.
        got: usize,
    },
    /// Too short to hold ADR, CTRL, CRC and ETX.
    #[error("frame of {0} bytes is too short")]
    TooShort(usize),
    /// Longer than [`MAX_FRAME`].
    #[error("frame longer than {MAX_FRAME} bytes: noise on the line")]
    TooLong,
    /// The byte before SF is not ETX.
    #[error("frame ends with {0:#04x} instead of ETX")]
    MissingEtx(u8),
    /// A frame continues past its SF.
    #[error("{0} bytes after the frame's end flag")]
    Trailing(usize),
    /// CRC mismatch.
    #[error("CRC {got:#06x} does not match {expected:#06x}: the frame was damaged on the line")]
    Crc {
        /// Computed.
        expected: u16,
        /// Received.
        got: u16,
    },
    /// Address outside 0x50..=0x6F.
    #[error("address {0:#04x} is not a pump address (0x50 to 0x6f)")]
    BadAddress(u8),
    /// Unknown CTRL kind.
    #[error("unknown control byte {0:#04x}")]
    BadControl(u8),
    /// A non-DATA frame carries bytes, or a block's LNG runs past the frame.
    #[error("block {trans:#04x} declares {declared} bytes but {available} remain")]
    BlockOverrun {
        /// The block's TRANS (0 if the frame carried bytes it must not).
        trans: u8,
        /// LNG.
        declared: usize,
        /// Bytes left.
        available: usize,
    },
    /// Block data longer than LNG can count.
    #[error("block data of {0} bytes is longer than 255")]
    BlockTooLong(usize),
    /// A block's data is not what its TRANS requires.
    #[error("block {trans:#04x} is malformed: {why}")]
    BadBlock {
        /// TRANS.
        trans: u8,
        /// What is wrong.
        why: &'static str,
    },
}

/// Encodes a frame.
pub fn encode(f: &Frame) -> Vec<u8> {
    let mut body = vec![f.address.0, (f.kind.nibble() << 4) | (f.seq & 0x0F)];
    for b in &f.blocks {
        body.push(b.trans);
        // Block::new keeps data within 255 bytes.
        body.push(b.data.len() as u8);
        body.extend_from_slice(&b.data);
    }
    let crc = CRC16.checksum(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    let mut out = Vec::with_capacity(body.len() + 4);
    for b in body {
        if b == SF {
            out.push(DLE);
        }
        out.push(b);
    }
    out.push(ETX);
    out.push(SF);
    out
}

/// Decodes exactly one frame (ending with its SF). Never panics.
pub fn decode(raw: &[u8]) -> Result<Frame, DartError> {
    let mut body = Vec::with_capacity(raw.len());
    let mut end = None;
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            DLE if raw.get(i + 1) == Some(&SF) => {
                body.push(SF);
                i += 2;
            }
            SF => {
                end = Some(i);
                break;
            }
            b => {
                body.push(b);
                i += 1;
            }
        }
    }
    let Some(end) = end else {
        return Err(DartError::Truncated { got: raw.len() });
    };
    if end + 1 != raw.len() {
        return Err(DartError::Trailing(raw.len() - end - 1));
    }
    if raw.len() > MAX_FRAME {
        return Err(DartError::TooLong);
    }
    // body now holds ADR..CRC-H ETX.
    if body.len() < 5 {
        return Err(DartError::TooShort(raw.len()));
    }
    let etx = body.pop().unwrap_or_default();
    if etx != ETX {
        return Err(DartError::MissingEtx(etx));
    }
    let n = body.len();
    let got = u16::from_le_bytes([body[n - 2], body[n - 1]]);
    body.truncate(n - 2);
    let expected = CRC16.checksum(&body);
    if got != expected {
        return Err(DartError::Crc { expected, got });
    }
    let address = Address::new(body[0])?;
    let kind = Kind::from_nibble(body[1] >> 4).ok_or(DartError::BadControl(body[1]))?;
    let seq = body[1] & 0x0F;
    let mut rest = &body[2..];
    if kind != Kind::Data && !rest.is_empty() {
        return Err(DartError::BlockOverrun {
            trans: 0,
            declared: 0,
            available: rest.len(),
        });
    }
    let mut blocks = Vec::new();
    while !rest.is_empty() {
        let trans = rest[0];
        let declared = usize::from(*rest.get(1).ok_or(DartError::BlockOverrun {
            trans,
            declared: 1,
            available: 0,
        })?);
        let available = rest.len() - 2;
        if declared > available {
            return Err(DartError::BlockOverrun {
                trans,
                declared,
                available,
            });
        }
        blocks.push(Block {
            trans,
            data: rest[2..2 + declared].to_vec(),
        });
        rest = &rest[2 + declared..];
    }
    Ok(Frame {
        address,
        kind,
        seq,
        blocks,
    })
}

/// Splits a byte stream into raw frames: feed bytes as they arrive and take each frame
/// (up to and including its SF) as it completes. Garbage longer than [`MAX_FRAME`] is
/// dropped so the splitter always resynchronises on the next SF.
#[derive(Debug, Default)]
pub struct Splitter {
    buf: Vec<u8>,
    after_dle: bool,
    overflowed: bool,
}

impl Splitter {
    /// An empty splitter.
    pub fn new() -> Splitter {
        Splitter::default()
    }

    /// Feeds one byte; returns a complete raw frame, or `Err(TooLong)` once for a run of
    /// garbage that overflowed.
    pub fn push(&mut self, b: u8) -> Option<Result<Vec<u8>, DartError>> {
        let frame_end = b == SF && !self.after_dle;
        self.after_dle = b == DLE;
        if self.buf.len() < MAX_FRAME {
            self.buf.push(b);
        } else {
            self.overflowed = true;
        }
        if !frame_end {
            return None;
        }
        let raw = std::mem::take(&mut self.buf);
        if std::mem::take(&mut self.overflowed) {
            return Some(Err(DartError::TooLong));
        }
        Some(Ok(raw))
    }

    /// Bytes of an unfinished frame held.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Drops an unfinished frame (the line went quiet), returning how long it was.
    pub fn clear(&mut self) -> usize {
        self.after_dle = false;
        self.overflowed = false;
        std::mem::take(&mut self.buf).len()
    }
}

/// Packs `v` as `n` bytes of BCD, most significant digit first.
pub fn to_bcd(v: i64, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    let mut v = v.max(0);
    for byte in out.iter_mut().rev() {
        let lo = (v % 10) as u8;
        v /= 10;
        let hi = (v % 10) as u8;
        v /= 10;
        *byte = (hi << 4) | lo;
    }
    out
}

/// Reads packed BCD; `None` if a nibble is not a digit or the number does not fit an
/// i64 (a block from the line may be up to 255 bytes long).
pub fn from_bcd(bytes: &[u8]) -> Option<i64> {
    bytes.iter().try_fold(0i64, |acc, b| {
        let (hi, lo) = (b >> 4, b & 0x0F);
        if hi > 9 || lo > 9 {
            return None;
        }
        acc.checked_mul(100)?
            .checked_add(i64::from(hi) * 10 + i64::from(lo))
    })
}

/// Transaction codes.
pub mod trans {
    /// CD1 command / DC1 status.
    pub const COMMAND: u8 = 0x01;
    /// CD2 allowed nozzles / DC2 volume and amount.
    pub const NOZZLES: u8 = 0x02;
    /// CD3 preset volume / DC3 price and nozzle.
    pub const PRESET_VOLUME: u8 = 0x03;
    /// CD4 preset amount.
    pub const PRESET_AMOUNT: u8 = 0x04;
    /// CD5 prices / DC5 alarm.
    pub const PRICES: u8 = 0x05;
    /// DC2.
    pub const VOLUME_AMOUNT: u8 = 0x02;
    /// DC3.
    pub const PRICE_NOZZLE: u8 = 0x03;
    /// DC5.
    pub const ALARM: u8 = 0x05;
}

/// A CD1 command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// 00.
    ReturnStatus,
    /// 05.
    Reset,
    /// 06.
    Authorize,
    /// 08.
    Stop,
}

impl Command {
    /// Its code.
    pub fn code(self) -> u8 {
        match self {
            Command::ReturnStatus => 0x00,
            Command::Reset => 0x05,
            Command::Authorize => 0x06,
            Command::Stop => 0x08,
        }
    }

    /// The command for `code`.
    pub fn from_code(code: u8) -> Option<Command> {
        Some(match code {
            0x00 => Command::ReturnStatus,
            0x05 => Command::Reset,
            0x06 => Command::Authorize,
            0x08 => Command::Stop,
            _ => return None,
        })
    }

    /// The CD1 block.
    pub fn block(self) -> Block {
        Block {
            trans: trans::COMMAND,
            data: vec![self.code()],
        }
    }
}

/// The DART pump status code of an IFSF state (`reset`: armed for AUTHORIZE).
pub fn status_code(state: PointState, reset: bool) -> u8 {
    match state {
        PointState::Idle | PointState::Calling | PointState::Error => u8::from(reset),
        PointState::Authorized => 2,
        PointState::Filling => 4,
        PointState::Completed => 5,
    }
}

/// The DC blocks a pump sends for its status.
pub fn status_blocks(s: &PointStatus, reset: bool) -> Vec<Block> {
    let nozio = s
        .nozzle
        .map_or(0, |n| (u8::from(s.nozzle_out) << 4) | n.get());
    let mut dc3 = to_bcd(s.price.map_or(0, Money::fen), 3);
    dc3.push(nozio);
    let mut dc2 = to_bcd(s.volume.milli(), 4);
    dc2.extend(to_bcd(s.amount.fen(), 4));
    let mut blocks = vec![
        Block {
            trans: trans::COMMAND,
            data: vec![status_code(s.state, reset)],
        },
        Block {
            trans: trans::PRICE_NOZZLE,
            data: dc3,
        },
        Block {
            trans: trans::VOLUME_AMOUNT,
            data: dc2,
        },
    ];
    if let Some(a) = s.alarm {
        blocks.push(Block {
            trans: trans::ALARM,
            data: vec![a],
        });
    }
    blocks
}

fn bad(trans: u8, why: &'static str) -> DartError {
    DartError::BadBlock { trans, why }
}

/// Reads a pump's DC blocks back into a status, mapping DART codes to IFSF states.
pub fn parse_status(blocks: &[Block]) -> Result<PointStatus, DartError> {
    let mut code = None;
    let mut s = PointStatus {
        state: PointState::Idle,
        nozzle: None,
        nozzle_out: false,
        price: None,
        volume: Quantity::from_milli(0),
        amount: Money::ZERO,
        alarm: None,
    };
    for b in blocks {
        match (b.trans, b.data.as_slice()) {
            (trans::COMMAND, [c]) => code = Some(*c),
            (trans::VOLUME_AMOUNT, d) if d.len() == 8 => {
                let vol = from_bcd(&d[..4]).ok_or(bad(b.trans, "volume is not BCD"))?;
                let amo = from_bcd(&d[4..]).ok_or(bad(b.trans, "amount is not BCD"))?;
                s.volume = Quantity::from_milli(vol);
                s.amount = Money::from_fen(amo);
            }
            (trans::PRICE_NOZZLE, [p0, p1, p2, nozio]) => {
                let p = from_bcd(&[*p0, *p1, *p2]).ok_or(bad(b.trans, "price is not BCD"))?;
                s.price = (p > 0).then_some(Money::from_fen(p));
                if nozio & 0x0F != 0 {
                    s.nozzle = Some(
                        NozzleNumber::new(nozio & 0x0F)
                            .map_err(|_| bad(b.trans, "nozzle number out of range"))?,
                    );
                    s.nozzle_out = nozio >> 4 == 1;
                }
            }
            (trans::ALARM, [a]) => s.alarm = Some(*a),
            (t, _) => return Err(bad(t, "unexpected block or length in a pump status")),
        }
    }
    let code = code.ok_or(bad(trans::COMMAND, "status block missing"))?;
    s.state = if s.alarm.is_some() {
        PointState::Error
    } else {
        match code {
            0 | 1 if s.nozzle_out => PointState::Calling,
            0 | 1 => PointState::Idle,
            2 => PointState::Authorized,
            4 => PointState::Filling,
            5 | 6 => PointState::Completed,
            _ => return Err(bad(trans::COMMAND, "unknown pump status code")),
        }
    };
    Ok(s)
}

/// A host command frame's content, as the pump reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostData {
    /// CD1 commands in order.
    pub commands: Vec<Command>,
    /// CD2.
    pub nozzles: Vec<NozzleNumber>,
    /// CD5, one per CD2 nozzle.
    pub prices: Vec<Money>,
    /// CD3, ml.
    pub preset_volume: Option<Quantity>,
    /// CD4, fen.
    pub preset_amount: Option<Money>,
}

/// Reads a host DATA frame's blocks.
pub fn parse_host_data(blocks: &[Block]) -> Result<HostData, DartError> {
    let mut d = HostData::default();
    for b in blocks {
        match b.trans {
            trans::COMMAND => {
                let [c] = b.data[..] else {
                    return Err(bad(b.trans, "a command is one byte"));
                };
                d.commands
                    .push(Command::from_code(c).ok_or(bad(b.trans, "unknown command"))?);
            }
            trans::NOZZLES => {
                for n in &b.data {
                    d.nozzles.push(
                        NozzleNumber::new(*n).map_err(|_| bad(b.trans, "nozzle out of range"))?,
                    );
                }
            }
            trans::PRESET_VOLUME | trans::PRESET_AMOUNT => {
                if b.data.len() != 4 {
                    return Err(bad(b.trans, "a preset is 4 BCD bytes"));
                }
                let v = from_bcd(&b.data).ok_or(bad(b.trans, "preset is not BCD"))?;
                if b.trans == trans::PRESET_VOLUME {
                    d.preset_volume = Some(Quantity::from_milli(v));
                } else {
                    d.preset_amount = Some(Money::from_fen(v));
                }
            }
            trans::PRICES => {
                if b.data.len() % 3 != 0 {
                    return Err(bad(b.trans, "prices are 3 BCD bytes each"));
                }
                for p in b.data.chunks(3) {
                    d.prices.push(Money::from_fen(
                        from_bcd(p).ok_or(bad(b.trans, "price is not BCD"))?,
                    ));
                }
            }
            t => return Err(bad(t, "unknown transaction")),
        }
    }
    Ok(d)
}

/// The CD blocks of an authorization: prices, nozzles, preset, then AUTHORIZE.
pub fn authorize_blocks(
    prices: &[(NozzleNumber, Money)],
    preset: super::point::Preset,
) -> Vec<Block> {
    let mut nozzles = Vec::new();
    let mut pr = Vec::new();
    for (n, p) in prices {
        nozzles.push(n.get());
        pr.extend(to_bcd(p.fen().clamp(0, MAX_PRICE_FEN), 3));
    }
    let preset_block = match preset {
        super::point::Preset::Volume(q) => Block {
            trans: trans::PRESET_VOLUME,
            data: to_bcd(q.milli().clamp(0, MAX_8_DIGITS), 4),
        },
        super::point::Preset::Amount(m) => Block {
            trans: trans::PRESET_AMOUNT,
            data: to_bcd(m.fen().clamp(0, MAX_8_DIGITS), 4),
        },
    };
    vec![
        Block {
            trans: trans::NOZZLES,
            data: nozzles,
        },
        Block {
            trans: trans::PRICES,
            data: pr,
        },
        preset_block,
        Command::Authorize.block(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(blocks: Vec<Block>) -> Frame {
        Frame {
            address: Address::new(0x51).unwrap(),
            kind: Kind::Data,
            seq: 3,
            blocks,
        }
    }

    #[test]
    fn crc_is_crc16_arc() {
        // The catalogue check value of CRC-16/ARC.
        assert_eq!(CRC16.checksum(b"123456789"), 0xBB3D);
    }

    #[test]
    fn fa_in_data_is_escaped_and_comes_back() {
        let f = frame(vec![Block {
            trans: 0x05,
            data: vec![0xFA, 0x10, 0xFA, 0x10],
        }]);
        let raw = encode(&f);
        assert_eq!(raw.iter().filter(|&&b| b == SF).count(), 3);
        assert_eq!(&raw[raw.len() - 2..], &[ETX, SF]);
        assert_eq!(decode(&raw).unwrap(), f);
        let mut sp = Splitter::new();
        let out: Vec<_> = raw.iter().filter_map(|b| sp.push(*b)).collect();
        assert_eq!(out, vec![Ok(raw.clone())]);
    }

    #[test]
    fn damaged_frames_are_typed_errors() {
        let raw = encode(&frame(vec![Command::Authorize.block()]));
        for cut in 0..raw.len() {
            assert_eq!(
                decode(&raw[..cut]),
                Err(DartError::Truncated { got: cut }),
                "cut at {cut}"
            );
        }
        let mut flipped = raw.clone();
        flipped[3] ^= 0x01;
        assert!(matches!(decode(&flipped), Err(DartError::Crc { .. })));
        let mut no_etx = raw.clone();
        let n = no_etx.len();
        no_etx[n - 2] = 0x04;
        assert_eq!(decode(&no_etx), Err(DartError::MissingEtx(0x04)));
        let mut long = raw.clone();
        long.push(0x00);
        assert_eq!(decode(&long), Err(DartError::Trailing(1)));
        assert_eq!(decode(&[ETX, SF]), Err(DartError::TooShort(2)));
        let bad_adr = encode(&Frame {
            address: Address(0x20),
            kind: Kind::Poll,
            seq: 0,
            blocks: vec![],
        });
        assert_eq!(decode(&bad_adr), Err(DartError::BadAddress(0x20)));
    }

    #[test]
    fn status_roundtrips_through_dc_blocks() {
        let s = PointStatus {
            state: PointState::Filling,
            nozzle: Some(NozzleNumber::new(2).unwrap()),
            nozzle_out: true,
            price: Some(Money::from_fen(768)),
            volume: Quantity::from_milli(12_345),
            amount: Money::from_fen(9_481),
            alarm: None,
        };
        assert_eq!(parse_status(&status_blocks(&s, false)).unwrap(), s);
        let calling = PointStatus {
            state: PointState::Calling,
            price: None,
            volume: Quantity::from_milli(0),
            amount: Money::ZERO,
            ..s.clone()
        };
        assert_eq!(
            parse_status(&status_blocks(&calling, true)).unwrap(),
            calling
        );
        let err = PointStatus {
            state: PointState::Error,
            alarm: Some(0x31),
            ..s
        };
        assert_eq!(parse_status(&status_blocks(&err, false)).unwrap(), err);
    }

    #[test]
    fn a_block_longer_than_lng_can_count_is_refused() {
        assert_eq!(
            Block::new(1, vec![0; 256]),
            Err(DartError::BlockTooLong(256))
        );
        assert_eq!(Block::new(1, vec![0; 255]).unwrap().data().len(), 255);
    }

    #[test]
    fn bcd_roundtrips() {
        assert_eq!(to_bcd(1234, 3), vec![0x00, 0x12, 0x34]);
        assert_eq!(from_bcd(&[0x00, 0x12, 0x34]), Some(1234));
        assert_eq!(from_bcd(&[0x1A]), None);
        assert_eq!(from_bcd(&[0x99; 10]), None, "20 digits do not fit an i64");
        assert_eq!(from_bcd(&[0x09; 9]), Some(9_0909_0909_0909_0909));
    }

    fn block() -> impl Strategy<Value = Block> {
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(trans, data)| Block { trans, data })
    }

    proptest! {
        #[test]
        fn decode_never_panics(raw in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&raw);
            let mut sp = Splitter::new();
            for b in &raw {
                if let Some(Ok(f)) = sp.push(*b) {
                    let _ = decode(&f);
                }
            }
        }

        #[test]
        fn frames_roundtrip_through_the_splitter(
            blocks in prop::collection::vec(block(), 0..4),
            adr in 0x50u8..=0x6F,
            seq in 0u8..16,
            noise in prop::collection::vec(any::<u8>(), 0..20),
        ) {
            let f = Frame { address: Address(adr), kind: Kind::Data, seq, blocks };
            let raw = encode(&f);
            prop_assert_eq!(decode(&raw), Ok(f.clone()));
            // The tail of a damaged frame before this one costs one error, then the
            // frame comes.
            let mut sp = Splitter::new();
            let mut line = noise.clone();
            line.extend_from_slice(&[ETX, SF]);
            line.extend_from_slice(&raw);
            let frames: Vec<_> = line.iter().filter_map(|b| sp.push(*b)).collect();
            let last = frames.last().cloned().unwrap().unwrap();
            prop_assert_eq!(decode(&last), Ok(f));
        }

        #[test]
        fn any_single_bit_flip_is_caught(seq in 0u8..16, pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let raw = encode(&frame(vec![Command::Stop.block(), Block { trans: 3, data: to_bcd(seq.into(), 4) }]));
            let mut bad = raw.clone();
            let i = pos.index(raw.len());
            bad[i] ^= 1 << bit;
            prop_assert!(decode(&bad).is_err());
        }
    }
}
