//! What a connector's mapping costs per item, next to protocol v1's own
//! decoding: each recipe (`config/connectors/`) reads an answer its
//! vendor's simulator gave (`moat sim --dialect …`, fetched once through
//! the recipe's own route, token flow and all) and turns it into checked
//! domain values, as Moat does on every read:
//!
//! - `v1/…`: a protocol v1 answer's items, each through the contract check
//!   (`upstream::item`, the JSON Schema and Moat's own rules);
//! - `RECIPE/…`: the recipe's route reads the foreign answer (`items`,
//!   `map`: jq) and each mapped item goes through the same check.
//!
//! Each bench is one answer; its items are its throughput, so criterion
//! reports items per second and the time per item is the time over the
//! items (printed with the setup). No network while measuring.

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::path::Path;

use axum::http::StatusCode;
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use moat::config::{Config, Secrets, SystemSecrets};
use moat::sim::{Dialect, SimConfig};
use moat::upstream::probe::{Sample, Target, try_route};
use moat::upstream::rest::template::Values;
use moat::vocab::{Record, System};
use support::Sim;

// The allocator the binary runs with: mapping allocates a lot, and the
// figures should be the gateway's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Products per page read.
const PAGE: usize = 50;

/// One answer to map: the route that reads it and what it asked.
struct Answer {
    name: String,
    target: Target,
    route: &'static str,
    body: Bytes,
    entity: &'static str,
    /// The keys asked for (a route's map may pick by them).
    keys: Vec<String>,
    segment: Option<String>,
    currency: Option<String>,
    items: usize,
}

impl Answer {
    /// Maps the answer and checks each item: what a read does past HTTP.
    fn map(&self) -> usize {
        let route = self
            .target
            .connector
            .as_ref()
            .and_then(|c| c.route(self.route))
            .expect("the route");
        let values = Values {
            keys: &self.keys,
            segment: self.segment.as_deref(),
            currency: self.currency.as_deref(),
            ..Values::default()
        };
        let read = route
            .read(StatusCode::OK, &self.body, None, &values)
            .expect("a readable answer");
        let mut checked = 0;
        for mapped in read.items {
            for item in mapped.items.expect("a mapped item") {
                let json = item.to_string();
                moat::upstream::item(self.entity, self.target.system, json.as_bytes(), None)
                    .expect("a valid item");
                checked += 1;
            }
        }
        checked
    }
}

/// A protocol v1 list answer, each item through the contract check.
struct V1 {
    name: &'static str,
    entity: &'static str,
    items: Vec<Box<serde_json::value::RawValue>>,
}

impl V1 {
    fn decode(&self) -> usize {
        for item in &self.items {
            moat::upstream::item(
                self.entity,
                System::named("pim"),
                item.get().as_bytes(),
                None,
            )
            .expect("a valid item");
        }
        self.items.len()
    }
}

struct Recipe {
    system: &'static str,
    dialect: Dialect,
    /// Below the simulator's root: what `MOAT_{NAME}_URL` holds.
    prefix: &'static str,
    credentials: SystemSecrets,
    /// (record, key, route that reads it, protocol v1 entity)
    reads: &'static [(Record, Option<&'static str>, &'static str, &'static str)],
}

fn recipes() -> Vec<Recipe> {
    let client = |id: &str, secret: &str| SystemSecrets {
        client_id: Some(id.into()),
        client_secret: Some(secret.into()),
        ..SystemSecrets::default()
    };
    vec![
        Recipe {
            system: "akeneo",
            dialect: Dialect::Akeneo,
            prefix: "",
            credentials: SystemSecrets {
                user: Some("moat_api_user".into()),
                password: Some("api-password".into()),
                ..client("moat-connection", "connection-secret")
            },
            reads: &[(Record::Products, None, "product_list", "product")],
        },
        Recipe {
            system: "commercetools",
            dialect: Dialect::Commercetools,
            prefix: "/moat-demo",
            credentials: client("moat-client", "moat-secret"),
            reads: &[(Record::Prices, Some("SKU-000001"), "prices", "price")],
        },
        Recipe {
            system: "shopify",
            dialect: Dialect::Shopify,
            prefix: "/admin/api/2025-07",
            credentials: client("moat-app", "client-secret"),
            reads: &[
                (Record::Products, None, "product_list", "product"),
                (Record::Prices, Some("SKU-000001"), "prices", "price"),
            ],
        },
    ]
}

