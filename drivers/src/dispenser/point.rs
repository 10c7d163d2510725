//! The IFSF-shaped fuelling point: one pump position with its nozzles, as a pure state
//! machine (no I/O, no clock). The simulator runs one as the pump's brain; the drivers
//! report what a real pump says in the same [`PointState`] terms.
//!
//! The money rule lives here: the amount of a fill is always `price at authorization x
//! delivered volume` (rounded as [`Money::times_quantity`] rounds), and a preset is
//! never overrun.

use cardmesh_model::{Money, Quantity};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Largest value an 8-digit BCD field carries: the volume (ml) and amount (fen) limit.
pub const MAX_8_DIGITS: i64 = 99_999_999;
/// Largest unit price a 6-digit BCD field carries, in fen per litre.
pub const MAX_PRICE_FEN: i64 = 999_999;

/// A nozzle of a fuelling point, numbered 1..=8 (IFSF nozzles 0x11..0x18).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct NozzleNumber(u8);

impl NozzleNumber {
    /// The nozzle numbered `n`, if 1..=8.
    pub fn new(n: u8) -> Result<NozzleNumber, PointError> {
        if (1..=8).contains(&n) {
            Ok(NozzleNumber(n))
        } else {
            Err(PointError::BadNozzle(n))
        }
    }

    /// The number, 1..=8.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for NozzleNumber {
    type Error = PointError;
    fn try_from(n: u8) -> Result<NozzleNumber, PointError> {
        NozzleNumber::new(n)
    }
}

impl From<NozzleNumber> for u8 {
    fn from(n: NozzleNumber) -> u8 {
        n.0
    }
}

/// How much one authorization may deliver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Preset {
    /// Stop when the amount reaches this many fen.
    Amount(Money),
    /// Stop when the volume reaches this many millilitres.
    Volume(Quantity),
}

impl Preset {
    fn check(self) -> Result<Preset, PointError> {
        let v = match self {
            Preset::Amount(m) => m.fen(),
            Preset::Volume(q) => q.milli(),
        };
        if (1..=MAX_8_DIGITS).contains(&v) {
            Ok(self)
        } else {
            Err(PointError::BadPreset(v))
        }
    }
}

/// The unit price one nozzle may deliver at, in fen per litre.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NozzlePrice {
    /// The nozzle allowed to deliver.
    pub nozzle: NozzleNumber,
    /// Its price per litre, fixed for the whole fill.
    pub price: Money,
}

/// An authorization as the pump receives it: which nozzles may deliver, at what price,
/// up to what preset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorization {
    /// Allowed nozzles and their prices (at least one).
    pub prices: Vec<NozzlePrice>,
    /// The limit of this fill.
    pub preset: Preset,
}

/// The IFSF states of a fuelling point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PointState {
    /// Nozzles in, nothing authorized.
    Idle,
    /// A nozzle is out, waiting for an authorization.
    Calling,
    /// Authorized, no fuel delivered yet.
    Authorized,
    /// Delivering.
    Filling,
    /// The fill ended (nozzle hung up, stopped, or preset reached); its totals stand
    /// until the point is reset.
    Completed,
    /// The pump reported a fault; the totals of an interrupted fill stand.
    Error,
}

impl std::fmt::Display for PointState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PointState::Idle => "idle",
            PointState::Calling => "calling",
            PointState::Authorized => "authorized",
            PointState::Filling => "filling",
            PointState::Completed => "completed",
            PointState::Error => "error",
        })
    }
}

/// A command or event refused in the point's current state.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PointError {
    /// Nozzle numbers run 1..=8.
    #[error("nozzle {0} does not exist: nozzles are numbered 1 to 8")]
    BadNozzle(u8),
    /// The point has no such nozzle.
    #[error("this fuelling point has no nozzle {0}")]
    NoSuchNozzle(u8),
    /// Not allowed now.
    #[error("{what} is not allowed while the fuelling point is {state:?}")]
    NotNow {
        /// The command or event.
        what: &'static str,
        /// The state it arrived in.
        state: PointState,
    },
    /// AUTHORIZE needs a RESET after the previous fill or power-up.
    #[error("authorize refused: the fuelling point must be reset first")]
    NotReset,
    /// The lifted nozzle is not among the authorized ones.
    #[error("nozzle {0} is not authorized for this fill")]
    NozzleNotAuthorized(u8),
    /// A price outside 1..=999999 fen per litre.
    #[error("price {0} fen per litre is out of range (1 to 999999)")]
    BadPrice(i64),
    /// A preset outside 1..=99999999.
    #[error("preset {0} is out of range (1 to 99999999)")]
    BadPreset(i64),
    /// An authorization naming no nozzle.
    #[error("authorization names no nozzle")]
    NoNozzle,
}

