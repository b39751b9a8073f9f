//! The storefront GraphQL API: schema, resolvers, per-request loaders,
//! scalars, and where errors get their codes. A resolver reads through the
//! request's `Scope` (loaders over the catalog's caches, and who is asking),
//! never upstream; the one mutation hands the cart to `checkout`.

mod checkout;
mod cost;
mod customer;
mod errors;
mod guard;
mod loader;
mod persisted;
mod prepare;
mod reader;
mod scalars;
mod shape;
mod structured;
mod types;

use std::sync::Arc;
use std::time::Duration;

use async_graphql::{Context, EmptySubscription, ID, Object, Result, SchemaBuilder};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use tokio::time::Instant;

use crate::cache::{Hit, Key, Reads, Sources, Tier, Value};
use crate::catalog::{Catalog, PageKey, PriceKey};
use crate::checkout::Checkout;
use crate::config::Server;
use crate::customers::{Customers, OrderAccess, OrderKey, Viewer};
use crate::domain::{self, Category as DomainCategory, Price, Stock, Timestamp};
use crate::error::{Error, Kind};
use crate::vocab::Priority;

pub use checkout::Mutation;
pub use cost::{Cost, Limits as CostLimits};
use customer::{Customer, Order};
pub use errors::{code_every_error, request_error};
pub use guard::Bounds;
use loader::Deadline;
pub use loader::Loader;
pub use persisted::{Persisted, sha256_hex};
pub use prepare::{Documents, Prepared, QueryLimits};
use types::{Category, PageInfo, Product, ProductConnection, ProductEdge};

pub type Schema = async_graphql::Schema<Query, Mutation, EmptySubscription>;

/// Builds the schema; resolvers reach the checkout service (and its price
/// token signer) as schema data. Query limits are not the library's: they
/// run earlier, in `prepare`, before any recursive walk of the document.
fn schema(
    server: &Server,
    checkout: Arc<Checkout>,
    validation: async_graphql::ValidationMode,
) -> Schema {
    let mut builder = builder(server).validation_mode(validation);
    if !server.introspection {
        builder = builder.disable_introspection();
    }
    builder.data(checkout).finish()
}

/// The schema twice: with the library's full validation, and with only the
/// rules that look at values, for texts whose shape passed full validation
/// before (`Prepared::known_valid`).
pub struct Schemas {
    strict: Schema,
    values: Schema,
}

impl Schemas {
    pub fn new(server: &Server, checkout: Arc<Checkout>) -> Schemas {
        use async_graphql::ValidationMode;
        Schemas {
            values: schema(server, checkout.clone(), ValidationMode::Values),
            strict: schema(server, checkout, ValidationMode::Strict),
        }
    }

    /// Runs `request` (prepared by `documents`) on the schema it may use,
    /// and remembers a text whose shape passed full validation.
    pub async fn execute(
        &self,
        documents: &Documents,
        prepared: &Prepared,
        request: async_graphql::Request,
    ) -> async_graphql::Response {
        let schema = if prepared.known_valid {
            &self.values
        } else {
            &self.strict
        };
        let query = (!prepared.known_valid).then(|| request.query.clone());
        let response = schema.execute(request).await;
        if let Some(query) = query.filter(|_| !is_request_error(&response)) {
            documents.passed_validation(&query);
        }
        response
    }
}

/// A request error happens before execution: there is no data and no
/// error is tied to a field path (field errors always carry one).
pub fn is_request_error(response: &async_graphql::Response) -> bool {
    response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty())
}

/// The limits `prepare` holds every request to, from config.
pub fn query_limits(server: &Server, checkout: &crate::config::Checkout) -> QueryLimits {
    QueryLimits {
        text: Bounds {
            max_nesting: server.max_query_depth + NESTING_SLACK,
            max_tokens: server.max_query_tokens,
            max_aliases: server.max_query_aliases,
        },
        cost: CostLimits {
            max_depth: server.max_query_depth,
            max_introspection_depth: server.max_introspection_depth,
            max_complexity: server.max_query_complexity,
            max_fragment_depth: server.max_fragment_depth,
            max_verifications: checkout.max_per_request,
            introspection: server.introspection,
        },
    }
}

/// Brackets that input values (lists, objects, argument lists) may add on
/// top of selection depth.
const NESTING_SLACK: usize = 16;

fn builder(server: &Server) -> SchemaBuilder<Query, Mutation, EmptySubscription> {
    // A backstop only: the guard has bounded nesting and fragment depth
    // before the library's own recursion check could see the document.
    let recursion = server.max_query_depth + NESTING_SLACK + server.max_fragment_depth + 1;
    Schema::build(Query, Mutation, EmptySubscription).limit_recursive_depth(recursion)
}

