//! The `moat` command: `serve` (the default), `sim`, `check-config`,
//! `contract verify`, `doctor`, `schema` and `admin`.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::PossibleValuesParser;
use clap::{Parser, Subcommand};

use moat::admin::cli::{self, AdminCommand};
use moat::app::Gateway;
use moat::config::{Config, ConfigError, Problem, Secrets};
use moat::upstream::probe;
use moat::{doctor, sim, telemetry};

/// mimalloc: per-thread free lists, and no trimming back to the kernel
/// between bursts (glibc's malloc did, and refaulted the pages).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// Config file; without it `config/moat.toml` (if present) and
        /// defaults. Repeatable: later files add to and override earlier
        /// ones (a recipe from config/connectors/ over your own file).
        #[arg(long)]
        config: Vec<PathBuf>,
    },
    /// Run the upstream simulator alone (PIM, ERP, CRM, OMS on one port).
    #[command(after_help = SIM_CONTROL)]
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
        /// Products a second whose EUR prices (every segment) and stock
        /// change, walking SKU-000001..SKU-000020 in turn; with
        /// --events-to each change is sent as its events.
        #[arg(long, value_name = "N", default_value_t = 0)]
        change_rate: u32,
        /// Serve only these systems' routes (comma-separated), so each
        /// simulator plays one system; the others answer 404. Default: all.
        #[arg(long, value_delimiter = ',', value_parser = PossibleValuesParser::new(sim::SYSTEMS))]
        systems: Option<Vec<String>>,
        /// Demand `Authorization: Bearer TOKEN` on every protocol route.
        #[arg(
            long,
            value_name = "TOKEN",
            env = "MOAT_SIM_REQUIRE_TOKEN",
            hide_env_values = true
        )]
        require_token: Option<String>,
        /// Serve `POST /oauth/token` (client credentials) to this client,
        /// and demand the tokens it issues on every protocol route.
        #[arg(
            long,
            value_name = "ID:SECRET",
            env = "MOAT_SIM_OAUTH_CLIENT",
            hide_env_values = true
        )]
        oauth_client: Option<String>,
        /// Lifetime of an issued token.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration, requires = "oauth_client")]
        token_ttl: Duration,
        /// Protocol version to declare in `Moat-Protocol`; another than v1
        /// tests a gateway's refusal of an unknown protocol.
        #[arg(long, value_name = "VERSION", default_value = "v1", value_parser = parse_protocol)]
        declare_protocol: String,
        /// Whose API to speak: Moat's protocol v1, or a vendor's, with the
        /// same catalog (for the recipes in config/connectors/).
        #[arg(long, default_value = "v1", value_parser = PossibleValuesParser::new(sim::DIALECTS))]
        dialect: String,
        /// How customers sign in: opaque tokens the CRM resolves, or JWTs
        /// the simulator signs (keys at `/.well-known/jwks.json`; issuer
        /// `moat-sim`, audience `moat`).
        #[arg(long, default_value = "opaque", value_parser = PossibleValuesParser::new(["opaque", "jwt"]))]
        customer_tokens: String,
        /// The signature algorithm of those JWTs (ES256 unless given; only
        /// with `--customer-tokens jwt`).
        #[arg(long, value_parser = PossibleValuesParser::new(sim::JwtAlg::NAMES))]
        jwt_alg: Option<String>,
    },
    /// Check a config file (several: each over the ones before it, as
    /// `--config` takes them); every problem names the file, the key and
    /// what is allowed.
    CheckConfig {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Hold a system of record to upstream protocol v1.
    Contract {
        #[command(subcommand)]
        command: ContractCommand,
    },
    /// Work on a connector (a `protocol = "rest"` system's routes).
    Connector {
        #[command(subcommand)]
        command: ConnectorCommand,
    },
    /// The readiness checklist: systems, credentials, contracts, Redis,
    /// events, secrets and limits, each OK, WARN or FAIL with the fix.
    /// Exits 1 when anything fails.
    Doctor {
        /// Config file; without it `config/moat.toml` (if present) and
        /// defaults. Repeatable: later files override earlier ones.
        #[arg(long)]
        config: Vec<PathBuf>,
        /// The same lines as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the storefront GraphQL schema (SDL).
    Schema,
    /// Ask a running gateway whether it is ready: GET the URL, exit 0 on
    /// 200 and 1 otherwise. For container health checks in images without
    /// a shell or curl (deploy/container/Dockerfile).
    Healthcheck {
        #[arg(default_value = "http://127.0.0.1:8080/readyz")]
        url: String,
    },
    /// Talk to a running gateway's admin API (token from MOAT_ADMIN_TOKEN,
    /// or MOAT_ADMIN_TOKEN_{NAME} with --as NAME). Answers are tables;
    /// --json prints the API's answer. Options go anywhere on the line.
    /// Exit codes: 0 done, 1 refused (a bad value, an unknown name, a
    /// pass already running), 2 usage, 3 auth (no token, a wrong one, a
    /// viewer's for a change), 4 not available (the gateway, or Redis for
    /// the dead-letter queue), 5 the gateway failed.
    Admin {
        /// The admin listener.
        #[arg(
            long,
            env = "MOAT_ADMIN_URL",
            default_value = "http://127.0.0.1:9090",
            global = true
        )]
        url: String,
        /// Sign in with the named token MOAT_ADMIN_TOKEN_{NAME} instead.
        #[arg(long = "as", value_name = "NAME", global = true)]
        name: Option<String>,
        /// Print the admin API's JSON answer instead of tables.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand)]
enum ConnectorCommand {
    /// Ask one system for one record through its route, as Moat would (its
    /// credentials and TLS), and print each request, the raw answer and
    /// every mapped item with what is wrong with it. Exits 1 on any
    /// violation.
    Try {
        /// The system (`[systems.NAME]`, protocol = "rest").
        #[arg(long)]
        system: String,
        /// products, categories, prices, inventory, customers or orders.
        #[arg(long, value_parser = PossibleValuesParser::new(["products", "categories", "prices", "inventory", "customers", "orders"]))]
        record: String,
        /// A sku (products, prices, inventory), a customer token or an
        /// order id; products without one: the first catalog page.
        #[arg(long)]
        key: Option<String>,
        /// The price segment (default: the catalog's default segment).
        #[arg(long)]
        segment: Option<String>,
        /// The price currency (default: the catalog's default currency).
        #[arg(long)]
        currency: Option<String>,
        /// Config file; repeatable, later files over earlier ones.
        #[arg(long)]
        config: Vec<PathBuf>,
        /// Bytes of each raw answer shown.
        #[arg(long, default_value_t = 4000)]
        show: usize,
    },
}

#[derive(Subcommand)]
enum ContractCommand {
    /// Make the calls Moat makes to one system and check every answer
    /// against the contract (status, protocol version, JSON Schema, Moat's
    /// own checks); each violation is printed with its path and rule.
    /// Exits 1 if there is any.
    Verify {
        /// The system, as `[systems.NAME]` or `[entities]` names it (its
        /// auth and TLS come from config and the environment), or pim,
        /// erp, crm, oms.
        #[arg(long)]
        system: String,
        /// Where it is (default: its configured URL).
        #[arg(long)]
        url: Option<String>,
        /// Config file; without it `config/moat.toml` (if present) and
        /// defaults. Repeatable: later files override earlier ones.
        #[arg(long)]
        config: Vec<PathBuf>,
        /// Skus to price, stock and quote (default: the first products the
        /// same URL lists).
        #[arg(long, value_delimiter = ',')]
        skus: Vec<String>,
        /// A customer token to read (otherwise only an unknown one is tried).
        #[arg(long, env = "MOAT_CONTRACT_CUSTOMER_TOKEN", hide_env_values = true)]
        customer_token: Option<String>,
        /// An order id to read (otherwise only an unknown one is tried).
        #[arg(long)]
        order_id: Option<String>,
        /// The report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `moat sim --help`: the control calls beside the protocol routes.
const SIM_CONTROL: &str = "\
Control calls (JSON; on the simulator's own address):
  GET  /_sim/faults                 each system's injected faults
  POST /_sim/faults/{system}        {latency_ms, error_rate, down, malformed_rate}
  PUT  /_sim/prices/{sku}           {amount: \"12.34\", currency?, segment?, emit_event?}
  PUT  /_sim/inventory/{sku}        {available, emit_event?}
  PUT  /_sim/products/{id}          {name?, description?, emit_event?}
  GET  /_sim/customers              customers and their tokens
  GET  /_sim/events                 the event form; POST {form: fat|thin, chaos}
  GET  /_sim/stats                  calls and items served per route
  GET  /_sim/traces                 trace context of recent calls
  POST /_sim/oauth/expire           expire every issued token
  POST /_sim/reset                  back to the seeded catalog, no faults
emit_event sends the change to --events-to, signed with --events-secret.
Example: curl -X PUT localhost:7070/_sim/prices/SKU-000001 -d '{\"amount\":\"9.99\",\"emit_event\":true}'";

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve { config: Vec::new() }) {
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
            change_rate,
            systems,
            require_token,
            oauth_client,
            token_ttl,
            declare_protocol,
            dialect,
            customer_tokens,
            jwt_alg,
        } => {
            // Checked here, not by clap, whose errors would echo the value.
            if require_token.as_deref() == Some("") {
                eprintln!("moat sim: --require-token (MOAT_SIM_REQUIRE_TOKEN) must not be empty");
                return ExitCode::from(2);
            }
            if jwt_alg.is_some() && customer_tokens != "jwt" {
                eprintln!(
                    "moat sim: --jwt-alg is how the simulator signs JWTs: give it with --customer-tokens jwt"
                );
                return ExitCode::from(2);
            }
            let oauth_client = match oauth_client.as_deref().map(split_client) {
                None => None,
                Some(Some(client)) => Some(client),
                Some(None) => {
                    eprintln!(
                        "moat sim: --oauth-client (MOAT_SIM_OAUTH_CLIENT) must be ID:SECRET, both non-empty"
                    );
                    return ExitCode::from(2);
                }
            };
            run_sim(
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
                    change_rate,
                    systems,
                    require_token,
                    oauth_client,
                    token_ttl,
                    protocol: declare_protocol,
                    dialect: sim::Dialect::parse(&dialect).unwrap_or_default(),
                    customer_tokens: match customer_tokens.as_str() {
                        "jwt" => sim::CustomerTokens::Jwt(
                            jwt_alg
                                .as_deref()
                                .and_then(sim::JwtAlg::parse)
                                .unwrap_or_default(),
                        ),
                        _ => sim::CustomerTokens::Opaque,
                    },
                    ..sim::SimConfig::default()
                },
            )
        }
        Command::CheckConfig { paths } => {
            let files: Vec<&std::path::Path> = paths.iter().map(PathBuf::as_path).collect();
            let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            let shown = shown.join(" + ");
            match connected(Config::from_files(&files, false), &shown) {
                Ok(_) => {
                    println!("{shown}: ok");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprint!("{e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Contract {
            command:
                ContractCommand::Verify {
                    system,
                    url,
                    config,
                    skus,
                    customer_token,
                    order_id,
                    json,
                },
        } => {
            let config = match load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprint!("{e}");
                    return ExitCode::from(2);
                }
            };
            let target =
                match probe::Target::new(&config, &Secrets::from_env(), &system, url.as_deref()) {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("moat contract verify: {}", e.message());
                        return ExitCode::from(2);
                    }
                };
            let sample = probe::Sample {
                skus,
                customer_token,
                order_id,
                ..probe::Sample::from_config(&config)
            };
            let report = runtime().block_on(probe::verify(&target, &sample));
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                println!("{}", report.render());
            }
            if report.violations() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Connector {
            command:
                ConnectorCommand::Try {
                    system,
                    record,
                    key,
                    segment,
                    currency,
                    config,
                    show,
                },
        } => {
            let config = match load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprint!("{e}");
                    return ExitCode::from(2);
                }
            };
            let refuse = |why: &str| {
                eprintln!("moat connector try: {why}");
                ExitCode::from(2)
            };
            let target = match probe::Target::new(&config, &Secrets::from_env(), &system, None) {
                Ok(t) => t,
                Err(e) => return refuse(e.message()),
            };
            let mut sample = probe::Sample::from_config(&config);
            if let Some(segment) = segment {
                sample.segment = segment;
            }
            if let Some(code) = currency {
                match moat::vocab::Currency::from_code(&code) {
                    Some(c) => sample.currency = c,
                    None => return refuse(&format!("{code:?} is not a currency Moat knows")),
                }
            }
            let Some(record) = moat::vocab::Record::ALL
                .into_iter()
                .find(|r| r.name() == record)
            else {
                return refuse(&format!("no record {record:?}"));
            };
            match runtime().block_on(probe::try_route(&target, record, key.as_deref(), &sample)) {
                Ok(tried) => {
                    println!("{}", tried.render(show));
                    if tried.violations() == 0 {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => refuse(e.message()),
            }
        }
        Command::Doctor { config, json } => {
            let config = match load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprint!("{e}");
                    return ExitCode::from(2);
                }
            };
            let lines = runtime().block_on(doctor::run(&config, &Secrets::from_env()));
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&lines).unwrap_or_default()
                );
            } else {
                println!("{}", doctor::render(&lines));
            }
            if doctor::ready(&lines) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Schema => {
            print!("{}", moat::graphql::sdl());
            ExitCode::SUCCESS
        }
        Command::Healthcheck { url } => healthcheck(&url),
        Command::Admin {
            url,
            name,
            json,
            command,
        } => {
            let variable = name.as_deref().map_or("MOAT_ADMIN_TOKEN".into(), |name| {
                moat::config::token_variable(name)
            });
            let token = std::env::var(&variable).ok().filter(|t| !t.is_empty());
            if token.is_none() && name.is_some() {
                eprintln!("moat admin: {variable} is not set: export it with that token.");
                return ExitCode::from(cli::Exit::Auth as u8);
            }
            match runtime().block_on(cli::run(&url, token.as_deref(), json, command)) {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(refusal) => {
                    eprintln!("moat admin: {}.", refusal.message);
                    ExitCode::from(refusal.code())
                }
            }
        }
    }
}

