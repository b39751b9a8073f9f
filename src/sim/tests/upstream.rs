//! The protocol v1 routes: determinism, seeded data, paging, batches,
//! quotes, orders and customers.

use std::collections::HashSet;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use super::super::seed;
use super::super::{SimConfig, Simulator};
use super::{assert_error, assert_valid, get, post, send, sim};

pub fn skus(from: usize, to: usize) -> String {
    (from..=to)
        .map(|i| format!("SKU-{i:06}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::test(start_paused = true)]
async fn one_seed_serves_identical_bytes() {
    let a = sim(500).router();
    let b = sim(500).router();
    let other = Simulator::new(SimConfig {
        products: 500,
        seed: 7,
        ..SimConfig::default()
    })
    .router();
    let uris = [
        "/pim/v1/products?limit=100",
        "/pim/v1/products?ids=prod-000001,prod-000250",
        "/erp/v1/prices?skus=SKU-000001,SKU-000002,SKU-000499&segment=vip&currency=USD",
        "/erp/v1/inventory?skus=SKU-000003,SKU-000400",
        "/pim/v1/categories",
        "/_sim/customers",
        "/oms/v1/orders/ord-00001",
    ];
    for uri in uris {
        let (status, body) = send(&a, Method::GET, uri, None).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!(
            (status, body),
            send(&b, Method::GET, uri, None).await,
            "{uri}"
        );
    }
    assert_ne!(
        send(&a, Method::GET, uris[0], None).await,
        send(&other, Method::GET, uris[0], None).await,
        "another seed makes another catalog"
    );
}

#[test]
fn seeded_catalog_has_the_documented_shape() {
    let catalog = seed::build(2_000, 42);
    assert_eq!(catalog.categories.len(), 24);
    assert!(
        catalog
            .categories
            .iter()
            .filter(|c| c.parent_id.is_some())
            .count()
            >= 3
    );
    for (i, p) in catalog.products.iter().enumerate() {
        assert_eq!(p.id, format!("prod-{:06}", i + 1));
        assert_eq!(p.sku, format!("SKU-{:06}", i + 1));
        assert!(p.name.split(' ').count() >= 2, "{}", p.name);
        assert!(p.description.ends_with('.'), "{}", p.description);
        assert!((2..=4).contains(&p.attributes.len()), "{:?}", p.attributes);
        assert!((1..=2).contains(&p.category_ids.len()));
    }
    let stock = &catalog.stock;
    let out = stock.iter().filter(|s| s.available == 0).count();
    let low = stock
        .iter()
        .filter(|s| (1..=5).contains(&s.available))
        .count();
    assert!((120..=280).contains(&out), "out of stock: {out} of 2000");
    assert!((120..=280).contains(&low), "low stock: {low} of 2000");
    assert!(stock.iter().all(|s| s.available <= 500));

    assert_eq!(catalog.customers.len(), 30);
    assert_eq!(catalog.orders.len(), 90);
    for (i, c) in catalog.customers.iter().enumerate() {
        assert_eq!(c.id, format!("cust-{:03}", i + 1));
        assert_eq!(c.segment, ["default", "wholesale", "vip"][i % 3]);
        assert!(
            c.token.starts_with("ct_") && c.token.len() == 27,
            "{}",
            c.token
        );
        assert!(c.token[3..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(c.order_ids.len(), 3);
    }
    for o in &catalog.orders {
        assert!((1..=3).contains(&o.lines.len()));
        let total: u64 = o
            .lines
            .iter()
            .map(|l| l.unit_amount * u64::from(l.quantity))
            .sum();
        assert_eq!(o.total_amount, total);
    }
}

#[test]
fn prices_follow_segment_and_currency_math_in_integers() {
    let catalog = seed::build(2_000, 42);
    let mut with_compare = 0;
    for cells in &catalog.prices {
        let base = cells[0].amount;
        assert!((199..=99_999).contains(&base), "{base}");
        assert_eq!(base % 100, 99);
        let expect = |pct: u64, usd: bool| {
            let eur = base * pct / 100;
            if usd { eur * 108 / 100 } else { eur }
        };
        let want = [
            expect(100, false),
            expect(100, true),
            expect(85, false),
            expect(85, true),
            expect(92, false),
            expect(92, true),
        ];
        assert_eq!(cells.map(|c| c.amount), want);
        for c in cells {
            assert_eq!(c.version, 1);
            assert_eq!(c.compare_at.is_some(), cells[0].compare_at.is_some());
            assert!(c.compare_at.is_none_or(|at| at > c.amount));
        }
        with_compare += usize::from(cells[0].compare_at.is_some());
    }
    assert!(
        (300..=500).contains(&with_compare),
        "{with_compare} of 2000 have compareAt"
    );
}

#[tokio::test(start_paused = true)]
async fn price_route_serves_each_segment_and_currency() {
    let app = sim(50).router();
    let catalog = seed::build(50, 42);
    for (s, segment) in ["default", "wholesale", "vip"].iter().enumerate() {
        for (c, currency) in ["EUR", "USD"].iter().enumerate() {
            let uri = format!(
                "/erp/v1/prices?skus=SKU-000007,NOPE&segment={segment}&currency={currency}"
            );
            let (status, body) = get(&app, &uri).await;
            assert_eq!(status, StatusCode::OK);
            let items = body["items"].as_array().expect("items");
            assert_eq!(items.len(), 1, "unknown skus are omitted");
            assert_valid("price.json", &items[0]);
            assert_eq!(items[0]["amount"], catalog.prices[6][s * 2 + c].amount);
            assert_eq!(items[0]["segment"], *segment);
            assert_eq!(items[0]["currency"], *currency);
            assert_eq!(items[0]["updatedAt"], "2026-01-01T00:00:00.000Z");
        }
    }
    let (_, defaults) = get(&app, "/erp/v1/prices?skus=SKU-000007").await;
    assert_eq!(
        (
            &defaults["items"][0]["segment"],
            &defaults["items"][0]["currency"]
        ),
        (&json!("default"), &json!("EUR"))
    );
    assert_error(
        &get(&app, "/erp/v1/prices?skus=SKU-000007&segment=gold").await,
        StatusCode::BAD_REQUEST,
    );
    assert_error(
        &get(&app, "/erp/v1/prices?skus=SKU-000007&currency=GBP").await,
        StatusCode::BAD_REQUEST,
    );
    assert_error(&get(&app, "/erp/v1/prices").await, StatusCode::BAD_REQUEST);
}

/// Follows `nextCursor` to the end; returns the ids seen.
async fn page_all(app: &axum::Router, filter: &str, limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor = String::new();
    for _ in 0..10_000 {
        let (status, body) = get(
            app,
            &format!("/pim/v1/products?limit={limit}&cursor={cursor}{filter}"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let items = body["items"].as_array().expect("items");
        assert!(items.len() <= limit);
        for item in items {
            assert_valid("product.json", item);
            ids.push(item["id"].as_str().expect("id").to_owned());
        }
        match &body["nextCursor"] {
            Value::Null => return ids,
            Value::String(next) => cursor = next.clone(),
            other => panic!("nextCursor {other}"),
        }
    }
    panic!("paging does not end");
}

#[tokio::test(start_paused = true)]
async fn cursors_page_through_every_product_of_a_category() {
    let app = sim(600).router();
    let catalog = seed::build(600, 42);
    for category in ["cat-01", "cat-09", "cat-24"] {
        let want: Vec<String> = catalog
            .products
            .iter()
            .filter(|p| p.category_ids.contains(&category))
            .map(|p| p.id.clone())
            .collect();
        assert!(!want.is_empty(), "{category} has products");
        let got = page_all(&app, &format!("&categoryId={category}"), 7).await;
        assert_eq!(got, want, "{category}");
    }
    let all = page_all(&app, "", 100).await;
    assert_eq!(all.len(), 600);
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 600);

    let (_, first) = get(&app, "/pim/v1/products").await;
    assert_eq!(
        first["items"].as_array().map(Vec::len),
        Some(20),
        "default limit"
    );
    let (_, clamped) = get(&app, "/pim/v1/products?limit=1000").await;
    assert_eq!(
        clamped["items"].as_array().map(Vec::len),
        Some(100),
        "limit is clamped"
    );
    let (_, none) = get(&app, "/pim/v1/products?categoryId=cat-99").await;
    assert_eq!(none, json!({"items": [], "nextCursor": null}));
    for bad in ["limit=0", "limit=ten", "cursor=42", "cursor=c1.zz"] {
        assert_error(
            &get(&app, &format!("/pim/v1/products?{bad}")).await,
            StatusCode::BAD_REQUEST,
        );
    }
}

#[tokio::test(start_paused = true)]
async fn batches_keep_request_order_and_refuse_more_than_500() {
    let app = sim(600).router();
    let (status, body) = get(
        &app,
        "/pim/v1/products?ids=prod-000009,nope,prod-000002,prod-000009,prod-9",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        (&body["items"][0]["id"], &body["items"][1]["id"]),
        (&json!("prod-000009"), &json!("prod-000002"))
    );
    assert!(body.get("nextCursor").is_none(), "batches are not pages");
    let (_, by_sku) = get(&app, "/pim/v1/products?skus=SKU-000002").await;
    assert_eq!(by_sku["items"][0]["id"], "prod-000002");

    let (status, body) = get(&app, &format!("/pim/v1/products?skus={}", skus(1, 500))).await;
    assert_eq!(
        (status, body["items"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(500))
    );
    let too_many = skus(1, 501);
    assert_error(
        &get(&app, &format!("/pim/v1/products?skus={too_many}")).await,
        StatusCode::BAD_REQUEST,
    );
    let ids = (1..=501)
        .map(|i| format!("prod-{i:06}"))
        .collect::<Vec<_>>()
        .join(",");
    assert_error(
        &get(&app, &format!("/pim/v1/products?ids={ids}")).await,
        StatusCode::BAD_REQUEST,
    );
    assert_error(
        &get(&app, &format!("/erp/v1/prices?skus={too_many}")).await,
        StatusCode::BAD_REQUEST,
    );
    assert_error(
        &get(&app, &format!("/erp/v1/inventory?skus={too_many}")).await,
        StatusCode::BAD_REQUEST,
    );
    assert_error(
        &get(&app, "/pim/v1/products?ids=a&skus=b").await,
        StatusCode::BAD_REQUEST,
    );
}

#[tokio::test(start_paused = true)]
async fn quote_prices_known_lines_and_lists_unknown_skus() {
    let app = sim(100).router();
    let request = json!({"segment": "vip", "currency": "USD", "lines": [
        {"sku": "SKU-000001", "quantity": 2}, {"sku": "NOPE", "quantity": 1},
        {"sku": "SKU-000042", "quantity": 3}, {"sku": "NOPE", "quantity": 5},
    ]});
    assert_valid("quote-request.json", &request);
    let (status, quote) = post(&app, "/erp/v1/quote", request).await;
    assert_eq!(status, StatusCode::OK, "{quote}");
    assert_valid("quote.json", &quote);
    let (_, prices) = get(
        &app,
        "/erp/v1/prices?skus=SKU-000001,SKU-000042&segment=vip&currency=USD",
    )
    .await;
    let (_, stock) = get(&app, "/erp/v1/inventory?skus=SKU-000001,SKU-000042").await;
    let lines = quote["lines"].as_array().expect("lines");
    assert_eq!(lines.len(), 2);
    let mut total = 0;
    for (i, (sku, quantity)) in [("SKU-000001", 2), ("SKU-000042", 3)]
        .into_iter()
        .enumerate()
    {
        let unit = prices["items"][i]["amount"].as_u64().expect("amount");
        assert_eq!(lines[i]["sku"], sku);
        assert_eq!(lines[i]["unitAmount"], unit);
        assert_eq!(lines[i]["lineAmount"], unit * quantity);
        assert_eq!(lines[i]["available"], stock["items"][i]["available"]);
        assert_eq!(
            (&lines[i]["priceVersion"], &lines[i]["inventoryVersion"]),
            (&json!(1), &json!(1))
        );
        total += unit * quantity;
    }
    assert_eq!(quote["totalAmount"], total);
    assert_eq!(quote["unknownSkus"], json!(["NOPE"]));
    assert_eq!(
        (&quote["segment"], &quote["currency"]),
        (&json!("vip"), &json!("USD"))
    );

    let (_, defaults) = post(&app, "/erp/v1/quote", json!({"lines": []})).await;
    assert_eq!(
        (
            &defaults["segment"],
            &defaults["currency"],
            &defaults["totalAmount"]
        ),
        (&json!("default"), &json!("EUR"), &json!(0))
    );
    for bad in [
        json!({}),
        json!({"lines": [{"sku": "SKU-000001"}]}),
        json!({"lines": [{"sku": "SKU-000001", "quantity": 0}]}),
        json!({"lines": [{"sku": "SKU-000001", "quantity": -1}]}),
        json!({"lines": [], "customer": "x"}),
        json!({"lines": [], "currency": "XXX"}),
        json!({"lines": [], "segment": "gold"}),
        json!([1, 2]),
    ] {
        assert_error(
            &post(&app, "/erp/v1/quote", bad).await,
            StatusCode::BAD_REQUEST,
        );
    }
    let (status, _) = send(&app, Method::POST, "/erp/v1/quote", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "no body");
}

#[tokio::test(start_paused = true)]
async fn orders_and_customers_resolve_and_404_otherwise() {
    let app = sim(100).router();
    let (_, sign_ins) = get(&app, "/_sim/customers").await;
    let sign_ins = sign_ins["items"].as_array().expect("items").clone();
    assert_eq!(sign_ins.len(), 30);
    for sign_in in sign_ins.iter().step_by(7) {
        let (status, customer) = get(
            &app,
            &format!(
                "/crm/v1/customers/by-token/{}",
                sign_in["token"].as_str().expect("token")
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_valid("customer.json", &customer);
        assert_eq!(
            (&customer["id"], &customer["segment"]),
            (&sign_in["id"], &sign_in["segment"])
        );
        let id = sign_in["id"].as_str().expect("id");
        let (status, by_id) = get(&app, &format!("/crm/v1/customers/{id}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(by_id, customer, "the same customer by id");
        for order_id in sign_in["orderIds"].as_array().expect("orderIds") {
            let (status, order) = get(
                &app,
                &format!("/oms/v1/orders/{}", order_id.as_str().expect("id")),
            )
            .await;
            assert_eq!(status, StatusCode::OK);
            assert_valid("order.json", &order);
            assert_eq!(order["customerId"], customer["id"]);
        }
    }
    assert_error(
        &get(&app, "/crm/v1/customers/by-token/ct_nope").await,
        StatusCode::NOT_FOUND,
    );
    assert_error(
        &get(&app, "/crm/v1/customers/cust-999").await,
        StatusCode::NOT_FOUND,
    );
    assert_error(
        &get(&app, "/oms/v1/orders/ord-99999").await,
        StatusCode::NOT_FOUND,
    );
    assert_error(
        &get(&app, "/oms/v1/orders/ord-1").await,
        StatusCode::NOT_FOUND,
    );
    assert_error(&get(&app, "/no/such/route").await, StatusCode::NOT_FOUND);
    let (status, _) = get(&app, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn entities_match_their_schemas() {
    let app = sim(300).router();
    let (_, products) = get(&app, "/pim/v1/products?limit=100&cursor=c1.64").await;
    let (_, categories) = get(&app, "/pim/v1/categories").await;
    let (_, prices) = get(
        &app,
        &format!("/erp/v1/prices?skus={}&segment=wholesale", skus(1, 300)),
    )
    .await;
    let (_, stock) = get(&app, &format!("/erp/v1/inventory?skus={}", skus(1, 300))).await;
    for (name, list) in [
        ("product.json", products),
        ("category.json", categories),
        ("price.json", prices),
        ("inventory.json", stock),
    ] {
        let items = list["items"].as_array().expect("items");
        assert!(!items.is_empty(), "{name}");
        items.iter().for_each(|item| assert_valid(name, item));
    }
    let (status, offers) = get(
        &app,
        &format!("/erp/v1/offers?skus={}&segment=wholesale", skus(1, 300)),
    )
    .await;
    assert_eq!(status, 200, "{offers}");
    assert_valid("offers.json", &offers);
    for list in ["prices", "inventory"] {
        let items = offers[list]["items"].as_array().expect("items");
        assert_eq!(items.len(), 300, "{list}");
    }
}