#[cfg(test)]
pub(crate) fn schema_for_tests() -> Schema {
    builder(&Server::default()).finish()
}

/// The SDL `moat schema` prints and `schema/storefront.graphql` holds.
pub fn sdl() -> String {
    builder(&Server::default()).finish().sdl()
}

/// What one GraphQL request reads through: who is asking and the loaders
/// that batch its cache reads.
pub struct Scope {
    pub catalog: Arc<Catalog>,
    /// Who is asking (resolved by `http` before the request runs); read
    /// through `viewer()`.
    viewer: Viewer,
    /// The price segment of the shopper, or why it is unknown (the CRM
    /// could not say who a token belongs to): then every price fails
    /// rather than showing a signed-in shopper anonymous prices.
    segment: Result<String, Error>,
    /// One clock reading per request, so every `ageSeconds` agrees.
    pub now: Timestamp,
    /// When this request stops waiting on upstream data.
    deadline: Deadline,
    pub products: Loader<String, domain::Product>,
    /// sku → product id, so `product(sku:)` aliases batch like `product(id:)`.
    pub product_ids: Loader<String, String>,
    pub prices: Loader<PriceKey, Price>,
    pub stock: Loader<String, Stock>,
    pub orders: Loader<OrderKey, OrderAccess>,
    /// What this request read from the cache, for storing its answer.
    pub reads: Arc<Reads>,
    /// The records its answer is built from, for HTTP caches.
    pub sources: Arc<Sources>,
}

impl Scope {
    /// An anonymous request priced in `segment` (benches and tests use
    /// this; the HTTP handler uses `for_viewer`).
    pub fn new(
        catalog: Arc<Catalog>,
        customers: &Customers,
        segment: String,
        deadline: Duration,
    ) -> Scope {
        Scope::build(catalog, customers, Viewer::Anonymous, Ok(segment), deadline)
    }

    /// A request by `viewer`: anonymous shoppers get the default segment,
    /// customers their own.
    pub fn for_viewer(
        catalog: Arc<Catalog>,
        customers: &Customers,
        viewer: Viewer,
        deadline: Duration,
    ) -> Scope {
        let segment = match &viewer {
            Viewer::Anonymous => Ok(catalog.selling.default_segment.clone()),
            Viewer::Customer(c) => Ok(c.segment.clone()),
            Viewer::Unresolved(e) => Err(e.clone()),
        };
        Scope::build(catalog, customers, viewer, segment, deadline)
    }

    fn build(
        catalog: Arc<Catalog>,
        customers: &Customers,
        viewer: Viewer,
        segment: Result<String, Error>,
        deadline: Duration,
    ) -> Scope {
        let deadline = Deadline::at(Instant::now() + deadline);
        // An anonymous answer is the same for everyone who asks, and HTTP
        // caches may share it; a customer's is the same for their segment
        // until a field reads who they are (`viewer`), and stays private.
        let (reads, sources) = match viewer {
            Viewer::Anonymous => (Reads::recording(), Sources::recording()),
            Viewer::Customer(_) => (Reads::recording(), Sources::ignored()),
            Viewer::Unresolved(_) => (Reads::ignored(), Sources::ignored()),
        };
        let (reads, sources) = (Arc::new(reads), Arc::new(sources));
        // Stock that comes with the prices is waited for, not asked apart.
        let ahead = catalog
            .stock_comes_with_prices()
            .then(loader::Ahead::default);
        let at = (&deadline, &reads, &sources);
        Scope {
            products: loader(&catalog.products, at),
            product_ids: loader(&catalog.product_ids, at),
            prices: loader(&catalog.prices, at).leading(ahead.clone()),
            stock: loader(&catalog.stock, at).following(ahead),
            orders: loader(&customers.orders, at),
            reads,
            sources,
            catalog,
            viewer,
            segment,
            now: Timestamp::now(),
            deadline,
        }
    }

    /// One key of a tier read outside the loaders (lists, lookups that
    /// do not batch), under the request's deadline.
    async fn get_one<K: Key, V: Value>(
        &self,
        tier: &Arc<Tier<K, V>>,
        key: K,
    ) -> Result<Hit<V>, Error> {
        if let Some(hit) = tier.get_recorded(&key, &self.reads) {
            tier.note(&key, &hit, &self.sources);
            return Ok(hit);
        }
        let read = tier.get_many(vec![key.clone()], Priority::Browse);
        let found = self.deadline.bound(read).await.and_then(|mut found| {
            found
                .remove(&key)
                .unwrap_or_else(|| Err(Error::internal(format!("{} lost {key:?}", tier.entity()))))
        });
        if let Ok(hit) = &found {
            tier.note(&key, hit, &self.sources);
        }
        found
    }

