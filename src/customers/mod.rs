//! Signed-in shoppers: a customer token resolved to a customer, and the
//! orders (OMS) a customer may read. `http` resolves the token before
//! GraphQL runs (an unknown one is answered 401 there); `graphql` reads a
//! customer's orders through here. Both are cached like the catalog, in
//! tiers of their own.
//!
//! A token is opaque (`[customers] tokens = "opaque"`: the CRM says whose
//! it is) or a JWT (`"jwt"`: verified here, in `jwt`, against the identity
//! provider's keys, `jwks`; then the CRM is asked for the customer its
//! `sub` names). Either way one tier caches the customer per sign-in key:
//! an opaque token's digest, or a verified subject's, so every token of
//! one JWT customer costs one CRM call until the entry expires.
//!
//! A token is a credential. It is never a cache key, a log field or a
//! metric label: the customer cache is keyed by its digest (an HMAC under
//! the data key when there is one, so Redis never holds an unkeyed hash of
//! a token; SHA-256 without one, when nothing personal reaches Redis), and
//! the key's `Debug` shows only a prefix of that digest.

mod jwks;
pub mod jwt;

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, join_all};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cache::key::{escape, join, split};
use crate::cache::{AnyTier, Batch, Fetch, Hit, Key, Tier, Tiers, Value};
use crate::config::{self, Config};
use crate::data_key::DataKeys;
use crate::domain::{Customer, Order};
use crate::error::{Error, Kind};
use crate::hex;
use crate::redis_link::RedisLink;
use crate::resilience::address_limit::{AddressLimit, Bucket};
use crate::telemetry;
use crate::upstream::{Crm, Oms, Upstreams};
use crate::vocab::{CacheMap, Entity, Priority};

/// Who is asking, as one request sees it.
#[derive(Debug, Clone)]
pub enum Viewer {
    /// No `Authorization` header.
    Anonymous,
    /// A token the CRM knows.
    Customer(Customer),
    /// A token given, but the CRM could not say whose it is and nothing was
    /// cached. Fields that depend on the customer fail with this error;
    /// they must not fall back to what an anonymous shopper would see.
    Unresolved(Error),
}

/// The customer cache key: the digest (hex) of an opaque token or of a
/// verified JWT's subject, plus what the CRM must be asked with, in memory
/// only. Equality and hashing use the digest alone.
#[derive(Clone)]
pub struct TokenKey {
    digest: String,
    /// The digest under the previous data key, while one is rotated out.
    previous: Option<String>,
    /// `None` for a key read back from Redis or the invalidation channel,
    /// which only ever see the digest.
    lookup: Option<Lookup>,
}

/// How the CRM is asked for a sign-in's customer.
#[derive(Clone)]
enum Lookup {
    /// By the opaque token.
    Token(Arc<str>),
    /// By customer id: the subject of a verified JWT.
    Subject(Arc<str>),
}

/// Starts a subject's SHA-256 input (without a data key): a space is no
/// bearer token character, so no opaque token digests the same.
const SUBJECT_PREFIX: &str = "jwt subject ";

impl TokenKey {
    /// The key of `token`: its HMAC under the data key, or its SHA-256
    /// without one.
    pub fn new(token: &str, keys: Option<&DataKeys>) -> TokenKey {
        let digest = match keys {
            Some(keys) => keys.current().token_digest(token),
            None => hex::encode(&Sha256::digest(token.as_bytes())),
        };
        TokenKey {
            digest,
            previous: keys
                .and_then(DataKeys::previous)
                .map(|k| k.token_digest(token)),
            lookup: Some(Lookup::Token(token.into())),
        }
    }

