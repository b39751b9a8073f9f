//! Builds the seeded catalog: the same `(products, seed)` always gives the
//! same bytes, because every value comes from one `fastrand::Rng` drawn in a
//! fixed order and every timestamp from [`seeded_at`], never from the clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fastrand::Rng;

use super::catalog::Catalog;
use super::wire::{
    Attribute, CURRENCIES, Category, Customer, Order, OrderLine, PriceCell, Product, SEGMENTS,
    StockCell,
};

/// 2026-01-01T00:00:00Z: `updatedAt` of everything seeded.
const SEEDED_AT_UNIX: u64 = 1_767_225_600;

/// How many customers the catalog has; each has [`ORDERS_PER_CUSTOMER`].
pub const CUSTOMERS: usize = 30;
pub const ORDERS_PER_CUSTOMER: usize = 3;

/// Percent of the default price each segment pays, in [`SEGMENTS`] order.
const SEGMENT_PERCENT: [u64; 3] = [100, 85, 92];
/// Percent of the EUR amount charged in each currency, in [`CURRENCIES`] order.
const CURRENCY_PERCENT: [u64; 2] = [100, 108];

pub fn seeded_at() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(SEEDED_AT_UNIX)
}

/// `(id, name, parent)`; parents come first so a tree walk never dangles.
const CATEGORIES: [(&str, &str, Option<&str>); 24] = [
    ("cat-01", "Furniture", None),
    ("cat-02", "Lighting", None),
    ("cat-03", "Kitchen", None),
    ("cat-04", "Textiles", None),
    ("cat-05", "Decor", None),
    ("cat-06", "Outdoor", None),
    ("cat-07", "Office", None),
    ("cat-08", "Storage", None),
    ("cat-09", "Chairs", Some("cat-01")),
    ("cat-10", "Tables", Some("cat-01")),
    ("cat-11", "Desk Lamps", Some("cat-02")),
    ("cat-12", "Pendant Lights", Some("cat-02")),
    ("cat-13", "Cookware", Some("cat-03")),
    ("cat-14", "Tableware", Some("cat-03")),
    ("cat-15", "Rugs", Some("cat-04")),
    ("cat-16", "Bedding", Some("cat-04")),
    ("cat-17", "Vases", Some("cat-05")),
    ("cat-18", "Wall Art", Some("cat-05")),
    ("cat-19", "Garden Tools", Some("cat-06")),
    ("cat-20", "Planters", Some("cat-06")),
    ("cat-21", "Stationery", Some("cat-07")),
    ("cat-22", "Desk Accessories", Some("cat-07")),
    ("cat-23", "Shelving", Some("cat-08")),
    ("cat-24", "Baskets", Some("cat-08")),
];

const WOOD: &[&str] = &["Walnut", "Oak", "Ash", "Teak", "Bamboo", "Birch"];
const METAL: &[&str] = &["Brass", "Copper", "Steel", "Aluminium", "Cast Iron"];
const TEXTILE: &[&str] = &["Linen", "Cotton", "Wool", "Velvet", "Jute"];
const CERAMIC: &[&str] = &["Ceramic", "Stoneware", "Porcelain", "Glass", "Terracotta"];
const PAPER: &[&str] = &["Recycled Paper", "Kraft", "Leather", "Cork"];
const FIBRE: &[&str] = &["Rattan", "Wicker", "Seagrass", "Willow"];

/// `(noun, index of its leaf category, materials it comes in)`: keeps names
/// plausible ("Walnut Armchair", never "Linen Skillet").
const KINDS: &[(&str, usize, &[&str])] = &[
    ("Armchair", 8, WOOD),
    ("Dining Chair", 8, WOOD),
    ("Bar Stool", 8, METAL),
    ("Side Table", 9, WOOD),
    ("Coffee Table", 9, WOOD),
    ("Console Table", 9, METAL),
    ("Desk Lamp", 10, METAL),
    ("Reading Lamp", 10, METAL),
    ("Pendant Light", 11, METAL),
    ("Lantern", 11, FIBRE),
    ("Saucepan", 12, METAL),
    ("Skillet", 12, METAL),
    ("Dutch Oven", 12, METAL),
    ("Dinner Plate", 13, CERAMIC),
    ("Mug", 13, CERAMIC),
    ("Serving Bowl", 13, CERAMIC),
    ("Rug", 14, TEXTILE),
    ("Hallway Runner", 14, TEXTILE),
    ("Duvet Cover", 15, TEXTILE),
    ("Pillowcase", 15, TEXTILE),
    ("Throw", 15, TEXTILE),
    ("Vase", 16, CERAMIC),
    ("Bud Vase", 16, CERAMIC),
    ("Wall Mirror", 17, WOOD),
    ("Framed Print", 17, WOOD),
    ("Trowel", 18, METAL),
    ("Hand Pruner", 18, METAL),
    ("Planter", 19, CERAMIC),
    ("Hanging Pot", 19, CERAMIC),
    ("Notebook", 20, PAPER),
    ("Journal", 20, PAPER),
    ("Desk Organizer", 21, WOOD),
    ("Pen Holder", 21, METAL),
    ("Bookshelf", 22, WOOD),
    ("Wall Shelf", 22, WOOD),
    ("Storage Basket", 23, FIBRE),
    ("Laundry Basket", 23, FIBRE),
];