    /// Who is asking. A customer's answer then depends on who they are,
    /// not only on their segment: it is stored for no one. (Anonymous is
    /// the same for everyone.)
    pub fn viewer(&self) -> &Viewer {
        if !matches!(self.viewer, Viewer::Anonymous) {
            self.reads.spoil();
        }
        &self.viewer
    }

    /// The segment prices are read in, or why it is unknown.
    pub fn segment(&self) -> Result<&str, Error> {
        self.segment.as_deref().map_err(Clone::clone)
    }

    async fn categories(&self) -> Result<Arc<Vec<DomainCategory>>, Error> {
        let hit = self.get_one(&self.catalog.categories, ()).await?;
        Ok(Arc::new(hit.value().cloned().unwrap_or_default()))
    }

    async fn product(&self, id: String) -> Result<Option<Product>, Error> {
        Ok(self.products.load(id).await?.found().map(Product))
    }
}

/// A loader of `tier` for one request: its deadline and its records of
/// what it read.
fn loader<K: Key, V: Value>(
    tier: &Arc<Tier<K, V>>,
    (deadline, reads, sources): (&Deadline, &Arc<Reads>, &Arc<Sources>),
) -> Loader<K, V> {
    Loader::new(
        tier.clone(),
        deadline.clone(),
        reads.clone(),
        sources.clone(),
    )
}

pub struct Query;

#[Object]
impl Query {
    /// One product by `id` or by `sku` (exactly one of them).
    async fn product(
        &self,
        ctx: &Context<'_>,
        id: Option<ID>,
        sku: Option<String>,
    ) -> Result<Option<Product>> {
        let scope = ctx.data::<Scope>()?;
        match (id, sku) {
            (Some(id), None) => {
                check_key("id", &id)?;
                Ok(scope.product(id.0).await?)
            }
            (None, Some(sku)) => {
                check_key("sku", &sku)?;
                let hit = scope.product_ids.load(sku).await?;
                match hit.value() {
                    Some(id) => Ok(scope.product(id.clone()).await?),
                    None => Ok(None),
                }
            }
            _ => Err(Error::bad_input("product", "give exactly one of `id` or `sku`").into()),
        }
    }

    /// Products in catalog order, optionally within one category.
    async fn products(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        category_id: Option<ID>,
    ) -> Result<ProductConnection> {
        products_page(ctx, first, after, category_id.map(|c| c.0)).await
    }

