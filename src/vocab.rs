//! The words every floor shares: which systems of record there are, why a
//! call is made (its priority), which entities are cached, and the
//! currencies Moat knows. A leaf: it imports nothing of the crate, so
//! anything may use it without pulling in what it names.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The hasher of Moat's in-process caches, which hash a key on every read
/// (a product id, a query text, a stored answer's whole request): foldhash
/// takes a fraction of std's SipHash's time. Its seed is random per
/// process, so a client still cannot choose colliding keys ahead of time.
pub type CacheHasher = foldhash::fast::RandomState;

/// A map by cache key, hashed as the caches are: what an upstream call
/// or a cache read returns for each key it was asked.
pub type CacheMap<K, V> = std::collections::HashMap<K, V, CacheHasher>;

/// The upstream protocol version Moat speaks (`schema/upstream/`): what it
/// sends as `Moat-Protocol` and accepts back.
pub const PROTOCOL: &str = "v1";

/// A system of record, by the name config gives it (`pim`, `erp`, `wms`…).
/// Names are interned, so a system is cheap to copy and compare and its
/// name serves as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct System(&'static str);

impl System {
    pub const PIM: System = System("pim");
    pub const ERP: System = System("erp");
    pub const CRM: System = System("crm");
    pub const OMS: System = System("oms");
    /// One per protocol family, named after it: what owns every record
    /// when config says nothing else.
    pub const DEFAULTS: [System; 4] = [System::PIM, System::ERP, System::CRM, System::OMS];

    /// Whether `name` can name a system: a lowercase letter, then
    /// lowercase letters and digits, at most 32 (it names `MOAT_{NAME}_*`
    /// variables, metric labels and `/events/{source}`).
    pub fn valid_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name.len() <= 32
    }

    /// The system called `name`, as config names it. Only config may call
    /// this: each new name is kept for the life of the process.
    pub fn named(name: &str) -> System {
        if let Some(known) = System::find(name) {
            return known;
        }
        let mut names = NAMED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(interned) = names.iter().find(|n| **n == name) {
            return System(interned);
        }
        // A handful of names from config, never from a request.
        let interned: &'static str = Box::leak(name.to_string().into_boxed_str());
        names.push(interned);
        System(interned)
    }

    /// The system called `name` if config (or the defaults) named one: what
    /// a request's path or a stored record may refer to.
    pub fn find(name: &str) -> Option<System> {
        if let Some(known) = System::DEFAULTS.into_iter().find(|s| s.0 == name) {
            return Some(known);
        }
        let names = NAMED.lock().unwrap_or_else(|p| p.into_inner());
        names.iter().find(|n| **n == name).map(|n| System(n))
    }

    /// The name in config, metrics, routes and logs.
    pub fn name(self) -> &'static str {
        self.0
    }
}

/// Names config gave beyond the defaults.
static NAMED: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// What systems of record own, each read through its protocol v1
/// endpoints (`[entities]` in config says which system owns which).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Record {
    Products,
    Categories,
    Prices,
    Inventory,
    Customers,
    Orders,
}

impl Record {
    pub const ALL: [Record; 6] = [
        Record::Products,
        Record::Categories,
        Record::Prices,
        Record::Inventory,
        Record::Customers,
        Record::Orders,
    ];

    /// The key in `[entities]`.
    pub fn name(self) -> &'static str {
        match self {
            Record::Products => "products",
            Record::Categories => "categories",
            Record::Prices => "prices",
            Record::Inventory => "inventory",
            Record::Customers => "customers",
            Record::Orders => "orders",
        }
    }

    /// The system that owns it when config names none.
    pub fn default_owner(self) -> System {
        match self {
            Record::Products | Record::Categories => System::PIM,
            Record::Prices | Record::Inventory => System::ERP,
            Record::Customers => System::CRM,
            Record::Orders => System::OMS,
        }
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The ownership map: the system of record of each record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owners([System; 6]);

impl Owners {
    /// `owner(record)` for each record.
    pub fn new(owner: impl Fn(Record) -> System) -> Owners {
        Owners(Record::ALL.map(owner))
    }

    pub fn of(&self, record: Record) -> System {
        self.0[record as usize]
    }

    /// The records `system` owns.
    pub fn records_of(&self, system: System) -> Vec<Record> {
        Record::ALL
            .into_iter()
            .filter(|r| self.of(*r) == system)
            .collect()
    }

    /// Every owning system once, in record order.
    pub fn systems(&self) -> Vec<System> {
        let mut systems: Vec<System> = Vec::with_capacity(6);
        for system in self.0 {
            if !systems.contains(&system) {
                systems.push(system);
            }
        }
        systems
    }
}

impl Default for Owners {
    fn default() -> Owners {
        Owners::new(Record::default_owner)
    }
}

/// Why a call is made, which decides who gets upstream capacity first:
/// a checkout must never wait behind a storefront browsing cold products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    /// Verifying a cart before money moves.
    Checkout,
    /// Re-reading an entity a change event pointed at.
    EventRefresh,
    /// A storefront read the cache could not serve.
    Browse,
    /// The scheduled drift check.
    Reconcile,
}