const STYLES: &[&str] = &[
    "Nordic", "Classic", "Compact", "Modern", "Rustic", "Heritage", "Slim", "Studio", "Coastal",
    "Grand", "Everyday", "Atelier",
];
const QUALITIES: &[&str] = &[
    "sturdy",
    "lightweight",
    "hand-finished",
    "timeless",
    "generously sized",
    "understated",
    "elegant",
    "versatile",
    "well-balanced",
    "airy",
];
const PHRASES: &[&str] = &[
    "made to last for years",
    "finished by hand in small batches",
    "designed for everyday use",
    "that suits any interior",
    "built from responsibly sourced materials",
    "with a quietly confident profile",
    "ready to use straight out of the box",
    "that only gets better with age",
];
const COLORS: &[&str] = &[
    "Natural", "Charcoal", "Ivory", "Sage", "Rust", "Navy", "Ochre", "Slate", "Blush", "Forest",
    "Sand", "Black",
];
const SIZES: &[&str] = &["Small", "Medium", "Large", "Extra Large"];
const FINISHES: &[&str] = &["Matte", "Polished", "Oiled", "Brushed", "Glazed", "Raw"];
const FIRST_NAMES: &[&str] = &[
    "Ada", "Bruno", "Chiara", "Dmitri", "Elif", "Farah", "Gustav", "Hana", "Ines", "Jonas", "Kofi",
    "Lena", "Mateo", "Nora", "Oskar", "Priya",
];
const LAST_NAMES: &[&str] = &[
    "Andersen", "Bianchi", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Horvat", "Ito",
    "Jansen", "Kowalski", "Laine", "Moreau", "Novak",
];
const STATUSES: [&str; 4] = ["PLACED", "SHIPPED", "DELIVERED", "CANCELLED"];

fn pick<T: Copy>(rng: &mut Rng, items: &[T]) -> T {
    items[rng.usize(..items.len())]
}

/// Builds the catalog in one pass; `products` may be zero (orders then have
/// no lines).
pub fn build(products: usize, seed: u64) -> Catalog {
    let mut rng = Rng::with_seed(seed);
    let at = seeded_at();
    let categories: Vec<Category> = CATEGORIES
        .iter()
        .map(|&(id, name, parent_id)| Category {
            id,
            name,
            parent_id,
            version: 1,
            updated_at: at,
        })
        .collect();
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); categories.len()];
    let mut items = Vec::with_capacity(products);
    let mut prices = Vec::with_capacity(products);
    let mut stock = Vec::with_capacity(products);
    for index in 0..products {
        let product = seed_product(&mut rng, index, at, &mut members);
        items.push(product);
        prices.push(seed_prices(&mut rng, at));
        stock.push(seed_stock(&mut rng, at));
    }
    let (customers, orders) = seed_customers(&mut rng, &items, &prices, at);
    Catalog {
        products: items,
        prices,
        stock,
        categories,
        category_members: members,
        customers,
        orders,
    }
}

fn seed_product(rng: &mut Rng, index: usize, at: SystemTime, members: &mut [Vec<u32>]) -> Product {
    let n = index + 1;
    let (noun, leaf, materials) = pick(rng, KINDS);
    let material = pick(rng, materials);
    let name = if rng.bool() {
        format!("{} {material} {noun}", pick(rng, STYLES))
    } else {
        format!("{material} {noun}")
    };
    let quality = pick(rng, QUALITIES);
    let article = if quality.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "An"
    } else {
        "A"
    };
    let description = format!(
        "{article} {quality} {} in {}, {}.",
        noun.to_lowercase(),
        material.to_lowercase(),
        pick(rng, PHRASES)
    );

    // Material always; then one to three of the others, skipping one at
    // random so products differ in which attributes they carry.
    let mut attributes = vec![Attribute {
        name: "material",
        value: material.to_owned(),
    }];
    let extra = rng.usize(1..=3);
    let skip = rng.usize(..4);
    for kind in (0..4).filter(|k| *k != skip).take(extra) {
        let attribute = match kind {
            0 => Attribute {
                name: "color",
                value: pick(rng, COLORS).to_owned(),
            },
            1 => Attribute {
                name: "size",
                value: pick(rng, SIZES).to_owned(),
            },
            2 => Attribute {
                name: "finish",
                value: pick(rng, FINISHES).to_owned(),
            },
            _ => {
                let grams = rng.u32(100..=20_000);
                Attribute {
                    name: "weight",
                    value: format!("{}.{} kg", grams / 1000, grams % 1000 / 100),
                }
            }
        };
        attributes.push(attribute);
    }

    let position = u32::try_from(index).unwrap_or(u32::MAX);
    let mut category_ids = vec![CATEGORIES[leaf].0];
    members[leaf].push(position);
    if rng.u8(..10) < 4
        && let Some(parent) = CATEGORIES[leaf].2
    {
        category_ids.push(parent);
        if let Some(p) = CATEGORIES.iter().position(|c| c.0 == parent) {
            members[p].push(position);
        }
    }

    Product {
        id: format!("prod-{n:06}"),
        sku: format!("SKU-{n:06}"),
        name,
        description,
        attributes,
        category_ids,
        version: 1,
        updated_at: at,
    }
}

