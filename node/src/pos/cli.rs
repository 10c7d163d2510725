//! `cardmesh pos …`: the POS operations for scripts and tests. Each call opens the
//! node, works one card, and exits; the operator session stays logged in at the
//! terminal (in the node's store) until `cardmesh pos logout`.

use super::credit::ManagerCode;
use super::personalize::CardOrder;
use super::receipt;
use super::seq::till_sam;
use super::terminal::{BasketLine, CardView, Pos, Receipt, Settled};
use crate::identity::{self, DataDir};
use crate::store::{Clock, Store};
use anyhow::{Context, Result, bail};
use cardmesh_drivers::card::VirtualCard;
use cardmesh_drivers::epurse::EPurse;
use cardmesh_drivers::reader::pcsc::PcscReader;
use cardmesh_drivers::reader::{CardReader, MemoryReader};
use cardmesh_drivers::sam::{PsamClient, Sam};
use cardmesh_drivers::types::Pin;
use cardmesh_model::body::{Body, CardChange, CardEvent, Holder};
use cardmesh_model::{
    BusinessDay, CardAsn, MemberClass, Money, NodeKey, OperatorId, ProductId, Quantity, TerminalId,
};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long to wait for a card in a PC/SC reader.
const CARD_WAIT: Duration = Duration::from_secs(30);

#[derive(Args)]
pub struct PosArgs {
    #[arg(long, default_value = "cardmesh-data", global = true)]
    data: PathBuf,
    /// The terminal (12 digits, registered to this node's site by HQ).
    #[arg(long, global = true)]
    terminal: Option<TerminalId>,
    #[command(subcommand)]
    command: PosCommand,
}