    /// The key of a verified JWT's subject (a customer id), apart from
    /// every opaque token's: its HMAC under the data key (labelled
    /// otherwise than tokens'), or a SHA-256 no token input can have.
    pub fn subject(id: &str, keys: Option<&DataKeys>) -> TokenKey {
        let digest = match keys {
            Some(keys) => keys.current().subject_digest(id),
            None => hex::encode(&Sha256::digest(format!("{SUBJECT_PREFIX}{id}").as_bytes())),
        };
        TokenKey {
            digest,
            previous: keys
                .and_then(DataKeys::previous)
                .map(|k| k.subject_digest(id)),
            lookup: Some(Lookup::Subject(id.into())),
        }
    }

    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Whether the CRM can be asked with this key: only keys read back
    /// from Redis or the invalidation stream lack the token.
    pub fn has_token(&self) -> bool {
        self.lookup.is_some()
    }
}

impl PartialEq for TokenKey {
    fn eq(&self, other: &TokenKey) -> bool {
        self.digest == other.digest
    }
}

impl Eq for TokenKey {}

impl Hash for TokenKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.digest.hash(state);
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenKey(sha256:{}…)", &self.digest[..12])
    }
}

impl Key for TokenKey {
    fn encode(&self) -> String {
        self.digest.clone()
    }

    fn decode(text: &str) -> Option<TokenKey> {
        let is_digest = text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit());
        is_digest.then(|| TokenKey {
            digest: text.to_ascii_lowercase(),
            previous: None,
            lookup: None,
        })
    }

    fn encode_previous(&self) -> String {
        self.previous.clone().unwrap_or_else(|| self.digest.clone())
    }

    fn id(&self) -> &str {
        &self.digest
    }
}

/// An order is cached per order and asking customer, so what one customer
/// may see is never decided by what another one fetched.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OrderKey {
    pub order_id: String,
    pub customer_id: String,
}

/// `order:customer`; purged by order id (what an OMS change names).
impl Key for OrderKey {
    const COMPOSITE: bool = true;

    fn encode(&self) -> String {
        join(&[&self.order_id, &self.customer_id])
    }

    fn decode(text: &str) -> Option<OrderKey> {
        let mut parts = split(text, 2)?.into_iter();
        Some(OrderKey {
            order_id: parts.next()?,
            customer_id: parts.next()?,
        })
    }

    fn id(&self) -> &str {
        &self.order_id
    }
}

/// What the order cache holds for one customer: the order when it is
/// theirs, or only the fact that it is someone else's (so another
/// customer's order is never stored under this customer's key, and asking
/// again does not reach the OMS every time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderAccess {
    Owned(Order),
    OtherCustomers,
}

/// The customer and order caches.
pub struct Customers {
    pub by_token: Arc<Tier<TokenKey, Customer>>,
    pub orders: Arc<Tier<OrderKey, OrderAccess>>,
    /// Which token digests belong to which customer (with Redis and a
    /// data key).
    index: Option<TokenIndex>,
    /// Digests tokens and names the index (None: no data key).
    data: Option<Arc<DataKeys>>,
    /// Lookups of opaque tokens neither this replica nor Redis has seen,
    /// per client address. A flood of made-up tokens would otherwise spend
    /// the CRM's limit and leave real customers unresolved; this caps what
    /// one address can spend, and leaves the others theirs.
    unknown_tokens: ArcSwap<AddressLimit>,
    /// What a token is now: opaque, or a JWT and how to verify it.
    tokens: ArcSwap<Tokens>,
}

/// Longest opaque token taken (as before JWTs, which are longer): a token
/// travels to the CRM in a URL path.
const OPAQUE_MAX_BYTES: usize = 512;

/// How tokens are taken, from `[customers]`; swapped whole on reload.
struct Tokens {
    /// Longer tokens are refused unread.
    max_bytes: usize,
    /// `None`: opaque tokens.
    jwt: Option<Arc<jwt::Verifier>>,
}

impl Tokens {
    /// From a checked section; a `jwks_file` is read, and keys fetched by
    /// `previous` are kept when they come from the same URL.
    fn new(config: &config::Customers, previous: Option<&Tokens>) -> Result<Tokens, String> {
        let jwt = match config.tokens {
            config::TokenKind::Opaque => None,
            config::TokenKind::Jwt => {
                let previous = previous.and_then(|t| t.jwt.as_deref());
                Some(Arc::new(jwt::Verifier::new(config, previous)?))
            }
        };
        Ok(Tokens {
            max_bytes: config.max_token_bytes,
            jwt,
        })
    }
}