    async fn category(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Category>> {
        let all = ctx.data::<Scope>()?.categories().await?;
        Ok(all
            .iter()
            .find(|c| c.id == id.0)
            .map(|c| Category(c.clone())))
    }

    async fn categories(&self, ctx: &Context<'_>) -> Result<Vec<Category>> {
        let all = ctx.data::<Scope>()?.categories().await?;
        Ok(all.iter().map(|c| Category(c.clone())).collect())
    }

    /// The signed-in customer (`Authorization: Bearer <customer token>`);
    /// null when anonymous.
    async fn viewer(&self, ctx: &Context<'_>) -> Result<Option<Customer>> {
        match ctx.data::<Scope>()?.viewer() {
            Viewer::Anonymous => Ok(None),
            Viewer::Customer(c) => Ok(Some(Customer(c.clone()))),
            Viewer::Unresolved(e) => Err(e.clone().into()),
        }
    }

    /// One of the signed-in customer's orders. Null with `FORBIDDEN` for
    /// another customer's order, `UNAUTHENTICATED` when anonymous; null
    /// without an error when there is no such order.
    async fn order(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Order>> {
        let scope = ctx.data::<Scope>()?;
        let customer = match scope.viewer() {
            Viewer::Customer(c) => c,
            Viewer::Anonymous => {
                return Err(Error::new(
                    Kind::Unauthenticated,
                    "sign in to see orders (Authorization: Bearer <customer token>)",
                )
                .into());
            }
            Viewer::Unresolved(e) => return Err(e.clone().into()),
        };
        check_key("id", &id)?;
        let key = OrderKey {
            order_id: id.0,
            customer_id: customer.id.clone(),
        };
        let order = scope.orders.load(key).await?;
        Ok(OrderAccess::visible(order.value())?.map(Order))
    }
}

/// Page size when a query gives none, and the most it may ask for.
const DEFAULT_PAGE: i32 = 20;
const MAX_PAGE: i32 = 100;

/// How many items a page of `first` holds at most, for its cost.
fn page_size(first: Option<i64>) -> usize {
    first
        .unwrap_or(i64::from(DEFAULT_PAGE))
        .clamp(1, i64::from(MAX_PAGE)) as usize
}

/// Longest `after` cursor accepted: Moat's own cursors are far shorter,
/// and a cursor reaches an upstream URL and a cache key.
const MAX_CURSOR: usize = 1024;

/// Ids and skus are checked before they reach a cache key or an upstream.
fn check_key(field: &str, value: &str) -> Result<(), Error> {
    domain::check_key(value).map_err(|problem| Error::bad_input(field, problem))
}

/// A position in a listing: the PIM page it lies on and how many of that
/// page's products come before it. Opaque to clients (base64).
struct Cursor {
    page: Option<String>,
    skip: usize,
}

impl Cursor {
    fn encode(&self) -> String {
        let text = format!("{}:{}", self.skip, self.page.as_deref().unwrap_or(""));
        URL_SAFE_NO_PAD.encode(text)
    }

    fn decode(text: &str) -> Result<Cursor, Error> {
        let bad = || Error::bad_input("after", "is not a cursor this API gave out");
        if text.len() > MAX_CURSOR {
            return Err(Error::bad_input(
                "after",
                format!("is longer than {MAX_CURSOR} characters; use a cursor this API gave out"),
            ));
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let (skip, page) = text.split_once(':').ok_or_else(bad)?;
        if page.chars().any(char::is_control) {
            return Err(bad());
        }
        let skip: usize = skip.parse().map_err(|_| bad())?;
        if skip >= MAX_PAGE as usize {
            return Err(bad());
        }
        Ok(Cursor {
            page: Some(page.to_string()).filter(|p| !p.is_empty()),
            skip,
        })
    }
}

async fn products_page(
    ctx: &Context<'_>,
    first: Option<i32>,
    after: Option<String>,
    category_id: Option<String>,
) -> Result<ProductConnection> {
    let scope = ctx.data::<Scope>()?;
    let first = first.unwrap_or(DEFAULT_PAGE);
    if !(0..=MAX_PAGE).contains(&first) {
        return Err(Error::bad_input("first", format!("must be between 0 and {MAX_PAGE}")).into());
    }
    if let Some(category) = &category_id {
        check_key("categoryId", category)?;
    }
    let at = match after.as_deref() {
        Some(text) => Cursor::decode(text)?,
        None => Cursor {
            page: None,
            skip: 0,
        },
    };
    // The PIM page is fetched from the cursor's page start, large enough to
    // cover what was skipped plus what is asked; it never exceeds MAX_PAGE
    // because a cursor moves to the next PIM page once one is used up.
    let limit = (at.skip + first as usize).clamp(1, MAX_PAGE as usize);
    let key = PageKey {
        cursor: at.page.clone(),
        limit,
        category_id,
    };
    let hit = scope.get_one(&scope.catalog.pages, key).await?;
    let page = hit.value().cloned().unwrap_or(domain::ProductPage {
        ids: Vec::new(),
        next_cursor: None,
    });
    let wanted: Vec<&String> = page.ids.iter().skip(at.skip).take(first as usize).collect();
    let products =
        futures_util::future::join_all(wanted.iter().map(|id| scope.product((*id).clone()))).await;
    let taken = at.skip + wanted.len();
    let page_used_up = taken >= page.ids.len();
    let mut edges = Vec::with_capacity(products.len());
    for (i, product) in products.into_iter().enumerate() {
        // A product that vanished between the listing and now is skipped.
        let Some(product) = product? else { continue };
        let position = at.skip + i + 1;
        let cursor = if position == taken && page_used_up && page.next_cursor.is_some() {
            Cursor {
                page: page.next_cursor.clone(),
                skip: 0,
            }
        } else {
            Cursor {
                page: at.page.clone(),
                skip: position,
            }
        };
        edges.push(ProductEdge {
            cursor: cursor.encode(),
            node: product,
        });
    }
    let has_next_page = !page_used_up || page.next_cursor.is_some();
    Ok(ProductConnection {
        page_info: PageInfo {
            has_next_page,
            end_cursor: edges.last().map(|e| e.cursor.clone()),
        },
        nodes: edges.iter().map(|e| e.node.clone()).collect(),
        edges,
    })
}
