//! `cardmesh`: the command line of a node. A thin shell: every command parses its
//! arguments, calls the library, and prints what a shop manager needs to read.

use anyhow::{Context, Result, bail};
use cardmesh_drivers::card::VirtualCard;
use cardmesh_drivers::types::ChipSerial;
use cardmesh_model::{NodeId, Role, SiteId};
use cardmesh_node::handle::Running;
use cardmesh_node::identity::{self, DataDir};
use cardmesh_node::keys;
use cardmesh_node::link::NodeSync;
use cardmesh_node::link::iroh::IrohLink;
use cardmesh_node::link::serial;
use cardmesh_node::status::NodeStatus;
use cardmesh_node::store::{Clock, SystemClock};
use cardmesh_node::usb;
use cardmesh_node::{config, demo};
use cardmesh_tui::App;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// cardmesh runs an IC stored-value card network with no central server. Every site
/// runs a node; nodes replicate blacklists, prices, cards and transactions over any link.
#[derive(Parser)]
#[command(name = "cardmesh", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create this node's key. With --hq, create a new network with this node as its HQ;
    /// otherwise write an enrollment request file to take to HQ.
    Init {
        /// Folder holding the node's key and store.
        #[arg(long, default_value = "cardmesh-data")]
        data: PathBuf,
        /// Create a new network with this node as HQ.
        #[arg(long, requires = "network")]
        hq: bool,
        /// Name of the new network (with --hq).
        #[arg(long)]
        network: Option<String>,
        /// A label for this node in the request (e.g. the till's location).
        #[arg(long, default_value = "node")]
        label: String,
    },
    /// At HQ: certify a node from its request file; writes a join package to take back.
    Enroll {
        /// The enrollment request file the site wrote (`enroll-request.cmreq`).
        request: PathBuf,
        /// Site the node belongs to (e.g. shop-12).
        #[arg(long)]
        site: SiteId,
        /// What the node is for: store, station or issuer.
        #[arg(long)]
        role: Role,
        /// HQ's data folder.
        #[arg(long, default_value = "cardmesh-data")]
        data: PathBuf,
        /// Where to write the join package (default: next to the request).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// On a site: install the join package HQ made for this node.
    Join {
        /// The join package file from HQ.
        package: PathBuf,
        #[arg(long, default_value = "cardmesh-data")]
        data: PathBuf,
    },
    /// At HQ: revoke a lost, stolen or retired node. Entries it writes after the last one
    /// HQ holds are refused everywhere, and no node syncs with it once the revocation
    /// reaches it (sync to spread it).
    Revoke {
        /// The node's id (see `cardmesh status`).
        node: NodeId,
        /// Why, for the members' audit (e.g. "till stolen", "shop closed").
        #[arg(long)]
        reason: String,
        /// HQ's data folder.
        #[arg(long, default_value = "cardmesh-data")]
        data: PathBuf,
    },
    /// Show this node's identity, members, feeds and store.
    Status {
        #[arg(long, default_value = "cardmesh-data")]
        data: PathBuf,
    },
    /// Start the demo network (HQ, two shops, a fuel station) on this machine, with the
    /// console. Recreates the demo folder each time.
    Demo {
        /// Folder for the demo nodes' data (wiped and recreated).
        #[arg(long, default_value = "demo-data")]
        data: PathBuf,
        /// Print each node's status and exit instead of opening the console.
        #[arg(long)]
        no_console: bool,
    },
    /// Run this node: the console in the foreground; serving peers and syncing with the
    /// peers of `config.toml` in the background.
    Run {
        #[arg(long, default_value = "cardmesh-data")]
        data: PathBuf,
        /// No console: run as a service until interrupted (Ctrl-C or SIGINT).
        #[arg(long)]
        headless: bool,
        /// Address to listen on (UDP), instead of `sync.listen` in config.toml.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Sync with other nodes now.
    Sync {
        #[command(subcommand)]
        command: SyncCommand,
    },
    /// Card master keys: the HQ ceremony, and handing each node the keys its role needs.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Check the store: rebuild every view from the feeds and compare.
    Check {
        #[arg(long, default_value = "cardmesh-data")]
        data: PathBuf,
    },
    /// Reports: sales by site, terminal, merchant or operator; products; risk; and at HQ
    /// the audit that verifies TACs and blocks cloned or broken cards.
    Report {
        #[command(subcommand)]
        command: cardmesh_node::hq::cli::ReportCommand,
    },
    /// At HQ: sites, terminals, operators, limits, products and prices (the network
    /// registry and price book every node gets by sync).
    Registry {
        #[command(subcommand)]
        command: cardmesh_node::hq::cli::RegistryCommand,
    },
    /// At HQ: merchants and clearing runs (clearing file + settlement entries).
    Settle {
        #[command(subcommand)]
        command: cardmesh_node::hq::cli::SettleCommand,
    },
    /// Point of sale: operator login, purchases, loads, card desk operations.
    Pos(cardmesh_node::pos::cli::PosArgs),
    /// Make a blank virtual card file, as a card manufacturer delivers a chip: its
    /// serial number and a transport key diversified from the batch's transport key
    /// file (demos and tests; personalize it with `cardmesh pos personalize`).
    BlankCard {
        /// The card file to create (overwritten if it exists).
        file: PathBuf,
        /// The chip serial number, 16 hex digits.
        #[arg(long, value_parser = ChipSerial::parse)]
        serial: ChipSerial,
        /// The batch's transport key file (as `cardmesh keys import-transport` reads).
        #[arg(long)]
        transport_key: PathBuf,
    },
    /// Fuel station: check the `[station]` section of config.toml and its devices.
    Station(cardmesh_node::station::cli::StationArgs),
}

#[derive(Subcommand)]
enum SyncCommand {
    /// Sync with a USB stick both ways: take what this node lacks, leave on the stick what
    /// it lacks (up to the budget). Without PATH, uses the one mounted removable drive.
    Usb {
        /// The stick's mount point (its `cardmesh` folder is used or created).
        path: Option<PathBuf>,
        #[arg(long, default_value = "cardmesh-data")]
        data: PathBuf,
        /// At most this many MiB of new segments on the stick in this sync.
        #[arg(long, default_value_t = 1024)]
        budget_mib: u64,
    },
    /// One sync session with a peer over iroh (QUIC): both sides take what they lack.
    Peer {
        /// The peer's node id (see its `cardmesh status`).
        node: NodeId,
        /// The peer's address, e.g. 192.168.1.20:7470.
        addr: SocketAddr,
        #[arg(long, default_value = "cardmesh-data")]
        data: PathBuf,
        /// Local address to send from.
        #[arg(long, default_value = "0.0.0.0:0")]
        bind: SocketAddr,
    },
    /// Dial another node through the modem on PORT and sync with it (iroh over the line).
    Dial(serial::cli::DialArgs),
    /// Answer calls on the modem at PORT and sync with each caller.
    Answer(serial::cli::AnswerArgs),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// At HQ, once: two custodians each enter a 32-hex-digit key component (hidden);
    /// shows each component's check value (KCV) and the combined one, derives the master
    /// keys and seals them in HQ's store. Refuses to run a second time.
    Ceremony {
        #[arg(long, default_value = "cardmesh-data")]
        data: PathBuf,
        /// Read the two components from these files instead of asking (scripted tests).
        #[arg(long, num_args = 2, value_names = ["FILE_A", "FILE_B"])]
        component_files: Vec<PathBuf>,
    },
    /// At HQ: seal the keys a node's role needs (purchase for stores and stations, also
    /// load for issuers) to that node, into a file to carry there.
    Export {
        /// The node's id (see `cardmesh status`).
        #[arg(long = "for")]
        node: NodeId,
        #[arg(long, default_value = "cardmesh-data")]
        data: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// On a node: install the key package HQ exported for it.
    Import {
        package: PathBuf,
        #[arg(long, default_value = "cardmesh-data")]
        data: PathBuf,
    },
    /// On an issuing node: seal the transport master key of a batch of blank cards
    /// (the manufacturer's key file: 32 hex digits, optionally followed by its 6-digit
    /// KCV) into this node's store, replacing the previous batch's. Prints its KCV only.
    ImportTransport {
        file: PathBuf,
        #[arg(long, default_value = "cardmesh-data")]
        data: PathBuf,
    },
    /// Which keys this node holds (names only).
    Show {
        #[arg(long, default_value = "cardmesh-data")]
        data: PathBuf,
    },
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

fn read_component(custodian: char, file: Option<&PathBuf>) -> Result<keys::KeyComponentInput> {
    let text = match file {
        Some(f) => {
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?
        }
        None => rpassword::prompt_password(format!(
            "custodian {custodian}: key component (32 hex digits, hidden): "
        ))
        .context("reading the component")?,
    };
    Ok(keys::KeyComponentInput(text))
}

fn keys_command(command: KeysCommand) -> Result<()> {
    match command {
        KeysCommand::Ceremony {
            data,
            component_files,
        } => {
            let store = identity::open(&DataDir::new(&data), clock())?;
            let a = keys::parse_component(&read_component('A', component_files.first())?.0)?;
            println!("component A check value: {}", hex(&a.kcv()));
            let b = keys::parse_component(&read_component('B', component_files.get(1))?.0)?;
            println!("component B check value: {}", hex(&b.kcv()));
            let report = keys::ceremony(&store, &a, &b)?;
            println!("combined key check value: {}", hex(&report.kcv_combined));
            println!(
                "master keys derived and sealed in HQ's store; this ceremony cannot be run again"
            );
        }
        KeysCommand::Export { node, data, out } => {
            let dir = DataDir::new(&data);
            let store = identity::open(&dir, clock())?;
            let package = keys::export(&store, &identity::load_key(&dir)?, &node)?;
            std::fs::write(&out, package).with_context(|| format!("writing {}", out.display()))?;
            println!(
                "keys for node {} sealed to it in {}",
                node.short(),
                out.display()
            );
        }
        KeysCommand::Import { package, data } => {
            let dir = DataDir::new(&data);
            let store = identity::open(&dir, clock())?;
            let bytes = std::fs::read(&package)
                .with_context(|| format!("reading {}", package.display()))?;
            let names = keys::import(&store, &identity::load_key(&dir)?, &bytes)?;
            println!("installed keys: {}", names.join(", "));
        }
        KeysCommand::ImportTransport { file, data } => {
            let dir = DataDir::new(&data);
            let store = identity::open(&dir, clock())?;
            let text = keys::KeyComponentInput(
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?,
            );
            let transport = keys::parse_transport_file(&text.0)?;
            let kcv = keys::import_transport(&store, &identity::load_key(&dir)?, &transport)?;
            println!(
                "transport key sealed in this node's store; check value {} (compare with the manufacturer's)",
                hex(&kcv)
            );
        }
        KeysCommand::Show { data } => {
            let dir = DataDir::new(&data);
            let store = identity::open(&dir, clock())?;
            let held = keys::held(&store, &identity::load_key(&dir)?)?;
            println!("keys held: {}", held.names().join(", "));
        }
    }
    Ok(())
}

fn open_sync(data: &PathBuf) -> Result<NodeSync> {
    let dir = DataDir::new(data);
    Ok(NodeSync::new(
        identity::open(&dir, clock())?,
        identity::load_key(&dir)?,
    ))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn stick_mount(path: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = path {
        return Ok(p);
    }
    match usb::find_removable_mounts().as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no removable drive is mounted: plug the stick in, or give its path"),
        many => bail!("several removable drives are mounted ({many:?}): give the stick's path"),
    }
}

/// Draws a one-line progress bar on stderr.
fn progress_bar(p: usb::Progress) {
    let phase = match p.phase {
        usb::Phase::Reading => "reading stick",
        usb::Phase::Writing => "writing stick",
    };
    if p.total == 0 {
        return;
    }
    let frac = p.done as f64 / p.total as f64;
    let filled = (frac * 30.0).round() as usize;
    eprint!(
        "\r{phase:<14} [{:<30}] {}/{} entries",
        "#".repeat(filled.min(30)),
        p.done,
        p.total
    );
    if p.done >= p.total {
        eprintln!();
    }
}

fn sync_command(command: SyncCommand) -> Result<()> {
    match command {
        SyncCommand::Usb {
            path,
            data,
            budget_mib,
        } => {
            let dir = DataDir::new(&data);
            let store = identity::open(&dir, clock())?;
            let _verifier = cardmesh_node::hq::watch::Watch::for_node(&store, &dir, clock())?;
            let network_key = identity::load_network_key(&dir)?;
            let mount = stick_mount(path)?;
            let folder = usb::stick_folder(&mount);
            let r = usb::sync_stick(
                &store,
                &network_key,
                &folder,
                budget_mib << 20,
                &mut progress_bar,
            )
            .with_context(|| format!("syncing with the stick at {}", mount.display()))?;
            println!(
                "took {} entries from the stick, wrote {} ({} KiB)",
                r.taken_in,
                r.written_out,
                r.bytes_written / 1024
            );
            for s in &r.skipped {
                println!("skipped {}: {}", s.path.display(), s.reason);
            }
            if r.budget_exhausted || r.stick_full {
                println!(
                    "the stick still lacks {} entries: sync again with a larger budget or an emptier stick",
                    r.stick_lacks
                );
            }
            Ok(())
        }
        SyncCommand::Peer {
            node,
            addr,
            data,
            bind,
        } => {
            let sync = open_sync(&data)?;
            let _verifier = cardmesh_node::hq::watch::Watch::for_node(
                sync.store(),
                &DataDir::new(&data),
                clock(),
            )?;
            runtime()?.block_on(async {
                let link = IrohLink::bind(sync, bind, clock()).await?;
                let result = link.sync_with(node, addr).await;
                link.shutdown().await;
                let o =
                    result.with_context(|| format!("syncing with {} at {addr}", node.short()))?;
                println!(
                    "synced with {} ({} at site {}): {} entries received, {} sent",
                    o.peer.node.short(),
                    o.peer.role,
                    o.peer.site,
                    o.stats.entries_applied,
                    o.stats.applied_by_peer
                );
                for r in o.refused_here.iter().chain(&o.refused_by_peer) {
                    println!("refused: {r}");
                }
                Ok(())
            })
        }
        SyncCommand::Dial(args) => serial::cli::dial(args),
        SyncCommand::Answer(args) => serial::cli::answer(args),
    }
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Init {
            data,
            hq,
            network,
            label,
        } => {
            let dir = DataDir::new(&data);
            if hq {
                let name = network.context("--hq needs --network NAME")?;
                let store = identity::init_hq(&dir, &name, clock())?;
                let c = store.own_certificate();
                println!(
                    "created network '{name}' ({}) with this node as HQ ({})",
                    c.network,
                    c.node.short()
                );
                println!(
                    "next: on each site run `cardmesh init`, then bring its request here for `cardmesh enroll`"
                );
            } else {
                if network.is_some() {
                    bail!("--network is only for creating a network with --hq");
                }
                let path = identity::init_site(&dir, &label, clock().as_ref())?;
                println!(
                    "created node key; enrollment request written to {}",
                    path.display()
                );
                println!(
                    "next: take that file to HQ and run `cardmesh enroll {} --site SITE --role store|station|issuer`",
                    path.display()
                );
            }
        }
        Command::Enroll {
            request,
            site,
            role,
            data,
            out,
        } => {
            if role == Role::Hq {
                bail!("a network has exactly one HQ; enroll sites as store, station or issuer");
            }
            let dir = DataDir::new(&data);
            let store = identity::open(&dir, clock())?;
            let bytes = std::fs::read(&request)
                .with_context(|| format!("reading {}", request.display()))?;
            let package =
                identity::enroll(&store, &dir, &bytes, site.clone(), role, clock().as_ref())?;
            let out = out.unwrap_or_else(|| request.with_file_name(format!("{site}.cmjoin")));
            std::fs::write(&out, package).with_context(|| format!("writing {}", out.display()))?;
            println!(
                "enrolled a {role} node for site {site}; join package written to {}",
                out.display()
            );
            println!(
                "next: take it to the site and run `cardmesh join {}`",
                out.display()
            );
        }
        Command::Join { package, data } => {
            let bytes = std::fs::read(&package)
                .with_context(|| format!("reading {}", package.display()))?;
            let store = identity::join(&DataDir::new(&data), &bytes, clock())?;
            let c = store.own_certificate();
            println!(
                "joined network '{}' as a {} node of site {}",
                c.network_name, c.role, c.site
            );
        }
        Command::Revoke { node, reason, data } => {
            let store = identity::open(&DataDir::new(&data), clock())?;
            let rev = identity::revoke(&store, &node, &reason)?;
            println!(
                "revoked node {node}: nothing it wrote after entry {} is accepted, and no node syncs with it",
                rev.upto_seq
            );
            println!("next: sync, so that the revocation reaches every site");
        }
        Command::Status { data } => {
            let store = identity::open(&DataDir::new(&data), clock())?;
            print!("{}", NodeStatus::gather(&store)?);
        }
        Command::Demo { data, no_console } => {
            let cluster = demo::create(&data, clock()).context("starting the demo network")?;
            if no_console {
                for n in cluster.nodes() {
                    println!("== {}", n.name());
                    print!("{}", NodeStatus::gather(n.store())?);
                }
            } else {
                App::new(Box::new(cluster))
                    .run()
                    .context("running the console")?;
            }
        }
        Command::Keys { command } => keys_command(command)?,
        Command::Report { command } => cardmesh_node::hq::cli::report_command(command)?,
        Command::Settle { command } => cardmesh_node::hq::cli::settle_command(command)?,
        Command::Registry { command } => cardmesh_node::hq::cli::registry_command(command)?,
        Command::Sync { command } => sync_command(command)?,
        Command::Run {
            data,
            headless,
            listen,
        } => {
            let mut config = config::load(&data)?;
            if let Some(listen) = listen {
                config.listen = listen;
            }
            let peers = config.peers.len();
            let lan = match config.reach.lan_discovery {
                true => " and the members found on the LAN",
                false => "",
            };
            let mut running = Running::start(&DataDir::new(&data), config, clock())
                .context("starting the node")?;
            let _verifier = cardmesh_node::hq::watch::Watch::for_node(
                running.node().store(),
                &DataDir::new(&data),
                clock(),
            )?;
            if running
                .start_station(&DataDir::new(&data))
                .context("starting the fuel station")?
            {
                announce("fuel station started: one worker per fuelling point");
            }
            if headless {
                announce(&format!(
                    "{} serving sync on {:?}, dialing {peers} configured peers{lan}; Ctrl-C stops",
                    running.node().name(),
                    running.local_addrs()
                ));
                running.wait_for_interrupt().context("waiting for Ctrl-C")?;
            } else {
                App::new(Box::new(running))
                    .run()
                    .context("running the console")?;
            }
        }
        Command::Pos(args) => cardmesh_node::pos::cli::run(args, clock())?,
        Command::Station(args) => cardmesh_node::station::cli::run(args)?,
        Command::BlankCard {
            file,
            serial,
            transport_key,
        } => {
            let text = keys::KeyComponentInput(
                std::fs::read_to_string(&transport_key)
                    .with_context(|| format!("reading {}", transport_key.display()))?,
            );
            let transport = keys::parse_transport_file(&text.0)?;
            VirtualCard::create_blank(&file, serial, transport.for_chip(&serial))
                .with_context(|| format!("creating {}", file.display()))?;
            println!("blank card (chip {serial}) in {}", file.display());
        }
        Command::Check { data } => {
            let store = identity::open(&DataDir::new(&data), clock())?;
            store
                .verify_views()
                .context("the store's views differ from its feeds")?;
            println!("store is consistent: every view equals a refold of the feeds");
        }
    }
    Ok(())
}

/// A line for whoever watches a running node. The node keeps serving when nobody is
/// left reading (a closed terminal, `| head -1`): a station must not stop mid-fill
/// because its stdout went away, as `println!` would make it.
fn announce(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}