impl Customers {
    pub fn new(
        config: &Config,
        upstreams: &Upstreams,
        tiers: &Tiers,
        redis: Option<Arc<RedisLink>>,
        data: Option<Arc<DataKeys>>,
    ) -> Result<Customers, Error> {
        let tokens = Tokens::new(&config.customers, None)
            .map_err(|e| Error::internal(format!("[customers]: {e}")))?;
        // Which tokens are whose is personal: in Redis only named and
        // listed under the data key.
        let index = redis.zip(data.clone()).map(|(redis, data)| TokenIndex {
            redis,
            data,
            keep: config.cache.customer.max_stale,
        });
        Ok(Customers {
            by_token: tiers.build(
                Entity::Customer,
                CustomersByToken {
                    crm: upstreams.crm.clone(),
                },
            ),
            index,
            data,
            orders: tiers.build(Entity::Order, OrdersFor(upstreams.oms.clone())),
            unknown_tokens: ArcSwap::from_pointee(unknown_token_limiter(&config.customers)),
            tokens: ArcSwap::from_pointee(tokens),
        })
    }

    /// The cache keys of every sign-in of `customer_id` that any replica
    /// may hold: the tokens Redis noted for them, and those in this
    /// replica's L1. (A change to the customer drops exactly these.)
    pub async fn tokens_of(&self, customer_id: &str) -> Vec<TokenKey> {
        let mut keys = self.by_token.find(|c| c.id == customer_id);
        if let Some(index) = &self.index {
            for digest in index.digests(customer_id).await {
                if let Some(key) = TokenKey::decode(&digest)
                    && !keys.contains(&key)
                {
                    keys.push(key);
                }
            }
        }
        keys
    }

    /// Applies reloaded `[customers]` settings (counting starts afresh; a
    /// `jwks_file` is read again). On an error nothing changes.
    pub fn apply(&self, config: &config::Customers) -> Result<(), String> {
        let tokens = Tokens::new(config, Some(&self.tokens.load()))?;
        self.tokens.store(Arc::new(tokens));
        self.unknown_tokens
            .store(Arc::new(unknown_token_limiter(config)));
        Ok(())
    }

    /// Forgets the addresses whose sign-in allowance has refilled.
    pub fn forget_idle(&self) {
        self.unknown_tokens.load().forget_idle();
    }

    /// The registry: both tiers, each named once.
    pub fn tiers(&self) -> [Arc<dyn AnyTier>; 2] {
        [self.by_token.clone(), self.orders.clone()]
    }

    /// Resolves a bearer token. `Err(UNAUTHENTICATED)` when it is not good
    /// (a JWT that fails verification, or a token the CRM does not know);
    /// `Viewer::Unresolved` when that cannot be told now (the CRM or the
    /// identity provider's keys cannot be had) and no answer is cached.
    pub async fn sign_in(
        &self,
        token: &str,
        priority: Priority,
        client: IpAddr,
    ) -> Result<Viewer, Error> {
        let tokens = self.tokens.load_full();
        let most = match tokens.jwt {
            Some(_) => tokens.max_bytes,
            None => tokens.max_bytes.min(OPAQUE_MAX_BYTES),
        };
        if token.len() > most {
            metrics::counter!(telemetry::TOKENS_REFUSED, "reason" => "oversized").increment(1);
            return Err(invalid_token());
        }
        match &tokens.jwt {
            Some(verifier) => self.sign_in_jwt(verifier, token, priority).await,
            None => self.sign_in_opaque(token, priority, client).await,
        }
    }

