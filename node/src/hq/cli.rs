//! `cardmesh report …`, `cardmesh settle …` and `cardmesh registry …`: argument structs
//! and their handlers. The binary's `main` only names these commands and calls
//! `report_command` / `settle_command` / `registry_command`.

use super::audit;
use super::registry;
use super::report::{self, By, Format, Span};
use super::settle::{self, Selection};
use super::{HqError, access, audit::AuditReport};
use crate::identity::{self, DataDir};
use crate::keys;
use crate::store::{Clock, Store, SystemClock};
use anyhow::{Context, Result};
use cardmesh_model::docs::DocName;
use cardmesh_model::docs::discounts::TimeSlot;
use cardmesh_model::docs::network::{OperatorInfo, SiteInfo};
use cardmesh_model::docs::pricebook::Product;
use cardmesh_model::money::Money;
use cardmesh_model::report::{Scope, locks};
use cardmesh_model::settlement::{Cycle, MerchantTerms, Period};
use cardmesh_model::{
    BusinessDay, CardAsn, MemberClass, MerchantId, OperatorId, ProductId, SiteId, TerminalId,
};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;

/// Where the node's data lives, who reads, and how to print.
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
    #[command(flatten)]
    reader: Reader,
}

/// Who reads: by default the node's own user, who sees the whole network.
#[derive(Args)]
pub struct Reader {
    /// Read as this operator (asks for their PIN): a merchant's staff see only their
    /// merchant's figures.
    #[arg(long = "as", value_name = "OPERATOR")]
    operator: Option<OperatorId>,
    /// The operator's PIN (asked for if not given).
    #[arg(long, requires = "operator")]
    pin: Option<String>,
    /// Only this merchant's sites; an operator may name only their own merchant.
    #[arg(long)]
    merchant: Option<MerchantId>,
}