/// Every recipe's answers, fetched once from its simulator, and protocol
/// v1's for the same records.
fn answers(runtime: &tokio::runtime::Runtime) -> (Vec<Answer>, Vec<V1>) {
    runtime.block_on(async {
        let mut answers = Vec::new();
        for recipe in recipes() {
            let sim = Sim::start_with(SimConfig {
                products: 500,
                dialect: recipe.dialect,
                ..SimConfig::default()
            })
            .await;
            let file = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("config/connectors/{}.toml", recipe.system));
            let config = Config::from_files(&[file.as_path()], false).expect("the recipe loads");
            let mut secrets = Secrets::default();
            secrets
                .systems
                .insert(recipe.system.into(), recipe.credentials.clone());
            let url = format!("{}{}", sim.url, recipe.prefix);
            let mut sample = Sample::from_config(&config);
            sample.page = PAGE;
            for &(record, key, route, entity) in recipe.reads {
                let target =
                    Target::new(&config, &secrets, recipe.system, Some(&url)).expect("a target");
                let tried = try_route(&target, record, key, &sample)
                    .await
                    .expect("the simulator answers");
                assert_eq!(tried.violations(), 0, "{}", tried.render(2000));
                let body = tried.translation.exchanges[0].body.clone();
                let answer = Answer {
                    name: format!("{}/{route}", recipe.system),
                    target,
                    route,
                    body,
                    entity,
                    keys: key.map(str::to_string).into_iter().collect(),
                    segment: Some(sample.segment.clone()),
                    currency: Some(sample.currency.code().to_string()),
                    items: tried.items.len(),
                };
                assert_eq!(answer.map(), answer.items, "{}", answer.name);
                answers.push(answer);
            }
            drop(sim);
        }
        let sim = Sim::start_with(SimConfig {
            products: 500,
            ..SimConfig::default()
        })
        .await;
        let list = |path: String, name: &'static str, entity: &'static str| {
            let sim = &sim;
            async move {
                #[derive(serde::Deserialize)]
                struct List {
                    items: Vec<Box<serde_json::value::RawValue>>,
                }
                let body = reqwest::get(format!("{}{path}", sim.url))
                    .await
                    .expect("the simulator answers")
                    .bytes()
                    .await
                    .expect("a body");
                let list: List = serde_json::from_slice(&body).expect("a list");
                V1 {
                    name,
                    entity,
                    items: list.items,
                }
            }
        };
        let v1 = vec![
            list(
                format!("/pim/v1/products?limit={PAGE}"),
                "v1/product_list",
                "product",
            )
            .await,
            list(
                "/erp/v1/prices?skus=SKU-000001&segment=default&currency=EUR".into(),
                "v1/prices",
                "price",
            )
            .await,
        ];
        drop(sim);
        (answers, v1)
    })
}

fn mapping(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let (answers, v1) = answers(&runtime);
    let mut group = c.benchmark_group("map_per_item");
    for decoded in &v1 {
        eprintln!("{}: {} items", decoded.name, decoded.items.len());
        group.throughput(Throughput::Elements(decoded.items.len() as u64));
        group.bench_function(decoded.name, |b| b.iter(|| black_box(decoded.decode())));
    }
    for answer in &answers {
        eprintln!(
            "{}: {} items from {} bytes",
            answer.name,
            answer.items,
            answer.body.len()
        );
        group.throughput(Throughput::Elements(answer.items as u64));
        group.bench_function(&answer.name, |b| b.iter(|| black_box(answer.map())));
    }
    group.finish();
}

criterion_group!(benches, mapping);
criterion_main!(benches);