/// What a fuelling point shows: the state and the current (or last) fill.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointStatus {
    /// IFSF state.
    pub state: PointState,
    /// The nozzle lifted, or the one the last fill used.
    pub nozzle: Option<NozzleNumber>,
    /// Whether that nozzle is out of its holster.
    pub nozzle_out: bool,
    /// Price of the current fill, fen per litre.
    pub price: Option<Money>,
    /// Delivered volume.
    pub volume: Quantity,
    /// Delivered amount at the fill's price.
    pub amount: Money,
    /// The pump's alarm code, in [`PointState::Error`].
    pub alarm: Option<u8>,
}

/// One fuelling point: nozzles 1..=`nozzles`, the authorization and the fill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuellingPoint {
    nozzles: u8,
    state: PointState,
    /// RESET seen since the last fill or power-up (DART: AUTHORIZE needs it).
    reset: bool,
    lifted: Option<NozzleNumber>,
    auth: Option<Authorization>,
    fill_nozzle: Option<NozzleNumber>,
    price: Option<Money>,
    volume: Quantity,
    alarm: Option<u8>,
}

impl FuellingPoint {
    /// A point with `nozzles` nozzles (1..=8), idle and not yet reset.
    pub fn new(nozzles: u8) -> Result<FuellingPoint, PointError> {
        NozzleNumber::new(nozzles)?;
        Ok(FuellingPoint {
            nozzles,
            state: PointState::Idle,
            reset: false,
            lifted: None,
            auth: None,
            fill_nozzle: None,
            price: None,
            volume: Quantity::from_milli(0),
            alarm: None,
        })
    }

    /// The IFSF state.
    pub fn state(&self) -> PointState {
        self.state
    }

    /// Whether AUTHORIZE would be accepted as far as the reset rule goes.
    pub fn is_reset(&self) -> bool {
        self.reset
    }

    /// The status a pump reports.
    pub fn status(&self) -> PointStatus {
        PointStatus {
            state: self.state,
            nozzle: self.lifted.or(self.fill_nozzle),
            nozzle_out: self.lifted.is_some(),
            price: self.price,
            volume: self.volume,
            amount: self.amount(),
            alarm: self.alarm,
        }
    }

    /// The amount of the fill: price at authorization times volume.
    pub fn amount(&self) -> Money {
        match self.price {
            // Bounded: price <= 999999 fen and volume <= 99999999 ml fit easily in i64.
            Some(p) => p.times_quantity(self.volume).unwrap_or(Money::ZERO),
            None => Money::ZERO,
        }
    }

    fn not_now(&self, what: &'static str) -> PointError {
        PointError::NotNow {
            what,
            state: self.state,
        }
    }

    fn nozzle(&self, n: u8) -> Result<NozzleNumber, PointError> {
        let nz = NozzleNumber::new(n)?;
        if n > self.nozzles {
            return Err(PointError::NoSuchNozzle(n));
        }
        Ok(nz)
    }

    /// RESET: ends a completed or failed fill (its totals are cleared), cancels an
    /// authorization that has not delivered, and arms the point for AUTHORIZE.
    pub fn reset(&mut self) -> Result<(), PointError> {
        if self.state == PointState::Filling {
            return Err(self.not_now("reset"));
        }
        self.reset = true;
        self.auth = None;
        self.fill_nozzle = None;
        self.price = None;
        self.volume = Quantity::from_milli(0);
        self.alarm = None;
        self.state = if self.lifted.is_some() {
            PointState::Calling
        } else {
            PointState::Idle
        };
        Ok(())
    }