    /// The price segment of a token's customer when this replica can tell
    /// it at once, as `sign_in` would, with no call and no wait: an opaque
    /// token, or a JWT verified lately, whose customer L1 holds. `None`
    /// sends the request the full way (`sign_in`).
    pub fn cached_segment(&self, token: &str) -> Option<Arc<str>> {
        let tokens = self.tokens.load();
        let key = match &tokens.jwt {
            _ if token.len() > tokens.max_bytes => return None,
            Some(verifier) => TokenKey::subject(&verifier.verified(token)?, self.data.as_deref()),
            None if token.len() > OPAQUE_MAX_BYTES => return None,
            None => TokenKey::new(token, self.data.as_deref()),
        };
        let hit = self.by_token.get_cached(&key)?;
        hit.value()
            .map(|customer| Arc::from(customer.segment.as_str()))
    }

    /// A JWT is verified before anything else: one that fails costs no
    /// CRM call. A good one is the customer its `sub` names, read from the
    /// CRM by id once and cached under the subject, so no limit on unknown
    /// tokens is needed: only the identity provider can mint new subjects.
    async fn sign_in_jwt(
        &self,
        verifier: &jwt::Verifier,
        token: &str,
        priority: Priority,
    ) -> Result<Viewer, Error> {
        let subject = match verifier.verify(token).await {
            Ok(subject) => subject,
            Err(jwt::Rejection::Refused(reason)) => {
                metrics::counter!(telemetry::TOKENS_REFUSED, "reason" => reason.label())
                    .increment(1);
                return Err(invalid_token());
            }
            Err(jwt::Rejection::Unavailable(e)) => {
                tracing::warn!(error = %e, "cannot verify a customer token; customer fields will fail");
                return Ok(Viewer::Unresolved(Error::unavailable(
                    "the identity provider's keys cannot be fetched now; retry in a moment",
                )));
            }
        };
        let key = TokenKey::subject(&subject, self.data.as_deref());
        self.resolve(key, priority).await
    }

    /// An opaque token seen before (in L1, or in Redis from another
    /// replica) is looked up as usual; a token never seen must first get a
    /// permit from the unknown-token limit of `client` (its address), and
    /// without one is `Unresolved` with `RATE_LIMITED`, so guessing tokens
    /// cannot crowd out real customers.
    async fn sign_in_opaque(
        &self,
        token: &str,
        priority: Priority,
        client: IpAddr,
    ) -> Result<Viewer, Error> {
        let key = TokenKey::new(token, self.data.as_deref());
        if let Some(hit) = self.by_token.get_cached(&key) {
            return viewer_of(&hit);
        }
        let known = !self
            .by_token
            .peek(std::slice::from_ref(&key))
            .await
            .is_empty();
        let allowed = known || {
            let (bucket, taken) = self.unknown_tokens.load().check(client);
            if bucket == Bucket::Shared {
                metrics::counter!(telemetry::SIGN_INS_SHARED).increment(1);
            }
            taken.is_ok()
        };
        if !allowed {
            metrics::counter!(telemetry::SIGN_INS_REFUSED).increment(1);
            return Ok(Viewer::Unresolved(Error::new(
                Kind::RateLimited,
                "too many sign-ins with new customer tokens from this address right now; retry in a moment",
            )));
        }
        self.resolve(key, priority).await
    }

    /// The customer of a sign-in key, through the tier.
    async fn resolve(&self, key: TokenKey, priority: Priority) -> Result<Viewer, Error> {
        match read_one(&self.by_token, key.clone(), priority).await {
            Ok(hit) => {
                // Noted at each sign-in this replica did not hold, so a
                // sign-in read from Redis (or moved there to a new data
                // key's name) is found by a change to its customer.
                if let (Some(index), Some(customer)) = (&self.index, hit.value()) {
                    index.note(&customer.id, key.digest()).await;
                }
                viewer_of(&hit)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot resolve a customer token; customer fields will fail");
                Ok(Viewer::Unresolved(e))
            }
        }
    }
}

/// customer id → the digests of tokens that signed in as them, in a Redis
/// set that lives as long as a cached customer may, named by an HMAC of
/// the customer id under the data key (the digests are HMACs already).
#[derive(Clone)]
struct TokenIndex {
    redis: Arc<RedisLink>,
    data: Arc<DataKeys>,
    keep: std::time::Duration,
}