/// Where the card is.
#[derive(Args)]
pub struct CardArgs {
    /// A PC/SC reader whose name contains this text.
    #[arg(long, conflicts_with = "card_file")]
    reader: Option<String>,
    /// A virtual card's state file, worked in-process (tests and demos).
    #[arg(long)]
    card_file: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum PosCommand {
    /// Log an operator in at the terminal (id + PIN).
    Login {
        operator: OperatorId,
        /// The operator PIN (asked for, hidden, if not given).
        #[arg(long)]
        pin: Option<String>,
    },
    /// Log the operator out.
    Logout,
    /// Sell a basket to the card in the reader.
    Purchase {
        #[command(flatten)]
        card: CardArgs,
        /// product:quantity, e.g. cola:2 or petrol-92:30.5 (repeat for more lines).
        #[arg(long = "item", required = true)]
        items: Vec<String>,
        /// The cardholder PIN, needed above the PIN threshold.
        #[arg(long)]
        pin: Option<String>,
        /// Use the PSAM in the PC/SC reader whose name contains this text instead of
        /// the node's software SAM.
        #[arg(long)]
        psam_reader: Option<String>,
    },
    /// Grey-lock the card before fuelling (stations).
    GreyLock {
        #[command(flatten)]
        card: CardArgs,
        #[arg(long)]
        psam_reader: Option<String>,
    },
    /// Debit the fuel and unlock the card; without --amount, complete the fuel debit
    /// another station logged for this card (deferred debit).
    Unlock {
        #[command(flatten)]
        card: CardArgs,
        /// Amount in yuan, from the dispenser.
        #[arg(long)]
        amount: Option<Money>,
        #[arg(long)]
        psam_reader: Option<String>,
    },
    /// Load money onto the card (issuer nodes).
    Load {
        #[command(flatten)]
        card: CardArgs,
        /// Amount in yuan, e.g. 100 or 25.50.
        #[arg(long)]
        amount: Money,
        #[arg(long)]
        pin: String,
    },
    /// Show the card's balance and history, and settle any interrupted transaction.
    Balance {
        #[command(flatten)]
        card: CardArgs,
    },
    /// Sell a blank card to a customer (named with --name, or anonymous).
    Issue {
        #[command(flatten)]
        card: CardArgs,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, requires = "name", default_value = "")]
        id_number: String,
        #[arg(long, requires = "name", default_value = "")]
        phone: String,
        /// Deposit in yuan.
        #[arg(long, default_value = "0")]
        deposit: Money,
    },
    /// Primary issue: personalize a blank card from the manufacturer (at HQ, which holds
    /// the master keys; needs the batch's transport key, `cardmesh keys
    /// import-transport`). The card gets a new number and is then sold with `issue`.
    Personalize {
        #[command(flatten)]
        card: CardArgs,
        /// Expiry date, YYYY-MM-DD.
        #[arg(long)]
        expiry: String,
        /// Member class in the card registry, e.g. standard or gold.
        #[arg(long)]
        class: MemberClass,
        /// The initial cardholder PIN.
        #[arg(long)]
        pin: String,
    },
    /// Report a named card lost: it is blacklisted on every node.
    ReportLost { card: CardAsn },
    /// At HQ: lift a card's blacklist blocks (and unblock its chip if in the reader).
    Unblock {
        card: CardAsn,
        #[arg(long)]
        note: String,
        #[command(flatten)]
        reader: CardArgs,
    },
    /// Change the cardholder PIN.
    ChangePin {
        #[command(flatten)]
        card: CardArgs,
        #[arg(long)]
        old: String,
        #[arg(long)]
        new: String,
    },
    /// Goods return: give money of an earlier sale back to its card (a manager must
    /// authorize; only nodes holding the load key, i.e. card desks, can do it).
    Refund {
        #[command(flatten)]
        card: CardArgs,
        /// The sale's terminal (default: this one) and sequence number, from its receipt.
        #[arg(long)]
        sale_terminal: Option<TerminalId>,
        #[arg(long)]
        sale_seq: u32,
        /// Amount in yuan, at most what is left unrefunded of the sale.
        #[arg(long)]
        amount: Money,
        /// The cardholder PIN (a credit needs it).
        #[arg(long)]
        pin: String,
        #[command(flatten)]
        manager: ManagerArgs,
    },
    /// Reverse the card's last transaction: a sale at this terminal within the
    /// reversal window, given back in full (a manager must authorize).
    Reverse {
        #[command(flatten)]
        card: CardArgs,
        #[arg(long)]
        pin: String,
        #[command(flatten)]
        manager: ManagerArgs,
        /// Minutes after the sale a reversal is still allowed.
        #[arg(long, default_value_t = 10)]
        window_minutes: u64,
    },
    /// Print a receipt again from the ledger, marked REPRINT: this terminal's last one,
    /// or the one with --seq (of --of-terminal).
    Reprint {
        #[arg(long)]
        seq: Option<u32>,
        #[arg(long)]
        of_terminal: Option<TerminalId>,
    },
    /// Take a card back: its balance and deposit are paid out in cash, the card is
    /// emptied, blocked and marked returned.
    ReturnCard {
        #[command(flatten)]
        card: CardArgs,
        #[arg(long)]
        psam_reader: Option<String>,
    },
    /// Replace a card (lost or damaged) by a blank one: the old card is blocked
    /// everywhere and its balance moves onto the new card.
    ReplaceCard {
        /// The card being replaced.
        old: CardAsn,
        /// Where the old card is, if it is here (its balance is then read from it).
        #[arg(long)]
        old_reader: Option<String>,
        #[arg(long, conflicts_with = "old_reader")]
        old_card_file: Option<PathBuf>,
        /// Where the new card is.
        #[command(flatten)]
        new: CardArgs,
        /// The new card's PIN.
        #[arg(long)]
        pin: String,
    },
    /// Issuance history: of one card (--card), or of this site on one day (--day).
    Issuance {
        #[arg(long, conflicts_with = "day", required_unless_present = "day")]
        card: Option<CardAsn>,
        /// YYYY-MM-DD.
        #[arg(long)]
        day: Option<String>,
    },
}

/// A manager's id and PIN given for one operation at a cashier's session.
#[derive(Args)]
pub struct ManagerArgs {
    #[arg(long, requires = "manager_pin")]
    manager: Option<OperatorId>,
    #[arg(long)]
    manager_pin: Option<String>,
}