/// `moat healthcheck URL`: 200 within 2 s, or exit 1 saying what came back.
fn healthcheck(url: &str) -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let answer = runtime().block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        client.get(url).send().await
    });
    match answer {
        Ok(r) if r.status() == reqwest::StatusCode::OK => ExitCode::SUCCESS,
        Ok(r) => {
            eprintln!("{url}: HTTP {}", r.status());
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("{url}: {e}");
            ExitCode::from(1)
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // While no hits are served, misses run on these threads, not the
        // full path's (`http::lane`): their flights look longer for the
        // misses that arrive meanwhile, as the door hands them in there.
        .on_thread_start(|| moat::cache::looks_before_take_off(3))
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    }
}

fn serve(paths: Vec<PathBuf>) -> ExitCode {
    let config = match load(&paths) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(2);
        }
    };
    // A named admin token and its role come from two places: both must be
    // there before anything starts.
    let secrets = Secrets::from_env();
    let problems = config.admin.token_problems(&secrets);
    if !problems.is_empty() {
        eprint!("{}", ConfigError { problems });
        return ExitCode::from(2);
    }
    if let Err(e) = moat::data_key::DataKeys::from_secrets(&secrets) {
        eprintln!("moat: cannot start: {e}");
        return ExitCode::from(2);
    }
    telemetry::init_logs(&config.telemetry);
    let admin_enabled = moat::admin::access::enabled(&config.admin, &secrets);
    let code = runtime().block_on(async {
        let gateway = match Gateway::start(config, secrets).await {
            Ok(g) => g,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                return ExitCode::FAILURE;
            }
        };
        eprintln!("{}", banner(&gateway, admin_enabled));
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = hangup() => reload(&gateway, &paths),
            }
        }
        tracing::info!("shutting down: draining requests");
        gateway.stop().await;
        ExitCode::SUCCESS
    });
    // Outside the runtime: the last export blocks.
    telemetry::traces::shutdown();
    code
}