    /// AUTHORIZE with prices and a preset. If a nozzle is already out it must be among
    /// the allowed ones, and its price is fixed now.
    pub fn authorize(&mut self, auth: Authorization) -> Result<(), PointError> {
        if !matches!(self.state, PointState::Idle | PointState::Calling) {
            return Err(self.not_now("authorize"));
        }
        if !self.reset {
            return Err(PointError::NotReset);
        }
        if auth.prices.is_empty() {
            return Err(PointError::NoNozzle);
        }
        for p in &auth.prices {
            self.nozzle(p.nozzle.get())?;
            if !(1..=MAX_PRICE_FEN).contains(&p.price.fen()) {
                return Err(PointError::BadPrice(p.price.fen()));
            }
        }
        auth.preset.check()?;
        if let Some(n) = self.lifted {
            let p = price_for(&auth, n).ok_or(PointError::NozzleNotAuthorized(n.get()))?;
            self.fill_nozzle = Some(n);
            self.price = Some(p);
        }
        self.auth = Some(auth);
        self.reset = false;
        self.state = PointState::Authorized;
        Ok(())
    }

    /// The customer lifts nozzle `n`.
    pub fn lift(&mut self, n: u8) -> Result<(), PointError> {
        let nz = self.nozzle(n)?;
        if self.lifted.is_some() {
            return Err(self.not_now("lifting a second nozzle"));
        }
        match self.state {
            PointState::Idle => self.state = PointState::Calling,
            PointState::Authorized => {
                let auth = self.auth.as_ref().ok_or_else(|| self.not_now("lift"))?;
                let p = price_for(auth, nz).ok_or(PointError::NozzleNotAuthorized(n))?;
                self.fill_nozzle = Some(nz);
                self.price = Some(p);
            }
            // A lift after a fill ended does not start another one.
            PointState::Completed | PointState::Error => {}
            PointState::Calling | PointState::Filling => return Err(self.not_now("lift")),
        }
        self.lifted = Some(nz);
        Ok(())
    }

    /// The customer hangs the nozzle up: a fill (even of nothing) is completed.
    pub fn hang_up(&mut self) -> Result<(), PointError> {
        if self.lifted.take().is_none() {
            return Err(self.not_now("hanging up with no nozzle out"));
        }
        self.state = match self.state {
            PointState::Calling => PointState::Idle,
            PointState::Authorized | PointState::Filling => PointState::Completed,
            s => s,
        };
        Ok(())
    }

    /// Fuel flows: delivers up to `ml` millilitres, less if the preset is reached (the
    /// fill then completes). Returns what was delivered.
    pub fn pump(&mut self, ml: i64) -> Result<Quantity, PointError> {
        let (Some(price), Some(auth)) = (self.price, self.auth.as_ref()) else {
            return Err(self.not_now("delivering fuel"));
        };
        if self.lifted.is_none()
            || !matches!(self.state, PointState::Authorized | PointState::Filling)
        {
            return Err(self.not_now("delivering fuel"));
        }
        let limit = match auth.preset {
            Preset::Volume(q) => q.milli(),
            Preset::Amount(m) => max_volume_for(m, price),
        };
        let room = (limit - self.volume.milli()).max(0);
        let got = ml.clamp(0, room);
        self.volume = Quantity::from_milli(self.volume.milli() + got);
        self.state = if self.volume.milli() >= limit {
            PointState::Completed
        } else if self.volume.milli() > 0 {
            PointState::Filling
        } else {
            self.state
        };
        Ok(Quantity::from_milli(got))
    }

    /// STOP from the host: delivery ends where it is.
    pub fn stop(&mut self) -> Result<(), PointError> {
        match self.state {
            PointState::Authorized | PointState::Filling => {
                self.state = PointState::Completed;
                Ok(())
            }
            _ => Err(self.not_now("stop")),
        }
    }

    /// The pump faults with alarm `code`: delivery ends, the totals stand.
    pub fn fault(&mut self, code: u8) {
        self.alarm = Some(code);
        self.state = PointState::Error;
    }
}

fn price_for(auth: &Authorization, n: NozzleNumber) -> Option<Money> {
    auth.prices.iter().find(|p| p.nozzle == n).map(|p| p.price)
}