impl TokenIndex {
    fn key(&self, customer_id: &str) -> String {
        self.key_under(self.data.current(), customer_id)
    }

    fn key_under(&self, keys: &crate::data_key::Subkeys, customer_id: &str) -> String {
        let label = format!("customer-tokens:{}", escape(customer_id));
        self.redis.key(&["customer-tokens", &keys.name(&label)])
    }

    async fn note(&self, customer_id: &str, digest: &str) {
        let (key, digest, secs) = (
            self.key(customer_id),
            digest.to_string(),
            self.keep.as_secs().max(1),
        );
        let _ = self
            .redis
            .run("customer.index", |mut c| async move {
                redis::pipe()
                    .cmd("SADD")
                    .arg(&key)
                    .arg(&digest)
                    .ignore()
                    .cmd("EXPIRE")
                    .arg(&key)
                    .arg(secs)
                    .ignore()
                    .query_async::<()>(&mut c)
                    .await
            })
            .await;
    }

    /// The digests noted under the current data key and the previous one.
    async fn digests(&self, customer_id: &str) -> Vec<String> {
        let sets: Vec<String> = std::iter::once(self.data.current())
            .chain(self.data.previous())
            .map(|k| self.key_under(k, customer_id))
            .collect();
        // One SMEMBERS each, not SUNION: on a cluster the sets may sit on
        // different slots.
        let members: Vec<Vec<String>> = self
            .redis
            .run("customer.index", |mut c| async move {
                let mut pipe = redis::pipe();
                for set in &sets {
                    pipe.cmd("SMEMBERS").arg(set);
                }
                pipe.query_async(&mut c).await
            })
            .await
            .unwrap_or_default();
        let mut digests: Vec<String> = members.concat();
        digests.sort_unstable();
        digests.dedup();
        digests
    }
}

/// What a cached token answer means for the request: a customer, or a
/// token the CRM said it does not know (negative answers are cached too).
fn viewer_of(hit: &Hit<Customer>) -> Result<Viewer, Error> {
    match hit.value() {
        Some(customer) => Ok(Viewer::Customer(customer.clone())),
        None => Err(invalid_token()),
    }
}

fn invalid_token() -> Error {
    Error::new(
        Kind::Unauthenticated,
        "the customer token is not valid; sign in again",
    )
}

fn unknown_token_limiter(config: &config::Customers) -> AddressLimit {
    AddressLimit::new(
        config.unknown_token_rps,
        config.unknown_token_burst,
        config.unknown_token_addresses,
    )
}

impl crate::domain::Versioned for OrderAccess {
    /// Another customer's order has no version this customer may see.
    fn version(&self) -> u64 {
        match self {
            OrderAccess::Owned(order) => order.version,
            OrderAccess::OtherCustomers => 0,
        }
    }
}

impl OrderAccess {
    /// What the asking customer may see of a cached order: `None` when no
    /// such order exists, `FORBIDDEN` when it belongs to someone else.
    pub fn visible(access: Option<&OrderAccess>) -> Result<Option<Order>, Error> {
        match access {
            None => Ok(None),
            Some(OrderAccess::Owned(order)) => Ok(Some(order.clone())),
            Some(OrderAccess::OtherCustomers) => Err(Error::new(
                Kind::Forbidden,
                "this order belongs to another customer",
            )),
        }
    }
}

/// One key through L1, else a (single-flight) fetch.
async fn read_one<K: Key, V: Value>(
    tier: &Arc<Tier<K, V>>,
    key: K,
    priority: Priority,
) -> Result<Hit<V>, Error> {
    if let Some(hit) = tier.get_cached(&key) {
        return Ok(hit);
    }
    tier.get_many(vec![key.clone()], priority)
        .await
        .remove(&key)
        .unwrap_or_else(|| {
            Err(Error::internal(format!(
                "{} read lost its key",
                tier.entity()
            )))
        })
}

