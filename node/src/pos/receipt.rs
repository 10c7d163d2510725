//! Receipts: the text a receipt printer prints for a card transaction (pure), and the
//! reprint of an earlier one, rebuilt from the ledger entry it was printed from and
//! marked as a reprint so that it cannot pass for a second sale.

use super::operators::Operation;
use super::terminal::{Pos, PosError, Receipt};
use cardmesh_model::body::{EntryRef, OperatorActionKind};
use cardmesh_model::{BusinessDay, TerminalId};

/// How many days back a reprint looks for a terminal's receipt.
pub const REPRINT_DAYS: i64 = 400;

/// The heading line of a reprinted receipt.
pub const REPRINT_MARK: &str = "*** REPRINT ***";

/// The lines of a receipt; a reprint starts and ends with [`REPRINT_MARK`].
pub fn lines(r: &Receipt, reprint: bool) -> Vec<String> {
    let t = &r.txn;
    let mut out = Vec::new();
    if reprint {
        out.push(REPRINT_MARK.to_string());
    }
    out.push(format!(
        "{} {} card {} at {} terminal {} seq {}",
        t.kind.name(),
        t.amount,
        t.asn,
        t.card_time,
        t.terminal,
        t.term_seq
    ));
    for i in &t.items {
        out.push(format!(
            "  {} x {} @ {} ({}%) = {}",
            i.product, i.quantity, i.unit_price, i.paid_percent, i.amount
        ));
    }
    out.push(format!(
        "balance {} -> {}; card counter {}, TAC {}",
        t.balance_before,
        t.balance_after,
        t.card_counter,
        t.tac.iter().map(|b| format!("{b:02X}")).collect::<String>()
    ));
    if let Some(op) = &t.operator {
        out.push(format!("operator {op}"));
    }
    if let Some(why) = &r.flagged {
        out.push(format!("flagged to HQ: {why}"));
    }
    if reprint {
        out.push(REPRINT_MARK.to_string());
    }
    out
}

impl Pos {
    /// The receipt of this site's terminal `terminal` with sequence number `seq` (its
    /// last one without), rebuilt from this node's ledger: looked for day by day from
    /// today back.
    pub fn find_receipt(
        &self,
        terminal: TerminalId,
        seq: Option<u32>,
    ) -> Result<Receipt, PosError> {
        let now = self.now_ms();
        for back in 0..REPRINT_DAYS {
            let day = BusinessDay::of_instant(now - back * 86_400_000, self.utc_offset());
            let found = self
                .store
                .terminal_ledger(&self.site, &terminal, day)?
                .into_iter()
                .rev()
                .find_map(|e| match e.body.card_txn() {
                    Some(t) if seq.is_none_or(|s| s == t.term_seq) => Some(Receipt {
                        entry: EntryRef {
                            origin: e.origin,
                            seq: e.seq,
                        },
                        txn: t.clone(),
                        flagged: None,
                    }),
                    _ => None,
                });
            if let Some(r) = found {
                return Ok(r);
            }
        }
        Err(PosError::NoSuchReceipt {
            terminal,
            which: seq.map_or("at all".into(), |s| format!("with sequence number {s}")),
        })
    }

    /// Reprints a receipt of this terminal (or of `terminal`): the last one, or the one
    /// with sequence number `seq`. The reprint is audited.
    pub fn reprint(
        &self,
        terminal: Option<TerminalId>,
        seq: Option<u32>,
    ) -> Result<Receipt, PosError> {
        let session = self.authorize(Operation::Query)?;
        let r = self.find_receipt(terminal.unwrap_or(self.terminal), seq)?;
        self.audit(
            &session.operator,
            OperatorActionKind::Reprinted { entry: r.entry },
        )?;
        Ok(r)
    }
}