/// The largest volume (ml) whose amount at `price` stays within `amount`, with the
/// amount rounded half up to the fen: `price * v + 500 < (amount + 1) * 1000`.
pub fn max_volume_for(amount: Money, price: Money) -> i64 {
    let p = i128::from(price.fen().max(1));
    let v = (i128::from(amount.fen()) * 1000 + 499) / p;
    v.clamp(0, i128::from(MAX_8_DIGITS)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nz(n: u8) -> NozzleNumber {
        NozzleNumber::new(n).unwrap()
    }

    fn auth(price: i64, preset: Preset) -> Authorization {
        Authorization {
            prices: vec![
                NozzlePrice {
                    nozzle: nz(1),
                    price: Money::from_fen(price),
                },
                NozzlePrice {
                    nozzle: nz(2),
                    price: Money::from_fen(price + 100),
                },
            ],
            preset,
        }
    }

    #[test]
    fn a_full_fill_goes_through_the_ifsf_states() {
        let mut fp = FuellingPoint::new(2).unwrap();
        fp.lift(2).unwrap();
        assert_eq!(fp.state(), PointState::Calling);
        assert_eq!(
            fp.authorize(auth(750, Preset::Amount(Money::from_fen(20_000)))),
            Err(PointError::NotReset)
        );
        fp.reset().unwrap();
        assert_eq!(fp.state(), PointState::Calling);
        fp.authorize(auth(750, Preset::Amount(Money::from_fen(20_000))))
            .unwrap();
        assert_eq!(fp.state(), PointState::Authorized);
        fp.pump(10_000).unwrap();
        assert_eq!(fp.state(), PointState::Filling);
        fp.hang_up().unwrap();
        let s = fp.status();
        assert_eq!(s.state, PointState::Completed);
        assert_eq!(s.nozzle, Some(nz(2)));
        assert!(!s.nozzle_out);
        // Nozzle 2 is priced 8.50 a litre: 10 litres.
        assert_eq!(s.amount, Money::from_fen(8_500));
        assert!(!fp.is_reset());
        fp.reset().unwrap();
        assert_eq!(fp.state(), PointState::Idle);
        assert_eq!(fp.status().volume, Quantity::from_milli(0));
    }

    #[test]
    fn presets_stop_the_fill_exactly() {
        let mut fp = FuellingPoint::new(1).unwrap();
        fp.reset().unwrap();
        let a = Authorization {
            prices: vec![NozzlePrice {
                nozzle: nz(1),
                price: Money::from_fen(733),
            }],
            preset: Preset::Volume(Quantity::from_milli(5_000)),
        };
        fp.authorize(a).unwrap();
        fp.lift(1).unwrap();
        assert_eq!(fp.pump(4_000).unwrap().milli(), 4_000);
        assert_eq!(fp.pump(4_000).unwrap().milli(), 1_000);
        assert_eq!(fp.state(), PointState::Completed);
        assert!(fp.pump(1).is_err());
    }

    #[test]
    fn stop_and_fault_keep_what_was_delivered() {
        let mut fp = FuellingPoint::new(1).unwrap();
        fp.reset().unwrap();
        fp.lift(1).unwrap();
        fp.authorize(auth(800, Preset::Amount(Money::from_fen(10_000))))
            .unwrap_err();
        fp.authorize(Authorization {
            prices: vec![NozzlePrice {
                nozzle: nz(1),
                price: Money::from_fen(800),
            }],
            preset: Preset::Amount(Money::from_fen(10_000)),
        })
        .unwrap();
        fp.pump(2_500).unwrap();
        fp.stop().unwrap();
        assert_eq!(fp.status().amount, Money::from_fen(2_000));
        assert!(fp.pump(100).is_err());
        fp.fault(0x21);
        let s = fp.status();
        assert_eq!((s.state, s.alarm), (PointState::Error, Some(0x21)));
        assert_eq!(s.volume.milli(), 2_500);
        fp.reset().unwrap();
        assert_eq!(fp.state(), PointState::Calling);
        assert_eq!(fp.status().alarm, None);
    }

    #[test]
    fn refusals_are_typed() {
        let mut fp = FuellingPoint::new(2).unwrap();
        assert_eq!(fp.lift(3), Err(PointError::NoSuchNozzle(3)));
        assert_eq!(fp.lift(9), Err(PointError::BadNozzle(9)));
        assert!(fp.hang_up().is_err());
        assert!(fp.stop().is_err());
        fp.reset().unwrap();
        let mut a = auth(0, Preset::Volume(Quantity::from_milli(1)));
        assert_eq!(
            fp.clone().authorize(a.clone()),
            Err(PointError::BadPrice(0))
        );
        a.prices[0].price = Money::from_fen(700);
        a.preset = Preset::Volume(Quantity::from_milli(0));
        assert_eq!(fp.clone().authorize(a), Err(PointError::BadPreset(0)));
        fp.authorize(auth(700, Preset::Volume(Quantity::from_milli(1_000))))
            .unwrap();
        fp.lift(1).unwrap();
        fp.pump(10).unwrap();
        assert!(matches!(fp.reset(), Err(PointError::NotNow { .. })));
    }

    #[derive(Clone, Debug)]
    enum Ev {
        Lift(u8),
        Hang,
        Pump(i64),
        Stop,
        Reset,
        Fault,
        Auth(i64, bool, i64),
    }

    fn ev() -> impl Strategy<Value = Ev> {
        prop_oneof![
            (1u8..=3).prop_map(Ev::Lift),
            Just(Ev::Hang),
            (0i64..20_000).prop_map(Ev::Pump),
            Just(Ev::Stop),
            Just(Ev::Reset),
            Just(Ev::Fault),
            (1i64..2_000, any::<bool>(), 1i64..50_000).prop_map(|(p, a, v)| Ev::Auth(p, a, v)),
        ]
    }

    proptest! {
        /// Whatever happens, the amount is the authorized price times the volume and a
        /// preset is never overrun; price changes offered later never touch a fill.
        #[test]
        fn amount_follows_price_at_authorization(evs in prop::collection::vec(ev(), 0..60)) {
            let mut fp = FuellingPoint::new(2).unwrap();
            let mut preset = None;
            for e in evs {
                let before = fp.status();
                let r = match e {
                    Ev::Lift(n) => fp.lift(n),
                    Ev::Hang => fp.hang_up(),
                    Ev::Pump(ml) => fp.pump(ml).map(|_| ()),
                    Ev::Stop => fp.stop(),
                    Ev::Reset => fp.reset(),
                    Ev::Fault => { fp.fault(7); Ok(()) }
                    Ev::Auth(p, by_amount, v) => {
                        let pr = if by_amount { Preset::Amount(Money::from_fen(v)) } else { Preset::Volume(Quantity::from_milli(v)) };
                        let r = fp.authorize(auth(p, pr));
                        if r.is_ok() { preset = Some(pr); }
                        r
                    }
                };
                let s = fp.status();
                if r.is_err() {
                    prop_assert_eq!(&s, &before, "a refused command changes nothing");
                }
                if let Some(p) = s.price {
                    prop_assert_eq!(s.amount, p.times_quantity(s.volume).unwrap());
                    if let Some(before_price) = before.price
                        && before.volume.milli() > 0
                        && s.volume.milli() > 0
                    {
                        prop_assert_eq!(p, before_price);
                    }
                } else {
                    prop_assert_eq!(s.volume.milli(), 0);
                }
                match preset {
                    Some(Preset::Amount(m)) => prop_assert!(s.amount <= m),
                    Some(Preset::Volume(q)) => prop_assert!(s.volume <= q),
                    None => prop_assert_eq!(s.volume.milli(), 0),
                }
                if s.state == PointState::Filling {
                    prop_assert!(s.nozzle_out && s.volume.milli() > 0);
                }
            }
        }

        #[test]
        fn max_volume_for_is_the_largest_volume_within_the_amount(amount in 1i64..1_000_000, price in 1i64..MAX_PRICE_FEN) {
            let (a, p) = (Money::from_fen(amount), Money::from_fen(price));
            let v = max_volume_for(a, p);
            prop_assume!(v < MAX_8_DIGITS);
            prop_assert!(p.times_quantity(Quantity::from_milli(v)).unwrap() <= a);
            prop_assert!(p.times_quantity(Quantity::from_milli(v + 1)).unwrap() > a);
        }
    }
}
