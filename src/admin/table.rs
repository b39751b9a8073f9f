//! Aligned text tables for `moat admin`, held to a terminal's width: when
//! a table would be wider, the columns marked to shrink give up room
//! (widest first) and their cells end in `…`.

use serde_json::Value;

/// How wide a table may be.
pub const WIDTH: usize = 100;

/// Columns are never made narrower than this by shrinking.
const NARROWEST: usize = 8;

pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    shrinkable: Vec<bool>,
    headless: bool,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
            shrinkable: vec![false; headers.len()],
            headless: false,
        }
    }

    /// Lets the column headed `header` shrink to fit.
    pub fn shrink(&mut self, header: &str) {
        if let Some(i) = self.headers.iter().position(|h| h == header) {
            self.shrinkable[i] = true;
        }
    }

    /// Leaves the header line out (a list of facts).
    pub fn headless(&mut self) {
        self.headless = true;
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let columns = self.headers.len();
        let len = |s: &str| s.chars().count();
        let mut widths: Vec<usize> = (0..columns)
            .map(|i| {
                let header = if self.headless {
                    0
                } else {
                    len(&self.headers[i])
                };
                self.rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .map(|c| c.chars().count())
                    .chain([header])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let total = |w: &[usize]| w.iter().sum::<usize>() + 2 * w.len().saturating_sub(1);
        while total(&widths) > WIDTH {
            let widest = (0..columns)
                .filter(|&i| self.shrinkable[i] && widths[i] > NARROWEST)
                .max_by_key(|&i| widths[i]);
            let Some(i) = widest else {
                break;
            };
            let over = total(&widths) - WIDTH;
            widths[i] = widths[i].saturating_sub(over).max(NARROWEST);
        }
        let line = |cells: &[String]| {
            let padded: Vec<String> = (0..columns)
                .map(|i| {
                    let cell = cells.get(i).map_or("", String::as_str);
                    let cell = fit(cell, widths[i]);
                    if i + 1 == columns {
                        cell
                    } else {
                        format!("{cell:<width$}", width = widths[i])
                    }
                })
                .collect();
            padded.join("  ").trim_end().to_string()
        };
        let mut out: Vec<String> = Vec::new();
        if !self.headless {
            out.push(line(&self.headers));
        }
        out.extend(self.rows.iter().map(|r| line(r)));
        if self.rows.is_empty() {
            out.push("(none)".into());
        }
        out.join("\n")
    }
}

/// `cell` cut to `width` characters, ending in `…` when cut.
pub fn fit(cell: &str, width: usize) -> String {
    if cell.chars().count() <= width {
        return cell.to_string();
    }
    let kept: String = cell.chars().take(width.saturating_sub(1)).collect();
    format!("{kept}…")
}

/// An exception's `held` or `ownerSays` in a few words: money as `12.34
/// EUR`, stock as its quantity, a violation as its text, anything else as
/// `key=value` pairs (versions and times left out: the table has room for
/// what differs).
pub fn compact(value: &Value) -> String {
    let Some(fields) = value.as_object() else {
        return match value {
            Value::Null => "-".into(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
    };
    let text = |k: &str| match fields.get(k) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Null) | None => None,
        Some(other) => Some(other.to_string()),
    };
    if let (Some(amount), Some(currency)) = (text("amount"), text("currencyCode")) {
        return format!("{amount} {currency}");
    }
    for k in [
        "violation",
        "value",
        "quantity",
        "available",
        "currencyCode",
    ] {
        if let Some(v) = text(k) {
            return v;
        }
    }
    if fields.get("found") == Some(&Value::Bool(false)) {
        return "none".into();
    }
    let pairs: Vec<String> = fields
        .iter()
        .filter(|(k, v)| !v.is_null() && !k.ends_with("At") && *k != "version")
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect();
    match text("version") {
        Some(v) if pairs.is_empty() || text("announcedBy").is_some() => match text("announcedBy") {
            Some(by) => format!("version {v} (from an {by})"),
            None => format!("version {v}"),
        },
        _ => pairs.join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_wide_table_shrinks_its_marked_columns_to_fit() {
        let mut t = Table::new(&["id", "reason"]);
        t.shrink("reason");
        t.row(vec!["a".into(), "x".repeat(300)]);
        t.row(vec!["bb".into(), "short".into()]);
        let shown = t.render();
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines[0], "id  reason");
        assert_eq!(lines[1].chars().count(), WIDTH);
        assert!(lines[1].ends_with('…'));
        assert_eq!(lines[2], "bb  short");
    }

    #[test]
    fn values_are_a_few_words() {
        assert_eq!(
            compact(&json!({ "amount": "10.50", "currencyCode": "EUR", "version": 2 })),
            "10.50 EUR"
        );
        assert_eq!(compact(&json!({ "quantity": 4 })), "4");
        assert_eq!(
            compact(&json!({ "violation": "no such field" })),
            "no such field"
        );
        assert_eq!(compact(&json!({ "found": false })), "none");
        assert_eq!(
            compact(&json!({ "version": 9, "announcedBy": "event" })),
            "version 9 (from an event)"
        );
        assert_eq!(
            compact(&json!({ "name": "Lamp", "updatedAt": "2026-01-01T00:00:00Z", "version": 2 })),
            "name=Lamp"
        );
    }
}