/// What is listening, as the operator will use it: the admin API and its
/// console only when a token enables them (metrics are always served).
fn banner(gateway: &Gateway, admin_enabled: bool) -> String {
    let (public, admin) = (gateway.public_addr, gateway.admin_addr);
    let state = &gateway.state;
    let mut lines = vec![format!(
        "moat: GraphQL on http://{public}/graphql (GraphiQL in a browser); health http://{public}/healthz, readiness http://{public}/readyz"
    )];
    if admin_enabled {
        lines.push(format!(
            "moat: metrics on http://{admin}/metrics; admin API and console on http://{admin}/admin/"
        ));
    } else {
        lines.push(format!(
            "moat: metrics on http://{admin}/metrics; admin API and console off (set MOAT_ADMIN_TOKEN to turn them on)"
        ));
    }
    let systems: Vec<String> = state
        .upstreams
        .systems
        .iter()
        .map(|c| format!("{} {}", c.system.name(), c.url))
        .collect();
    lines.push(format!("moat: systems: {}", systems.join(", ")));
    lines.push(match &state.redis {
        Some(_) => "moat: Redis shared by the fleet (L2, events, dead letters)".to_string(),
        None => "moat: no Redis: L1 only, no dead-letter queue (set MOAT_REDIS_URL)".to_string(),
    });
    lines.join("\n")
}

