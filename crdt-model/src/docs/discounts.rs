//! The discount rules document: per member class, time slots of the local day with the
//! percentage of the list price paid, and loyalty points per yuan.

use super::{as_i64, scalars};
use crate::ids::MemberClass;
use automerge::transaction::Transactable;
use automerge::{AutoCommit, AutomergeError, ROOT};
use std::collections::BTreeMap;

/// Minutes of the local day `[start, end)`; `start > end` crosses midnight and
/// `start == end` is the whole day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeSlot {
    pub start_min: u16,
    pub end_min: u16,
}

impl TimeSlot {
    pub fn contains(&self, minute: u16) -> bool {
        use std::cmp::Ordering::*;
        match self.start_min.cmp(&self.end_min) {
            Less => (self.start_min..self.end_min).contains(&minute),
            Greater => minute >= self.start_min || minute < self.end_min,
            Equal => true,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Discounts {
    /// Per class, slot -> percent of the list price paid (1..=100).
    pub rules: BTreeMap<MemberClass, BTreeMap<TimeSlot, u8>>,
    pub points_per_yuan: BTreeMap<MemberClass, u32>,
}

impl Discounts {
    /// The best (lowest) percent paid by `class` at local `minute`; 100 with no rule.
    pub fn paid_percent(&self, class: &MemberClass, minute: u16) -> u8 {
        self.rules
            .get(class)
            .into_iter()
            .flatten()
            .filter(|(slot, _)| slot.contains(minute))
            .map(|(_, pct)| *pct)
            .min()
            .unwrap_or(100)
    }
}

fn rule_key(class: &MemberClass, slot: TimeSlot) -> String {
    format!("rule/{class}/{:04}-{:04}", slot.start_min, slot.end_min)
}

pub fn set_rule(
    doc: &mut AutoCommit,
    class: &MemberClass,
    slot: TimeSlot,
    paid_percent: u8,
) -> Result<(), AutomergeError> {
    doc.put(ROOT, rule_key(class, slot), i64::from(paid_percent))
}

pub fn remove_rule(
    doc: &mut AutoCommit,
    class: &MemberClass,
    slot: TimeSlot,
) -> Result<(), AutomergeError> {
    doc.delete(ROOT, rule_key(class, slot))
}

pub fn set_points(
    doc: &mut AutoCommit,
    class: &MemberClass,
    per_yuan: u32,
) -> Result<(), AutomergeError> {
    doc.put(ROOT, format!("points/{class}"), i64::from(per_yuan))
}

/// Reads the document; rules outside 1..=100 percent or past the end of the day are
/// ignored rather than trusted.
pub fn read(doc: &AutoCommit) -> Discounts {
    let mut d = Discounts::default();
    for (key, value) in scalars(doc) {
        let Some(n) = as_i64(&value) else { continue };
        let parts: Vec<&str> = key.split('/').collect();
        match parts.as_slice() {
            ["rule", class, slot] => {
                let Ok(class) = class.parse::<MemberClass>() else {
                    continue;
                };
                let Some((s, e)) = slot.split_once('-') else {
                    continue;
                };
                let (Ok(s), Ok(e)) = (s.parse::<u16>(), e.parse::<u16>()) else {
                    continue;
                };
                if s >= 1440 || e >= 1440 || !(1..=100).contains(&n) {
                    continue;
                }
                d.rules.entry(class).or_default().insert(
                    TimeSlot {
                        start_min: s,
                        end_min: e,
                    },
                    n as u8,
                );
            }
            ["points", class] => {
                if let (Ok(class), Ok(p)) = (class.parse::<MemberClass>(), u32::try_from(n)) {
                    d.points_per_yuan.insert(class, p);
                }
            }
            _ => {}
        }
    }
    d
}