impl Reader {
    fn scope(&self, store: &Store) -> Result<Scope> {
        let pin = match (&self.operator, &self.pin) {
            (Some(_), Some(p)) => Some(p.clone()),
            (Some(op), None) => Some(
                rpassword::prompt_password(format!("PIN for {op}: ")).context("reading the PIN")?,
            ),
            (None, _) => None,
        };
        let operator = self.operator.as_ref().zip(pin.as_deref());
        Ok(access::scope(store, operator, self.merchant.as_ref())?)
    }
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
        #[command(flatten)]
        out: Output,
    },
    /// Refused operations by reason, and the failure rate (refusals per thousand
    /// attempts), per site, terminal, merchant or operator.
    Failures {
        span: Span,
        #[arg(long, value_enum, default_value = "site")]
        by: By,
        #[command(flatten)]
        out: Output,
    },
    /// Card issuance per day: chips personalized, cards sold and returned, deposits,
    /// loads and the amount loaded; for a month, each day and the month's total.
    Issuance {
        span: Span,
        #[command(flatten)]
        out: Output,
    },
    /// Products sold, best first, with quantities (fuel grades in litres).
    Products {
        span: Span,
        #[command(flatten)]
        out: Output,
    },
    /// Fuel volumes per grade (products sold by the litre), most litres first.
    Fuel {
        span: Span,
        #[command(flatten)]
        out: Output,
    },
    /// Alarms of the span, every fraud found in card histories, open (and stale) grey
    /// locks, the float and per-site freshness.
    Risk {
        span: Span,
        /// A grey lock open longer than this many minutes is stale (default: the
        /// network's setting, see `report grey-lock-age`).
        #[arg(long)]
        lock_age_min: Option<u64>,
        #[command(flatten)]
        out: Output,
    },
    /// Grey locks still open, oldest first; those open longer than allowed are stale
    /// (HQ raises one alarm for each).
    GreyLocks {
        /// Stale after this many minutes (default: the network's setting).
        #[arg(long)]
        lock_age_min: Option<u64>,
        #[command(flatten)]
        out: Output,
    },
    /// At HQ: set how many minutes a grey lock may stay open before it is stale (a
    /// network registry setting every node receives; 1440, a day, unless set).
    GreyLockAge {
        minutes: u64,
        #[arg(long, default_value = "cardmesh-data")]
        data: PathBuf,
    },
    /// At HQ: verify every new transaction's TAC, then answer each clone, balance break
    /// and bad TAC with an alarm and a network-wide block, and each stale grey lock with
    /// an alarm. A running HQ (`cardmesh run`) does this by itself after every sync.
    Audit {
        #[arg(long, default_value = "cardmesh-data")]
        data: PathBuf,
        /// Stale after this many minutes (default: the network's setting).
        #[arg(long)]
        lock_age_min: Option<u64>,
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
    /// Merchants, their sites and terms, and every settled period (what the reader may
    /// see).
    List {
        #[arg(long, default_value = "cardmesh-data")]
        data: PathBuf,
        #[command(flatten)]
        reader: Reader,
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

/// The allowed age of an open grey lock: `minutes` if given, else the network's.
fn lock_age_ms(store: &Store, minutes: Option<u64>) -> Result<u64> {
    Ok(match minutes {
        Some(m) => m.saturating_mul(60_000),
        None => report::grey_lock_max_age_ms(store)?,
    })
}

pub fn report_command(command: ReportCommand) -> Result<()> {
    let now = clock().now_ms();
    let text = match command {
        ReportCommand::Sales { span, by, out } => {
            let store = open(&out.data)?;
            let scope = out.reader.scope(&store)?;
            let rows = report::sales(&store, by, span, &scope)?;
            let fresh = report::freshness(&store, &scope)?;
            report::render_sales(by, span, &rows, &fresh, out.format())
        }
        ReportCommand::Failures { span, by, out } => {
            let store = open(&out.data)?;
            let scope = out.reader.scope(&store)?;
            report::render_failures(&report::failures(&store, by, span, &scope)?, out.format())
        }
        ReportCommand::Issuance { span, out } => {
            let store = open(&out.data)?;
            let scope = out.reader.scope(&store)?;
            let (days, total) = report::issuance(&store, span, &scope)?;
            report::render_issuance(&days, &total, out.format())
        }
        ReportCommand::Products { span, out } => {
            let store = open(&out.data)?;
            let scope = out.reader.scope(&store)?;
            report::render_products(&report::products(&store, span, &scope)?, out.format())
        }
        ReportCommand::Fuel { span, out } => {
            let store = open(&out.data)?;
            let scope = out.reader.scope(&store)?;
            report::render_fuel(&report::fuel(&store, span, &scope)?, out.format())
        }
        ReportCommand::Risk {
            span,
            lock_age_min,
            out,
        } => {
            let store = open(&out.data)?;
            let scope = out.reader.scope(&store)?;
            let age = lock_age_ms(&store, lock_age_min)?;
            report::render_risk(&report::risk(&store, span, now, age, &scope)?, out.format())
        }
        ReportCommand::GreyLocks { lock_age_min, out } => {
            let store = open(&out.data)?;
            let scope = out.reader.scope(&store)?;
            let age = lock_age_ms(&store, lock_age_min)?;
            let rows = report::grey_locks(&store, now, age, &scope)?;
            report::render_grey_locks(&rows, age, out.format())
        }
        ReportCommand::GreyLockAge { minutes, data } => {
            let store = open(&data)?;
            super::require_hq(&store)?;
            store.edit_doc(DocName::Network, |d| locks::set_max_age_min(d, minutes))?;
            format!(
                "grey locks open longer than {} min are stale from now on, on every node that syncs\n",
                minutes.max(1)
            )
        }
        ReportCommand::Audit { data, lock_age_min } => {
            let dir = DataDir::new(&data);
            let store = open(&data)?;
            let key = identity::load_key(&dir)?;
            let tac = keys::held(&store, &key)?.tac().ok_or(HqError::NoTacKey)?;
            let age = lock_age_ms(&store, lock_age_min)?;
            audit_text(&audit::audit(&store, &tac, now, age)?)
        }
    };
    print!("{text}");
    Ok(())
}

fn audit_text(r: &AuditReport) -> String {
    use std::fmt::Write;
    let mut out = format!(
        "verified {} transaction TACs: {} bad\n",
        r.verified, r.bad_tacs
    );
    for e in &r.appended {
        let _ = writeln!(out, "appended {} (entry {})", e.body.kind(), e.seq);
    }
    for asn in &r.blocked {
        let _ = writeln!(out, "card {asn} blocked network-wide");
    }
    for l in &r.stale_locks {
        let _ = writeln!(
            out,
            "stale grey lock: card {} locked by {}#{} at {} ms",
            l.asn,
            l.at.origin.short(),
            l.at.seq,
            l.hlc.millis
        );
    }
    out
}

pub fn settle_command(command: SettleCommand) -> Result<()> {
    match command {
        SettleCommand::Run { through, out, data } => {
            let store = open(&data)?;
            let run = settle::run(
                &store,
                Selection::Due { as_of: through },
                &out,
                &Scope::Network,
            )?;
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
                &Scope::Network,
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
        SettleCommand::List { data, reader } => {
            let store = open(&data)?;
            let scope = reader.scope(&store)?;
            let sites = settle::merchant_sites(&store, &scope)?;
            for (id, t) in settle::merchants(&store, &scope)? {
                let s = sites.get(&id).map(|v| v.join(" ")).unwrap_or_default();
                println!(
                    "{id} ({}): {} settlement, fee {} bp, sites: {s}",
                    t.name, t.cycle, t.fee_bp
                );
            }
            for (at, r) in settle::settled(&store, &scope)? {
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

/// At HQ: the network registry (sites, terminals, operators, limits) and the network
/// price book, which every node receives by sync.
#[derive(Subcommand)]
pub enum RegistryCommand {
    /// Add or change a site: its name, merchant and time zone.
    Site {
        id: SiteId,
        #[arg(long)]
        name: String,
        /// The merchant it settles with (`cardmesh settle merchant`).
        #[arg(long)]
        merchant: MerchantId,
        /// Minutes east of UTC: 480 for China.
        #[arg(long, default_value_t = 480, allow_hyphen_values = true)]
        utc_offset_min: i32,
        #[arg(long, default_value = "cardmesh-data")]
        data: PathBuf,
    },
    /// Register a terminal (12 digits, as on the card's records) to a site, or move it.
    Terminal {
        id: TerminalId,
        #[arg(long)]
        site: SiteId,
        #[arg(long, default_value = "cardmesh-data")]
        data: PathBuf,
    },
    /// Add or change an operator: name, role and site; the PIN they log in with and
    /// their operator card.
    Operator {
        id: OperatorId,
        #[arg(long)]
        name: String,
        /// cashier, manager, finance, card-desk or admin.
        #[arg(long)]
        role: String,
        #[arg(long)]
        site: SiteId,
        /// 4 to 12 digits; the registry keeps only a keyed hash of it.
        #[arg(long)]
        pin: Option<String>,
        /// The card number of their operator card.
        #[arg(long)]
        card: Option<CardAsn>,
        #[arg(long, default_value = "cardmesh-data")]
        data: PathBuf,
    },
    /// Remove an operator (one who left): they can no longer log in, by PIN or card.
    RemoveOperator {
        id: OperatorId,
        #[arg(long, default_value = "cardmesh-data")]
        data: PathBuf,
    },
    /// Set the limits every node enforces, in yuan; those not given stay as they are.
    Limits {
        #[arg(long)]
        anonymous_max_balance: Option<Money>,
        #[arg(long)]
        named_max_balance: Option<Money>,
        /// A purchase above this asks for the card's PIN.
        #[arg(long)]
        pin_above: Option<Money>,
        #[arg(long)]
        max_per_transaction: Option<Money>,
        #[arg(long)]
        max_per_card_per_day: Option<Money>,
        #[arg(long, default_value = "cardmesh-data")]
        data: PathBuf,
    },
    /// Add or change a product of the network price book.
    Product {
        id: ProductId,
        #[arg(long)]
        name: String,
        /// What a quantity of 1 is: pc, L, ticket.
        #[arg(long)]
        unit: String,
        /// Sites may set their own price for it.
        #[arg(long)]
        site_override: bool,
        #[arg(long, default_value = "cardmesh-data")]
        data: PathBuf,
    },
    /// Schedule a product's network price (yuan): now, or from a day's midnight at HQ.
    Price {
        id: ProductId,
        price: Money,
        /// "now" or a day (2026-12-01).
        #[arg(long, default_value = "now")]
        from: String,
        #[arg(long, default_value = "cardmesh-data")]
        data: PathBuf,
    },
    /// Set the share of the list price a member class pays in a slot of the local day
    /// (--from 22:00 --to 06:00 crosses midnight; the same time twice is all day), or
    /// remove that rule. Where slots overlap, the lowest share counts.
    Discount {
        class: MemberClass,
        #[arg(long, default_value = "00:00")]
        from: String,
        #[arg(long, default_value = "00:00")]
        to: String,
        /// Percent of the list price paid, 1 to 100 (90 = 10% off).
        #[arg(long, required_unless_present = "remove", conflicts_with = "remove")]
        paid_percent: Option<u8>,
        #[arg(long)]
        remove: bool,
        #[arg(long, default_value = "cardmesh-data")]
        data: PathBuf,
    },
    /// Set the loyalty points a member class earns per yuan spent.
    Points {
        class: MemberClass,
        per_yuan: u32,
        #[arg(long, default_value = "cardmesh-data")]
        data: PathBuf,
    },
    /// Show the registry, the limits, the products with today's prices and the
    /// discounts.
    Show {
        #[arg(long, default_value = "cardmesh-data")]
        data: PathBuf,
    },
}

pub fn registry_command(command: RegistryCommand) -> Result<()> {
    match command {
        RegistryCommand::Site {
            id,
            name,
            merchant,
            utc_offset_min,
            data,
        } => {
            let info = SiteInfo {
                name,
                merchant,
                utc_offset_min,
            };
            registry::set_site(&open(&data)?, &id, &info)?;
            println!("site {id}: {} of merchant {}", info.name, info.merchant);
        }
        RegistryCommand::Terminal { id, site, data } => {
            match registry::set_terminal(&open(&data)?, &id, &site)? {
                Some(was) if was != site => println!("terminal {id} moved from {was} to {site}"),
                _ => println!("terminal {id} at site {site}"),
            }
        }
        RegistryCommand::Operator {
            id,
            name,
            role,
            site,
            pin,
            card,
            data,
        } => {
            let info = OperatorInfo { name, role, site };
            registry::set_operator(&open(&data)?, &id, &info, pin.as_deref(), card.as_ref())?;
            println!(
                "operator {id}: {} ({}) at site {}",
                info.name, info.role, info.site
            );
        }
        RegistryCommand::RemoveOperator { id, data } => {
            registry::remove_operator(&open(&data)?, &id)?;
            println!("operator {id} removed: no login from the next sync on");
        }
        RegistryCommand::Limits {
            anonymous_max_balance,
            named_max_balance,
            pin_above,
            max_per_transaction,
            max_per_card_per_day,
            data,
        } => {
            let store = open(&data)?;
            let mut l = report::registry(&store)?.limits;
            let given = [
                (&mut l.anonymous_max_balance, anonymous_max_balance),
                (&mut l.named_max_balance, named_max_balance),
                (&mut l.pin_above, pin_above),
                (&mut l.max_per_transaction, max_per_transaction),
                (&mut l.max_per_card_per_day, max_per_card_per_day),
            ];
            for (limit, new) in given {
                if let Some(new) = new {
                    *limit = new;
                }
            }
            registry::set_limits(&store, &l)?;
            println!("limits set; every node enforces them once it has synced");
        }
        RegistryCommand::Product {
            id,
            name,
            unit,
            site_override,
            data,
        } => {
            let p = Product {
                name,
                unit,
                site_override,
            };
            registry::set_product(&open(&data)?, &id, &p)?;
            println!(
                "product {id}: {} per {}; give it a price with `cardmesh registry price`",
                p.name, p.unit
            );
        }
        RegistryCommand::Price {
            id,
            price,
            from,
            data,
        } => {
            let store = open(&data)?;
            let now = now_ms();
            let offset = crate::console::utc_offset(&store, &store.own_certificate().site)?;
            let at = crate::console::price_from(&from, now, offset).map_err(anyhow::Error::msg)?;
            registry::schedule_price(&store, &id, at, price)?;
            println!(
                "{id} costs {price} from {}",
                crate::console::local_time(at, offset)
            );
        }
        RegistryCommand::Discount {
            class,
            from,
            to,
            paid_percent,
            remove: _,
            data,
        } => {
            let slot = TimeSlot {
                start_min: registry::minute_of_day(&from)?,
                end_min: registry::minute_of_day(&to)?,
            };
            registry::set_discount(&open(&data)?, &class, slot, paid_percent)?;
            let when = registry::slot_text(slot);
            match paid_percent {
                Some(pct) => println!("class {class} pays {pct}% of the list price, {when}"),
                None => println!("class {class}: no discount {when} any more"),
            }
        }
        RegistryCommand::Points {
            class,
            per_yuan,
            data,
        } => {
            registry::set_points(&open(&data)?, &class, per_yuan)?;
            println!("class {class} earns {per_yuan} points per yuan");
        }
        RegistryCommand::Show { data } => {
            let store = open(&data)?;
            let reg = report::registry(&store)?;
            let book = report::price_book(&store)?;
            let offers = registry::discount_rules(&store)?;
            print!("{}", registry::render(&reg, &book, &offers, now_ms()));
        }
    }
    Ok(())
}

fn now_ms() -> i64 {
    i64::try_from(clock().now_ms()).unwrap_or(i64::MAX)
}