impl ManagerArgs {
    fn code(self) -> Option<ManagerCode> {
        Some(ManagerCode {
            operator: self.manager?,
            pin: self.manager_pin?,
        })
    }
}

fn parse_day(s: &str) -> Result<BusinessDay> {
    let bad = || anyhow::anyhow!("day {s:?}: write YYYY-MM-DD");
    let mut parts = s
        .splitn(3, '-')
        .map(|p| p.parse::<u16>().map_err(|_| bad()));
    let (year, month, day) = (
        parts.next().ok_or_else(bad)??,
        parts.next().ok_or_else(bad)??,
        parts.next().ok_or_else(bad)??,
    );
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return Err(bad());
    }
    Ok(BusinessDay {
        year,
        month: month as u8,
        day: day as u8,
    })
}

fn parse_line(s: &str) -> Result<BasketLine> {
    let (product, qty) = s
        .split_once(':')
        .with_context(|| format!("item {s:?}: write product:quantity, e.g. cola:2"))?;
    let product: ProductId = product.parse()?;
    let (whole, frac) = qty.split_once('.').unwrap_or((qty, ""));
    let bad = || anyhow::anyhow!("quantity {qty:?}: a number with at most 3 decimals");
    if frac.len() > 3 || whole.is_empty() {
        return Err(bad());
    }
    let whole: i64 = whole.parse().map_err(|_| bad())?;
    let frac: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<3}").parse().map_err(|_| bad())?
    };
    let milli = whole
        .checked_mul(1000)
        .and_then(|w| w.checked_add(frac))
        .ok_or_else(bad)?;
    Ok(BasketLine {
        product,
        quantity: Quantity::from_milli(milli),
    })
}

fn pin(s: &str) -> Result<Pin> {
    Pin::parse(s).context("the cardholder PIN")
}

fn open_purse(card: &CardArgs) -> Result<EPurse<Box<dyn CardReader>>> {
    let reader: Box<dyn CardReader> = match (&card.reader, &card.card_file) {
        (Some(name), None) => {
            let mut r = PcscReader::open(name)?;
            r.wait_for_card(CARD_WAIT)
                .context("waiting for a card in the reader")?;
            Box::new(r)
        }
        (None, Some(file)) => Box::new(MemoryReader::new(
            VirtualCard::open(file).with_context(|| format!("opening {}", file.display()))?,
        )),
        _ => bail!("say where the card is: --reader NAME or --card-file PATH"),
    };
    Ok(EPurse::new(reader))
}

/// The PSAM in a PC/SC reader, or the node's software SAM.
fn open_sam(
    psam_reader: Option<String>,
    store: &Store,
    key: &NodeKey,
    terminal: TerminalId,
) -> Result<Box<dyn Sam>> {
    Ok(match psam_reader {
        Some(name) => {
            let mut r = PcscReader::open(&name)?;
            r.wait_for_card(CARD_WAIT)
                .context("waiting for the PSAM in its reader")?;
            Box::new(PsamClient::new(r))
        }
        None => Box::new(till_sam(store, key, terminal)?),
    })
}

fn print_receipt(r: &Receipt) {
    for line in receipt::lines(r, false) {
        println!("{line}");
    }
}

fn print_settled(settled: &[Settled]) {
    for s in settled {
        match s {
            Settled::Completed { intent, .. } => {
                println!("settled: interrupted transaction {intent:?} completed from the card")
            }
            Settled::Voided { intent, reason } => {
                println!("settled: interrupted transaction {intent:?} was not done ({reason})")
            }
            Settled::Undetermined { reason, .. } => {
                println!("NOT settled: {reason}; HQ has been alerted")
            }
        }
    }
}

fn print_view(v: &CardView) {
    print_settled(&v.settled);
    println!("card {} balance {}", v.info.asn, v.balance);
    println!("on the card ({} records):", v.card_log.len());
    for r in &v.card_log {
        println!(
            "  #{:<5} {:?} {} fen at {} terminal {}",
            r.counter, r.tx_type, r.amount, r.datetime, r.terminal
        );
    }
    println!("in this node's ledger ({} entries):", v.ledger.len());
    for e in &v.ledger {
        if let Body::Card(t) = &e.body {
            println!(
                "  #{:<5} {} {} balance {} -> {}",
                t.card_counter,
                t.kind.name(),
                t.amount,
                t.balance_before,
                t.balance_after
            );
        }
    }
}

