//! Surrogate keys: how an answer names the records it was built from
//! (`Surrogate-Key` for Fastly and Varnish xkey, `Cache-Tag` for
//! Cloudflare), and which keys a change purges. One naming for both, so a
//! purge reaches exactly the answers that held what changed:
//!
//! | key              | on an answer that read                     | purged by a change of |
//! |------------------|--------------------------------------------|-----------------------|
//! | `price:SKU`      | that sku's price (any segment, currency)   | that sku's prices     |
//! | `price:all`      | prices past the size cap, unnamed          | any price             |
//! | `price`          | any price                                  | all prices at once    |
//!
//! and likewise `product:ID`, `product_sku:SKU`, `inventory:SKU`,
//! `category:ID` (a category's listing pages); the category tree is named
//! by `category` alone.

use crate::cache::Source;
use crate::vocab::Entity;

/// The key naming one record, if records of `entity` are named one by one.
pub fn record_key(entity: Entity, id: &str) -> Option<String> {
    let prefix = match entity {
        Entity::Product => "product",
        Entity::ProductSku => "product_sku",
        // A listing page is purged with its category (`-`: all products).
        Entity::ProductPage if id != "-" => "category",
        Entity::Price => "price",
        Entity::Inventory => "inventory",
        _ => return None,
    };
    Some(format!("{prefix}:{}", escape(id)))
}

/// What an answer over the cap names all of one entity's records by.
pub fn coarse_key(entity: Entity) -> String {
    format!("{}:all", entity.name())
}

/// What every answer that read any record of `entity` carries, so that
/// purging the whole entity reaches them all.
pub fn entity_key(entity: Entity) -> &'static str {
    entity.name()
}

/// The keys a change of `entity` purges: `ids` (`None`: all of it).
pub fn purge_keys(entity: Entity, ids: Option<&[String]>) -> Vec<String> {
    let Some(ids) = ids else {
        return vec![entity_key(entity).to_string()];
    };
    let mut keys = Vec::with_capacity(ids.len() + 1);
    for id in ids {
        match record_key(entity, id) {
            Some(key) => keys.push(key),
            // Not named one by one: only the whole entity reaches it.
            None => return vec![entity_key(entity).to_string()],
        }
    }
    keys.sort_unstable();
    keys.dedup();
    keys.push(coarse_key(entity));
    keys
}

/// The keys of an answer built from `sources`, within `max_bytes` once
/// joined by single spaces: while they do not fit, the entity with the
/// most named records is named coarsely instead. Returns the keys and the
/// entities so capped.
pub fn answer_keys(sources: &[Source], max_bytes: usize) -> (Vec<String>, Vec<Entity>) {
    let mut groups: Vec<(Entity, Vec<String>)> = Vec::new();
    for source in sources {
        let at = match groups.iter().position(|(e, _)| *e == source.entity) {
            Some(at) => at,
            None => {
                groups.push((source.entity, Vec::new()));
                groups.len() - 1
            }
        };
        if let Some(key) = record_key(source.entity, &source.id) {
            groups[at].1.push(key);
        }
    }
    for (_, keys) in &mut groups {
        keys.sort_unstable();
        keys.dedup();
    }
    let size = |groups: &[(Entity, Vec<String>)]| -> usize {
        groups
            .iter()
            .map(|(e, keys)| {
                entity_key(*e).len() + 1 + keys.iter().map(|k| k.len() + 1).sum::<usize>()
            })
            .sum::<usize>()
            .saturating_sub(1)
    };
    let mut capped = Vec::new();
    while size(&groups) > max_bytes {
        let widest = groups
            .iter_mut()
            .filter(|(e, keys)| !(keys.len() == 1 && keys[0] == coarse_key(*e)))
            .max_by_key(|(_, keys)| keys.len());
        match widest {
            Some((entity, keys)) if keys.len() > 1 => {
                *keys = vec![coarse_key(*entity)];
                capped.push(*entity);
            }
            // Nothing left to fold: the entity keys alone (a handful).
            _ => break,
        }
    }
    let mut keys: Vec<String> = groups
        .iter()
        .map(|(e, _)| entity_key(*e).to_string())
        .collect();
    keys.extend(groups.into_iter().flat_map(|(_, keys)| keys));
    (keys, capped)
}

/// Keeps a key one token in every vendor's syntax: no spaces (Fastly and
/// xkey split on them), commas (Cloudflare does), nor anything a header
/// cannot carry; the rest is percent-escaped.
fn escape(id: &str) -> String {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b);
    if id.bytes().all(plain) {
        return id.to_string();
    }
    let mut out = String::with_capacity(id.len() + 8);
    for b in id.bytes() {
        if plain(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::Timestamp;

    fn read(entity: Entity, id: &str) -> Source {
        Source {
            entity,
            id: id.into(),
            fresh_until: Timestamp(0),
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
        }
    }

    #[test]
    fn an_answer_names_each_record_and_each_entity() {
        let sources = [
            read(Entity::Product, "P1"),
            read(Entity::Price, "SKU 1"),
            read(Entity::Inventory, "SKU,1"),
            read(Entity::Category, "all"),
            read(Entity::ProductPage, "c-7"),
        ];
        let (keys, capped) = answer_keys(&sources, 8192);
        assert_eq!(
            keys,
            [
                "product",
                "price",
                "inventory",
                "category",
                "product_page",
                "product:P1",
                "price:SKU%201",
                "inventory:SKU%2C1",
                "category:c-7"
            ]
        );
        assert!(capped.is_empty());
    }

    #[test]
    fn past_the_cap_the_widest_entity_is_named_coarsely() {
        let mut sources: Vec<Source> = (0..100)
            .map(|i| read(Entity::Price, &format!("SKU-{i:04}")))
            .collect();
        sources.extend((0..3).map(|i| read(Entity::Product, &format!("P{i}"))));
        let (keys, capped) = answer_keys(&sources, 300);
        assert_eq!(capped, [Entity::Price]);
        assert_eq!(
            keys,
            [
                "price",
                "product",
                "price:all",
                "product:P0",
                "product:P1",
                "product:P2"
            ]
        );
        assert!(keys.join(" ").len() <= 300);
    }

    #[test]
    fn a_change_purges_its_records_and_the_coarse_key() {
        let ids = ["B".to_string(), "A".to_string()];
        assert_eq!(
            purge_keys(Entity::Price, Some(&ids)),
            ["price:A", "price:B", "price:all"]
        );
        assert_eq!(purge_keys(Entity::Price, None), ["price"]);
        assert_eq!(
            purge_keys(Entity::Category, Some(&["all".to_string()])),
            ["category"]
        );
        assert_eq!(purge_keys(Entity::ProductPage, None), ["product_page"]);
    }
}
