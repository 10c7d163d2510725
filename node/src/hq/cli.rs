//! `cardmesh report …` and `cardmesh settle …`: argument structs and their handlers. The
//! binary's `main` only names these commands and calls `report_command` /
//! `settle_command`.

use super::audit;
use super::report::{self, By, Format, Span};
use super::settle::{self, Selection};
use super::{HqError, audit::AuditReport};
use crate::identity::{self, DataDir};
use crate::keys;
use crate::store::{Clock, SystemClock};
use anyhow::{Context, Result};
use cardmesh_model::settlement::{Cycle, MerchantTerms, Period};
use cardmesh_model::{BusinessDay, MerchantId};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;

/// Where the node's data lives and how to print.
#[derive(Args)]
pub struct Output {
    #[arg(long, default_value = "cardmesh-data")]
    data: PathBuf,
    /// Print CSV instead of a table.
    #[arg(long, conflicts_with = "json")]
    csv: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

impl Output {
    fn format(&self) -> Format {
        match (self.csv, self.json) {
            (true, _) => Format::Csv,
            (_, true) => Format::Json,
            _ => Format::Table,
        }
    }
}

#[derive(Subcommand)]
pub enum ReportCommand {
    /// Operations and amounts per site, terminal, merchant or operator for a day or a
    /// month: counts by kind (purchase, reversal, load, refund, return), card issues and
    /// deposits, refused operations and the failure rate, the change in float; with
    /// each site's freshness (when its last entry arrived here).
    Sales {
        /// A day (2026-11-20) or a month (2026-11).
        span: Span,
        #[arg(long, value_enum, default_value = "site")]
        by: By,
        /// Only this merchant's sites (what a merchant's own staff may see).
        #[arg(long)]
        merchant: Option<MerchantId>,
        #[command(flatten)]
        out: Output,
    },
    /// Products sold, best first, with quantities (fuel grades in litres).
    Products {
        span: Span,
        #[arg(long)]
        merchant: Option<MerchantId>,
        #[command(flatten)]
        out: Output,
    },
    /// Alarms of the span, every fraud found in card histories, open (and stale) grey
    /// locks, the float and per-site freshness.
    Risk {
        span: Span,
        /// A grey lock open longer than this many minutes is stale.
        #[arg(long, default_value_t = 30)]
        lock_age_min: u64,
        #[command(flatten)]
        out: Output,
    },
    /// At HQ: verify every new transaction's TAC, then answer each clone, balance break
    /// and bad TAC with an alarm and a network-wide block.
    Audit {
        #[arg(long, default_value = "cardmesh-data")]
        data: PathBuf,
        #[arg(long, default_value_t = 30)]
        lock_age_min: u64,
    },
}

#[derive(Subcommand)]
pub enum SettleCommand {
    /// Settle every merchant's last whole period (of its cycle) ending on or before a
    /// day; periods settled before are skipped. Writes the clearing file to --out.
    Run {
        /// The last day that may be settled (e.g. yesterday).
        #[arg(long, value_parser = parse_day)]
        through: BusinessDay,
        #[arg(long, default_value = ".")]
        out: PathBuf,
        #[arg(long, default_value = "cardmesh-data")]
        data: PathBuf,
    },
    /// Settle one merchant for an explicit period; refused if any of it was settled.
    Period {
        #[arg(long)]
        merchant: MerchantId,
        #[arg(long, value_parser = parse_day)]
        from: BusinessDay,
        #[arg(long, value_parser = parse_day)]
        to: BusinessDay,
        #[arg(long, default_value = ".")]
        out: PathBuf,
        #[arg(long, default_value = "cardmesh-data")]
        data: PathBuf,
    },
    /// Add or change a merchant: name, settlement cycle and fee (basis points of sales).
    Merchant {
        id: MerchantId,
        #[arg(long)]
        name: String,
        /// daily, weekly (Monday to Sunday) or monthly.
        #[arg(long)]
        cycle: Cycle,
        /// Fee in basis points of gross sales: 60 = 0.60%.
        #[arg(long, value_parser = clap::value_parser!(u32).range(0..=10_000))]
        fee_bp: u32,
        #[arg(long, default_value = "cardmesh-data")]
        data: PathBuf,
    },
    /// Merchants, their sites and terms, and every settled period.
    List {
        #[arg(long, default_value = "cardmesh-data")]
        data: PathBuf,
    },
}

fn parse_day(s: &str) -> Result<BusinessDay, String> {
    match s.parse::<Span>()? {
        Span::Day(d) => Ok(d),
        Span::Month { .. } => Err(format!("'{s}' is a month; give a day like 2026-11-20")),
    }
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

fn open(data: &PathBuf) -> Result<crate::store::Store> {
    identity::open(&DataDir::new(data), clock())
        .with_context(|| format!("opening the node in {}", data.display()))
}

pub fn report_command(command: ReportCommand) -> Result<()> {
    let now = clock().now_ms();
    match command {
        ReportCommand::Sales {
            span,
            by,
            merchant,
            out,
        } => {
            let store = open(&out.data)?;
            let rows = report::sales(&store, by, span, merchant.as_ref())?;
            let fresh = store.freshness()?;
            print!(
                "{}",
                report::render_sales(by, span, &rows, &fresh, out.format())
            );
        }
        ReportCommand::Products {
            span,
            merchant,
            out,
        } => {
            let store = open(&out.data)?;
            let rows = report::products(&store, span, merchant.as_ref())?;
            print!("{}", report::render_products(&rows, out.format()));
        }
        ReportCommand::Risk {
            span,
            lock_age_min,
            out,
        } => {
            let store = open(&out.data)?;
            let r = report::risk(&store, span, now, lock_age_min * 60_000)?;
            print!("{}", report::render_risk(&r, out.format()));
        }
        ReportCommand::Audit { data, lock_age_min } => {
            let dir = DataDir::new(&data);
            let store = open(&data)?;
            let key = identity::load_key(&dir)?;
            let tac = keys::held(&store, &key)?.tac().ok_or(HqError::NoTacKey)?;
            let r = audit::audit(&store, &tac, now, lock_age_min * 60_000)?;
            print_audit(&r);
        }
    }
    Ok(())
}

fn print_audit(r: &AuditReport) {
    println!(
        "verified {} transaction TACs: {} bad",
        r.verified, r.bad_tacs
    );
    for e in &r.appended {
        println!("appended {} (entry {})", e.body.kind(), e.seq);
    }
    for asn in &r.blocked {
        println!("card {asn} blocked network-wide");
    }
    for l in &r.stale_locks {
        println!(
            "stale grey lock: card {} locked by {}#{} at {} ms",
            l.asn,
            l.at.origin.short(),
            l.at.seq,
            l.hlc.millis
        );
    }
}

pub fn settle_command(command: SettleCommand) -> Result<()> {
    match command {
        SettleCommand::Run { through, out, data } => {
            let store = open(&data)?;
            let run = settle::run(&store, Selection::Due { as_of: through }, &out)?;
            print_run(&run);
        }
        SettleCommand::Period {
            merchant,
            from,
            to,
            out,
            data,
        } => {
            if to < from {
                anyhow::bail!("--to {to} is before --from {from}");
            }
            let store = open(&data)?;
            let run = settle::run(
                &store,
                Selection::One {
                    merchant,
                    period: Period { from, to },
                },
                &out,
            )?;
            print_run(&run);
        }
        SettleCommand::Merchant {
            id,
            name,
            cycle,
            fee_bp,
            data,
        } => {
            let store = open(&data)?;
            settle::set_merchant(
                &store,
                &id,
                &MerchantTerms {
                    name,
                    cycle,
                    fee_bp,
                },
            )?;
            println!("merchant {id}: {cycle} settlement, fee {fee_bp} bp");
        }
        SettleCommand::List { data } => {
            let store = open(&data)?;
            let sites = settle::merchant_sites(&store)?;
            for (id, t) in settle::merchants(&store)? {
                let s = sites.get(&id).map(|v| v.join(" ")).unwrap_or_default();
                println!(
                    "{id} ({}): {} settlement, fee {} bp, sites: {s}",
                    t.name, t.cycle, t.fee_bp
                );
            }
            for (at, r) in store.settlements()? {
                println!(
                    "settled {} {}: {} operations, gross {}, fee {}, net {} (entry {}#{})",
                    r.merchant,
                    r.period,
                    r.txn_count,
                    r.gross,
                    r.fee,
                    r.net,
                    at.origin.short(),
                    at.seq
                );
            }
        }
    }
    Ok(())
}

fn print_run(run: &settle::ClearingRun) {
    for (m, p) in &run.skipped {
        println!("{m}: {p} already settled, skipped");
    }
    for l in &run.lines {
        println!(
            "{}: {} — {} operations, gross {}, fee {}, transfer {}",
            l.merchant, l.period, l.txn_count, l.gross, l.fee, l.net
        );
    }
    match &run.file {
        Some(f) => println!("clearing file written to {}", f.display()),
        None => println!("nothing to settle"),
    }
}