/// Runs one `cardmesh pos` command.
pub fn run(args: PosArgs, clock: Arc<dyn Clock>) -> Result<()> {
    let dir = DataDir::new(&args.data);
    let store = identity::open(&dir, clock.clone())?;
    let key = identity::load_key(&dir)?;
    let terminal = args
        .terminal
        .context("--terminal is needed: the 12-digit id HQ registered for this till")?;
    let pos = Pos::open(&store, &key, terminal, clock)?;
    match args.command {
        PosCommand::Login { operator, pin } => {
            let pin = match pin {
                Some(p) => p,
                None => rpassword::prompt_password(format!("PIN for {operator}: "))
                    .context("reading the PIN")?,
            };
            let s = pos.login(&operator, &pin)?;
            println!(
                "{} logged in as {} at terminal {terminal}",
                s.operator, s.role
            );
        }
        PosCommand::Logout => {
            pos.logout()?;
            println!("logged out of terminal {terminal}");
        }
        PosCommand::Purchase {
            card,
            items,
            pin: card_pin,
            psam_reader,
        } => {
            let basket = items
                .iter()
                .map(|s| parse_line(s))
                .collect::<Result<Vec<_>>>()?;
            let card_pin = card_pin.as_deref().map(pin).transpose()?;
            let mut purse = open_purse(&card)?;
            let mut sam = open_sam(psam_reader, &store, &key, terminal)?;
            let receipt = pos.purchase(&mut purse, &mut &mut *sam, &basket, card_pin.as_ref())?;
            print_receipt(&receipt);
        }
        PosCommand::GreyLock { card, psam_reader } => {
            let mut purse = open_purse(&card)?;
            let mut sam = open_sam(psam_reader, &store, &key, terminal)?;
            print_receipt(&pos.grey_lock(&mut purse, &mut &mut *sam)?);
        }
        PosCommand::Unlock {
            card,
            amount,
            psam_reader,
        } => {
            let mut purse = open_purse(&card)?;
            let mut sam = open_sam(psam_reader, &store, &key, terminal)?;
            print_receipt(&pos.unlock(&mut purse, &mut &mut *sam, amount)?);
        }
        PosCommand::Load {
            card,
            amount,
            pin: p,
        } => {
            let mut purse = open_purse(&card)?;
            print_receipt(&pos.load(&mut purse, amount, &pin(&p)?)?);
        }
        PosCommand::Balance { card } => {
            let mut purse = open_purse(&card)?;
            print_view(&pos.query(&mut purse)?);
        }
        PosCommand::Issue {
            card,
            name,
            id_number,
            phone,
            deposit,
        } => {
            let mut purse = open_purse(&card)?;
            let holder = name.map(|name| Holder {
                name,
                id_number,
                phone,
            });
            print_receipt(&pos.issue(&mut purse, holder, deposit)?);
        }
        PosCommand::Personalize {
            card,
            expiry,
            class,
            pin: p,
        } => {
            let order = CardOrder {
                class,
                expiry: parse_day(&expiry)?,
                pin: pin(&p)?,
            };
            let mut purse = open_purse(&card)?;
            let done = pos.personalize(&mut purse, &order)?;
            let how = match done.serial {
                Some(chip) => format!("personalized (chip {chip})"),
                None => "was personalized here before a crash: now recorded".into(),
            };
            println!(
                "card {} {how}: class {}, registry entry {}:{}; sell it with `issue`",
                done.asn,
                order.class,
                done.entry.origin.short(),
                done.entry.seq
            );
        }
        PosCommand::ReportLost { card } => {
            let e = pos.report_lost(card)?;
            println!(
                "card {card} reported lost and blacklisted (entry {}:{})",
                e.origin.short(),
                e.seq
            );
        }
        PosCommand::Unblock { card, note, reader } => {
            let mut purse = match (&reader.reader, &reader.card_file) {
                (None, None) => None,
                _ => Some(open_purse(&reader)?),
            };
            pos.unblock(card, purse.as_mut(), &note)?;
            println!("card {card}: blacklist blocks lifted");
        }
        PosCommand::ChangePin { card, old, new } => {
            let mut purse = open_purse(&card)?;
            pos.change_pin(&mut purse, &pin(&old)?, &pin(&new)?)?;
            println!("cardholder PIN changed");
        }
        PosCommand::Refund {
            card,
            sale_terminal,
            sale_seq,
            amount,
            pin: p,
            manager,
        } => {
            let sale = pos.find_receipt(sale_terminal.unwrap_or(terminal), Some(sale_seq))?;
            let mut purse = open_purse(&card)?;
            let r = pos.refund(
                &mut purse,
                sale.entry,
                amount,
                &pin(&p)?,
                manager.code().as_ref(),
            )?;
            print_receipt(&r);
        }
        PosCommand::Reverse {
            card,
            pin: p,
            manager,
            window_minutes,
        } => {
            let mut pos = pos;
            pos.set_reversal_window(Duration::from_secs(window_minutes.saturating_mul(60)));
            let mut purse = open_purse(&card)?;
            print_receipt(&pos.reverse(&mut purse, &pin(&p)?, manager.code().as_ref())?);
        }
        PosCommand::Reprint { seq, of_terminal } => {
            for line in receipt::lines(&pos.reprint(of_terminal, seq)?, true) {
                println!("{line}");
            }
        }
        PosCommand::ReturnCard { card, psam_reader } => {
            let mut purse = open_purse(&card)?;
            let mut sam = open_sam(psam_reader, &store, &key, terminal)?;
            let r = pos.return_card(&mut purse, &mut &mut *sam)?;
            print_receipt(&r.receipt);
            println!(
                "card returned: pay the customer {} in cash (balance {} + deposit {})",
                r.cash, r.balance, r.deposit
            );
        }
        PosCommand::ReplaceCard {
            old,
            old_reader,
            old_card_file,
            new,
            pin: p,
        } => {
            let old_card = CardArgs {
                reader: old_reader,
                card_file: old_card_file,
            };
            let mut old_purse = match (&old_card.reader, &old_card.card_file) {
                (None, None) => None,
                _ => Some(open_purse(&old_card)?),
            };
            let mut new_purse = open_purse(&new)?;
            let r = pos.replace_card(old, old_purse.as_mut(), &mut new_purse, &pin(&p)?)?;
            if let Some(credit) = &r.credit {
                print_receipt(credit);
            }
            println!(
                "card {} replaced by card {}: {} moved; the old card is blocked",
                r.old, r.new, r.moved
            );
        }
        PosCommand::Issuance { card, day } => {
            let entries = match (card, day) {
                (Some(card), _) => {
                    let h = pos.issuance_history(card)?;
                    let status = h
                        .record
                        .as_ref()
                        .and_then(|r| r.status())
                        .map_or("unknown to the registry".into(), |s| format!("{s:?}"));
                    println!("card {card}: {status}");
                    if let Some(Body::CardRegistry(CardEvent {
                        change:
                            CardChange::Personalized {
                                class,
                                expiry,
                                issuer,
                            },
                        ..
                    })) = h.personalized.as_ref().map(|e| &e.body)
                    {
                        let at = h.personalized.as_ref().expect("matched above");
                        println!(
                            "primary issue: personalized at {issuer}, class {class}, expires {expiry} (entry {}:{})",
                            at.origin.short(),
                            at.seq
                        );
                    }
                    h.entries
                }
                (None, Some(day)) => pos.issuances_on(parse_day(&day)?)?,
                (None, None) => bail!("say --card CARD or --day YYYY-MM-DD"),
            };
            for e in &entries {
                if let Body::Card(t) = &e.body {
                    println!(
                        "{} {} card {} {} at {} terminal {}",
                        t.business_day,
                        t.kind.name(),
                        t.asn,
                        t.amount,
                        t.site,
                        t.terminal
                    );
                }
            }
            println!("{} entries", entries.len());
        }
    }
    Ok(())
}
