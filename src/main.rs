//! The `moat` command: `serve` (the default), `sim`, `check-config`,
//! `schema` and `admin`.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use moat::admin::cli::{self, AdminCommand};
use moat::app::Gateway;
use moat::config::{Config, Secrets};
use moat::{sim, telemetry};

#[derive(Parser)]
#[command(
    name = "moat",
    version,
    about = "A storefront isolation layer: a caching GraphQL gateway in front of PIM, ERP, CRM and OMS"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default command).
    Serve {
        /// Config file; without it `config/moat.toml` (if present) and defaults.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run the upstream simulator alone (PIM, ERP, CRM, OMS on one port).
    Sim {
        #[arg(long, default_value = "127.0.0.1:7070")]
        listen: SocketAddr,
        /// Products in the seeded catalog.
        #[arg(long, default_value_t = 10_000)]
        products: usize,
        /// Catalog seed: same seed, same data.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Base URL of a Moat public listener to send change events to.
        #[arg(long, requires = "events_secret")]
        events_to: Option<String>,
        /// HMAC secret to sign those events with.
        #[arg(long, env = "MOAT_EVENTS_SECRET", hide_env_values = true)]
        events_secret: Option<String>,
        /// Send events thin (entity and version; Moat refetches) instead
        /// of fat (the changed item).
        #[arg(long)]
        thin_events: bool,
        /// Deliver every event twice, the second copy after a random
        /// pause, so deliveries overlap and arrive out of order.
        #[arg(long)]
        event_chaos: bool,
        /// Share (0 to 1) of the products whose prices and stock change
        /// silently every minute: drift for reconciliation to find.
        #[arg(long, default_value_t = 0.0)]
        drift_rate: f64,
    },
    /// Check a config file; every problem names the file, the key and what is allowed.
    CheckConfig { path: PathBuf },
    /// Print the storefront GraphQL schema (SDL).
    Schema,
    /// Talk to a running gateway's admin API (token from MOAT_ADMIN_TOKEN).
    Admin {
        /// The admin listener.
        #[arg(long, env = "MOAT_ADMIN_URL", default_value = "http://127.0.0.1:9090")]
        url: String,
        #[command(subcommand)]
        command: AdminCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve { config: None }) {
        Command::Serve { config } => serve(config),
        Command::Sim {
            listen,
            products,
            seed,
            events_to,
            events_secret,
            thin_events,
            event_chaos,
            drift_rate,
        } => run_sim(
            listen,
            sim::SimConfig {
                products,
                seed,
                events_to,
                events_secret,
                event_mode: sim::EventMode {
                    form: if thin_events {
                        sim::EventForm::Thin
                    } else {
                        sim::EventForm::Fat
                    },
                    chaos: event_chaos,
                },
                drift_rate,
                ..sim::SimConfig::default()
            },
        ),
        Command::CheckConfig { path } => match Config::from_sources(Some(&path), false) {
            Ok(_) => {
                println!("{}: ok", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprint!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Schema => {
            print!("{}", moat::graphql::sdl());
            ExitCode::SUCCESS
        }
        Command::Admin { url, command } => {
            let token = std::env::var("MOAT_ADMIN_TOKEN")
                .ok()
                .filter(|t| !t.is_empty());
            match runtime().block_on(cli::run(&url, token.as_deref(), command)) {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("moat admin: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    }
}

fn serve(path: Option<PathBuf>) -> ExitCode {
    let config = match Config::load(path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init_logs(&config.telemetry);
    runtime().block_on(async {
        let gateway = match Gateway::start(config, Secrets::from_env()).await {
            Ok(g) => g,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                return ExitCode::FAILURE;
            }
        };
        eprintln!(
            "moat: GraphQL on http://{}/graphql, admin on http://{}",
            gateway.public_addr, gateway.admin_addr
        );
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = hangup() => reload(&gateway, path.as_deref()),
            }
        }
        tracing::info!("shutting down: draining requests");
        gateway.stop().await;
        ExitCode::SUCCESS
    })
}

/// SIGHUP: read the config file again. A bad file is refused with its
/// problems and the running settings stay.
fn reload(gateway: &Gateway, path: Option<&std::path::Path>) {
    match Config::load(path) {
        Ok(config) => {
            let restart = gateway.reload(config);
            tracing::info!("configuration reloaded");
            if !restart.is_empty() {
                tracing::warn!(keys = ?restart, "these changes take effect only after a restart");
            }
        }
        Err(e) => {
            tracing::error!(problems = %e, "configuration reload refused; the running settings stay")
        }
    }
}

/// Resolves at the next SIGHUP (never on platforms without it).
async fn hangup() {
    #[cfg(unix)]
    {
        use std::sync::OnceLock;
        use tokio::sync::Mutex;
        // One signal stream for the process, so no SIGHUP between two
        // waits is lost.
        static HUP: OnceLock<Option<Mutex<tokio::signal::unix::Signal>>> = OnceLock::new();
        let hup = HUP.get_or_init(|| {
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .ok()
                .map(Mutex::new)
        });
        match hup {
            Some(s) => {
                s.lock().await.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    }
    #[cfg(not(unix))]
    std::future::pending::<()>().await
}

fn run_sim(listen: SocketAddr, config: sim::SimConfig) -> ExitCode {
    telemetry::init_logs(&Default::default());
    runtime().block_on(async {
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cannot listen on {listen}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let products = config.products;
        let simulator = sim::Simulator::new(config);
        eprintln!("moat sim: upstream protocol v1 on http://{listen} ({products} products)");
        match sim::serve(listener, simulator, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("simulator failed: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