impl Priority {
    pub const ALL: [Priority; 4] = [
        Priority::Checkout,
        Priority::EventRefresh,
        Priority::Browse,
        Priority::Reconcile,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Priority::Checkout => "checkout",
            Priority::EventRefresh => "event_refresh",
            Priority::Browse => "browse",
            Priority::Reconcile => "reconcile",
        }
    }
}

/// What Moat caches, one tier each. The name is the tier's name in
/// metrics, Redis keys, purges and the admin status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Entity {
    Product,
    /// sku → product id, so `product(sku:)` shares the product cache.
    ProductSku,
    /// A listing page: the product ids on it.
    ProductPage,
    Category,
    Price,
    Inventory,
    Customer,
    Order,
}

impl Entity {
    pub const ALL: [Entity; 8] = [
        Entity::Product,
        Entity::ProductSku,
        Entity::ProductPage,
        Entity::Category,
        Entity::Price,
        Entity::Inventory,
        Entity::Customer,
        Entity::Order,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Entity::Product => "product",
            Entity::ProductSku => "product_sku",
            Entity::ProductPage => "product_page",
            Entity::Category => "category",
            Entity::Price => "price",
            Entity::Inventory => "inventory",
            Entity::Customer => "customer",
            Entity::Order => "order",
        }
    }

    /// The `[cache.NAME]` section whose freshness and size rules it follows:
    /// the sku index lives as long as products, listings as categories.
    pub fn cache_section(self) -> &'static str {
        match self {
            Entity::ProductSku => "product",
            Entity::ProductPage => "category",
            other => other.name(),
        }
    }

    /// Whether it holds personal data (customers, their orders): sealed in
    /// Redis under the data key, or kept out of Redis without one.
    pub fn personal(self) -> bool {
        matches!(self, Entity::Customer | Entity::Order)
    }

    pub fn from_name(name: &str) -> Option<Entity> {
        Entity::ALL.into_iter().find(|e| e.name() == name)
    }

    /// Its name in the plural (`prices`, `categories`, `inventory`).
    pub fn plural(self) -> &'static str {
        match self {
            Entity::Product => "products",
            Entity::ProductSku => "product_skus",
            Entity::ProductPage => "product_pages",
            Entity::Category => "categories",
            Entity::Price => "prices",
            Entity::Inventory => "inventory",
            Entity::Customer => "customers",
            Entity::Order => "orders",
        }
    }

    /// The entity `name` spells, singular or plural, so an operator need
    /// not remember which command takes which.
    pub fn from_spelling(name: &str) -> Option<Entity> {
        Entity::ALL
            .into_iter()
            .find(|e| e.name() == name || e.plural() == name)
    }
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A currency Moat knows, with the number of minor digits it uses. Amounts
/// in it are parsed and formatted in `domain::money`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency(&'static str, u8);

/// The ISO 4217 codes Moat accepts. A code outside this list is a bad input,
/// whatever the upstream says, so a typo never reaches the ERP.
const KNOWN: &[Currency] = &[
    Currency("EUR", 2),
    Currency("USD", 2),
    Currency("GBP", 2),
    Currency("CHF", 2),
    Currency("SEK", 2),
    Currency("NOK", 2),
    Currency("DKK", 2),
    Currency("PLN", 2),
    Currency("CZK", 2),
    Currency("CAD", 2),
    Currency("AUD", 2),
    Currency("JPY", 0),
    Currency("KRW", 0),
    Currency("BHD", 3),
    Currency("KWD", 3),
];

impl Currency {
    pub const EUR: Currency = Currency("EUR", 2);

    /// Every currency Moat knows.
    pub fn all() -> &'static [Currency] {
        KNOWN
    }

    /// Looks a code up; `None` for anything not in ISO 4217 as Moat knows it.
    pub fn from_code(code: &str) -> Option<Currency> {
        KNOWN.iter().copied().find(|c| c.0 == code)
    }

    pub fn code(self) -> &'static str {
        self.0
    }

    pub fn minor_digits(self) -> u8 {
        self.1
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

// Stored (in Redis, in tokens) as the code alone; reading it back goes
// through the table, so an unknown code can never come back in.
impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        Currency::from_code(&code)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown currency {code:?}")))
    }
}