/// Rounds a minor-unit amount down to the nearest `.99`, the way shop prices
/// usually end.
fn ends_in_99(amount: u64) -> u64 {
    amount / 100 * 100 + 99
}

/// Six prices in `segment * CURRENCIES.len() + currency` order. Integer
/// percentages only: money never passes through a float.
fn seed_prices(rng: &mut Rng, at: SystemTime) -> [PriceCell; 6] {
    let default_eur = rng.u64(1..=999) * 100 + 99;
    let compare_eur = (rng.u8(..10) < 2).then(|| {
        let raised = ends_in_99(default_eur * rng.u64(110..=150) / 100);
        if raised > default_eur {
            raised
        } else {
            raised + 100
        }
    });
    let mut cells = [PriceCell {
        amount: 0,
        compare_at: None,
        version: 1,
        updated_at: at,
    }; 6];
    for (s, seg_pct) in SEGMENT_PERCENT.iter().enumerate() {
        for (c, cur_pct) in CURRENCY_PERCENT.iter().enumerate() {
            let scale = |eur: u64| eur * seg_pct / 100 * cur_pct / 100;
            cells[s * CURRENCIES.len() + c] = PriceCell {
                amount: scale(default_eur),
                compare_at: compare_eur.map(scale),
                version: 1,
                updated_at: at,
            };
        }
    }
    cells
}

/// About 10 % out of stock, 10 % low (1–5), the rest 6–500.
fn seed_stock(rng: &mut Rng, at: SystemTime) -> StockCell {
    let available = match rng.u8(..100) {
        0..10 => 0,
        10..20 => rng.u64(1..=5),
        _ => rng.u64(6..=500),
    };
    StockCell {
        available,
        version: 1,
        updated_at: at,
    }
}

fn seed_customers(
    rng: &mut Rng,
    products: &[Product],
    prices: &[[PriceCell; 6]],
    at: SystemTime,
) -> (Vec<Customer>, Vec<Order>) {
    let mut customers = Vec::with_capacity(CUSTOMERS);
    let mut orders = Vec::with_capacity(CUSTOMERS * ORDERS_PER_CUSTOMER);
    for c in 0..CUSTOMERS {
        let first = pick(rng, FIRST_NAMES);
        let last = pick(rng, LAST_NAMES);
        let segment = c % SEGMENTS.len();
        let id = format!("cust-{:03}", c + 1);
        let token = format!("ct_{:016x}{:08x}", rng.u64(..), rng.u32(..));
        let mut order_ids = Vec::with_capacity(ORDERS_PER_CUSTOMER);
        for k in 0..ORDERS_PER_CUSTOMER {
            let order_id = format!("ord-{:05}", c * ORDERS_PER_CUSTOMER + k + 1);
            let currency = usize::from(rng.u8(..5) == 0);
            let mut lines: Vec<OrderLine> = Vec::new();
            if !products.is_empty() {
                for _ in 0..rng.usize(1..=3) {
                    let p = rng.usize(..products.len());
                    if lines.iter().any(|l| l.sku == products[p].sku) {
                        continue;
                    }
                    lines.push(OrderLine {
                        sku: products[p].sku.clone(),
                        quantity: rng.u32(1..=4),
                        unit_amount: prices[p][segment * CURRENCIES.len() + currency].amount,
                    });
                }
            }
            let total_amount = lines
                .iter()
                .map(|l| l.unit_amount * u64::from(l.quantity))
                .sum();
            let status = match rng.u8(..10) {
                0..5 => STATUSES[2],
                5..7 => STATUSES[1],
                7..9 => STATUSES[0],
                _ => STATUSES[3],
            };
            let days_ago = rng.u64(1..=180);
            orders.push(Order {
                id: order_id.clone(),
                customer_id: id.clone(),
                status,
                currency: CURRENCIES[currency],
                total_amount,
                lines,
                placed_at: at - Duration::from_secs(days_ago * 86_400 + rng.u64(..86_400)),
                version: 1,
                updated_at: at,
            });
            order_ids.push(order_id);
        }
        customers.push(Customer {
            email: format!(
                "{}.{}.{}@example.com",
                first.to_lowercase(),
                last.to_lowercase(),
                c + 1
            ),
            name: format!("{first} {last}"),
            id,
            segment: SEGMENTS[segment],
            version: 1,
            updated_at: at,
            token,
            order_ids,
        });
    }
    (customers, orders)
}