/// Looks tokens (or verified subjects) up in the CRM. (`sign_in` notes in Redis which tokens
/// belong to which customer, so a `customer.updated` event, which names
/// the customer, not the tokens, can find every cached sign-in of theirs.)
struct CustomersByToken {
    crm: Crm,
}

impl Fetch<TokenKey, Customer> for CustomersByToken {
    fn fetch(
        &self,
        keys: Vec<TokenKey>,
        priority: Priority,
    ) -> BoxFuture<'static, Batch<TokenKey, Customer>> {
        let crm = self.crm.clone();
        async move {
            let lookups = keys.into_iter().map(|key| {
                let crm = crm.clone();
                async move {
                    let found = match &key.lookup {
                        Some(Lookup::Token(token)) => crm.customer_by_token(token, priority).await,
                        Some(Lookup::Subject(id)) => crm.customer_by_id(id, priority).await,
                        // Only keys read back from Redis lack the token, and
                        // those are never fetched (they come from a purge).
                        None => Err(Error::internal("a customer key without its token")),
                    };
                    (key, found)
                }
            });
            let mut out = CacheMap::default();
            for (key, found) in join_all(lookups).await {
                match found {
                    Ok(Some(customer)) => {
                        out.insert(key, Ok(customer));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        out.insert(key, Err(e));
                    }
                }
            }
            Ok(out)
        }
        .boxed()
    }
}

struct OrdersFor(Oms);

impl Fetch<OrderKey, OrderAccess> for OrdersFor {
    fn fetch(
        &self,
        keys: Vec<OrderKey>,
        priority: Priority,
    ) -> BoxFuture<'static, Batch<OrderKey, OrderAccess>> {
        let oms = self.0.clone();
        async move {
            let lookups = keys.into_iter().map(|key| {
                let oms = oms.clone();
                async move {
                    let found = oms.order(&key.order_id, priority).await;
                    (key, found)
                }
            });
            let mut out = CacheMap::default();
            for (key, found) in join_all(lookups).await {
                let access = match found {
                    Ok(None) => continue,
                    Ok(Some(order)) if order.customer_id == key.customer_id => {
                        Ok(OrderAccess::Owned(order))
                    }
                    Ok(Some(_)) => Ok(OrderAccess::OtherCustomers),
                    Err(e) => Err(e),
                };
                out.insert(key, access);
            }
            Ok(out)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_key_never_shows_the_token() {
        let key = TokenKey::new("ct_secret_token_value", None);
        assert_eq!(key.encode().len(), 64);
        assert!(!key.encode().contains("secret"));
        let debug = format!("{key:?}");
        assert!(!debug.contains("secret"), "{debug}");
        // Read back from Redis: the same key, without the token.
        let decoded = TokenKey::decode(&key.encode()).unwrap();
        assert_eq!(decoded, key);
        assert!(decoded.lookup.is_none());
        assert!(TokenKey::decode("ct_secret_token_value").is_none());
    }

    #[test]
    fn a_subject_is_never_known_by_a_tokens_key() {
        let keys = DataKeys::new(Some(&"ab".repeat(32)), None)
            .unwrap()
            .unwrap();
        for data in [None, Some(&keys)] {
            let subject = TokenKey::subject("cust-001", data);
            assert_ne!(subject, TokenKey::new("cust-001", data));
            // (Without a data key only the text "jwt subject cust-001"
            // digests the same, and a bearer token has no spaces.)
            assert_eq!(subject, TokenKey::subject("cust-001", data));
            assert!(!format!("{subject:?}").contains("cust"));
        }
    }

    #[test]
    fn order_keys_round_trip_and_purge_by_order() {
        let key = OrderKey {
            order_id: "ord-00001".into(),
            customer_id: "cust:001".into(),
        };
        assert_eq!(OrderKey::decode(&key.encode()), Some(key.clone()));
        assert_eq!(key.id(), "ord-00001");
    }
}