/// The config `serve` and the other commands use (`Config::load`), with
/// its connectors' routes compiled: a bad request template or jq
/// expression is a config problem like any other.
fn load(paths: &[PathBuf]) -> Result<Config, ConfigError> {
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let source = if shown.is_empty() {
        "config".to_string()
    } else {
        shown.join(" + ")
    };
    connected(Config::load_all(paths), &source)
}

fn connected(loaded: Result<Config, ConfigError>, source: &str) -> Result<Config, ConfigError> {
    let config = loaded?;
    match moat::upstream::rest::connectors(&config) {
        Ok(_) => Ok(config),
        Err(problems) => Err(ConfigError {
            problems: problems
                .into_iter()
                .map(|(key, message)| Problem {
                    source: source.to_string(),
                    key,
                    message,
                })
                .collect(),
        }),
    }
}

/// SIGHUP: read the config file again. A bad file is refused with its
/// problems and the running settings stay.
fn reload(gateway: &Gateway, paths: &[PathBuf]) {
    match load(paths) {
        Ok(config) => {
            let restart = gateway.reload(config);
            tracing::info!("configuration reloaded");
            if !restart.is_empty() {
                tracing::warn!(
                    keys = ?restart,
                    "these changes take effect only after a restart; until then the running values stay"
                );
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

/// `ID:SECRET`, split at the first colon (ids have none; secrets may).
fn split_client(pair: &str) -> Option<(String, String)> {
    let (id, secret) = pair.split_once(':')?;
    (!id.is_empty() && !secret.is_empty()).then(|| (id.to_owned(), secret.to_owned()))
}

/// A protocol version must fit a header value; letters, digits, `.`, `-`
/// and `_` are plenty.
fn parse_protocol(version: &str) -> Result<String, String> {
    let fits = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    if !version.is_empty() && version.chars().all(fits) {
        Ok(version.to_owned())
    } else {
        Err("use letters, digits, '.', '-' or '_', like v1".to_owned())
    }
}

/// What `moat sim` plays, for its startup line: systems and whether (not
/// with what) it authenticates.
fn sim_summary(config: &sim::SimConfig) -> String {
    // In a fixed order and once each, however `--systems` listed them.
    let served = |name: &str| {
        let listed = config.systems.as_ref();
        listed.is_none_or(|names| names.iter().any(|n| n == name))
    };
    let systems: Vec<&str> = sim::SYSTEMS.into_iter().filter(|n| served(n)).collect();
    let systems = systems.join(", ");
    if config.dialect != sim::Dialect::V1 {
        // A vendor's API always asks for its own token flow.
        return format!(
            "{}'s API for what it holds of {systems} ({} products; auth: the vendor's token flow)",
            config.dialect.name(),
            config.products
        );
    }
    let auth = match (&config.require_token, &config.oauth_client) {
        (None, None) => "off".to_owned(),
        (Some(_), None) => "fixed bearer token".to_owned(),
        (fixed, Some(_)) => format!(
            "OAuth client credentials, tokens for {}{}",
            humantime::format_duration(config.token_ttl),
            if fixed.is_some() {
                ", or the fixed token"
            } else {
                ""
            }
        ),
    };
    let customers = match config.customer_tokens {
        sim::CustomerTokens::Opaque => String::new(),
        sim::CustomerTokens::Jwt(alg) => format!(
            "; customer tokens: {} JWTs, keys at /.well-known/jwks.json",
            alg.name()
        ),
    };
    format!(
        "upstream protocol {} for {systems} ({} products; auth {auth}{customers})",
        config.protocol, config.products
    )
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
        // The bound address, so `--listen 127.0.0.1:0` says its port.
        let addr = listener.local_addr().unwrap_or(listen);
        let summary = sim_summary(&config);
        let simulator = sim::Simulator::new(config);
        eprintln!("moat sim: http://{addr}: {summary}");
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
