//! The akeneo dialect in process: token flow, shapes, paging, errors.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::super::super::{SimConfig, Simulator};
use super::super::Dialect;

fn app(products: usize) -> Router {
    Simulator::new(SimConfig {
        products,
        dialect: Dialect::Akeneo,
        ..SimConfig::default()
    })
    .router()
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "pim.test");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

/// `client:secret` in Basic.
const BASIC: &str = "Basic Y2xpZW50OnNlY3JldA==";

async fn token(app: &Router) -> String {
    let (status, body) = call(
        app,
        Method::POST,
        "/api/oauth/v1/token",
        &[
            ("authorization", BASIC),
            ("content-type", "application/json"),
        ],
        r#"{"grant_type":"password","username":"u","password":"p"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for field in ["expires_in", "token_type", "scope", "refresh_token"] {
        assert!(body.get(field).is_some(), "{field}: {body}");
    }
    format!("Bearer {}", body["access_token"].as_str().unwrap())
}

async fn get(app: &Router, uri: &str, bearer: &str) -> (StatusCode, Value) {
    call(app, Method::GET, uri, &[("authorization", bearer)], "").await
}

#[tokio::test(start_paused = true)]
async fn the_token_flow_is_required_and_refusals_are_akeneos() {
    let app = app(30);
    let (status, body) = get(&app, "/api/rest/v1/categories", "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!({"code": 401, "message": "Authentication is required"})
    );
    let (status, body) = get(&app, "/api/rest/v1/categories", "Bearer made-up").await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (StatusCode::UNAUTHORIZED, Some(401))
    );

    // No client: a 422; a form is as good as JSON.
    let (status, body) = call(&app, Method::POST, "/api/oauth/v1/token", &[], "{}").await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some(422))
    );
    let (status, body) = call(
        &app,
        Method::POST,
        "/api/oauth/v1/token",
        &[
            ("authorization", BASIC),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        "grant_type=password&username=u&password=p",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let (status, _) = call(
        &app,
        Method::POST,
        "/api/oauth/v1/token",
        &[
            ("authorization", BASIC),
            ("content-type", "application/json"),
        ],
        &json!({"grant_type": "refresh_token", "refresh_token": refresh}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let bearer = token(&app).await;
    let (status, _) = get(&app, "/api/rest/v1/categories", &bearer).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn products_carry_the_seeded_catalog_as_akeneo_values() {
    let sim = Simulator::new(SimConfig {
        products: 30,
        dialect: Dialect::Akeneo,
        ..SimConfig::default()
    });
    let app = sim.router();
    let bearer = token(&app).await;
    let search = r#"{"sku":[{"operator":"IN","value":["SKU-000003","SKU-000001","SKU-999999"]}]}"#;
    let uri = format!(
        "/api/rest/v1/products-uuid?search={}",
        percent_encoding::utf8_percent_encode(search, percent_encoding::NON_ALPHANUMERIC)
    );
    let (status, page) = get(&app, &uri, &bearer).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let items = page["_embedded"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{page}");
    let want = sim.read().products[0].clone();
    let got = &items[0];
    assert_eq!(got["values"]["sku"][0]["data"], want.sku.as_str());
    assert_eq!(
        got["values"]["name"][0],
        json!({"locale": "en_US", "scope": null,
        "data": want.name, "attribute_type": "pim_catalog_text"})
    );
    assert_eq!(
        got["values"]["description"][0]["data"],
        want.description.as_str()
    );
    assert_eq!(got["categories"], json!(want.category_ids));
    assert_eq!(got["updated"], "2026-01-01T00:00:00+00:00");
    for attribute in &want.attributes {
        let data = &got["values"][attribute.name][0]["data"];
        if attribute.name == "weight" {
            assert_eq!(data["unit"], "KILOGRAM", "{data}");
            assert!(data["amount"].as_str().unwrap().ends_with("00"), "{data}");
        } else {
            assert_eq!(data, attribute.value.as_str());
        }
    }
    let uuid = got["uuid"].as_str().unwrap().to_owned();
    assert_eq!(uuid.len(), 36);

    let (status, one) = get(&app, &format!("/api/rest/v1/products-uuid/{uuid}"), &bearer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["uuid"], uuid.as_str());
    assert_eq!(
        one["_links"]["self"]["href"],
        format!("http://pim.test/api/rest/v1/products-uuid/{uuid}")
    );
    let (status, missing) = get(
        &app,
        "/api/rest/v1/products-uuid/00000000-0000-4000-8000-000000000999",
        &bearer,
    )
    .await;
    assert_eq!(
        (status, missing["code"].as_u64()),
        (StatusCode::NOT_FOUND, Some(404))
    );

    let (status, refused) = get(&app, "/api/rest/v1/products-uuid?limit=101", &bearer).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        refused["message"],
        "You cannot request more than 100 items."
    );
}

#[tokio::test(start_paused = true)]
async fn pages_follow_their_links_to_the_end_in_both_paging_styles() {
    let app = app(25);
    let bearer = token(&app).await;
    for first in [
        "/api/rest/v1/products-uuid?pagination_type=search_after&limit=10",
        "/api/rest/v1/products-uuid?limit=10",
    ] {
        let mut next = Some(format!("http://pim.test{first}"));
        let mut seen = Vec::new();
        while let Some(link) = next {
            let path = link.strip_prefix("http://pim.test").unwrap().to_owned();
            let (status, page) = get(&app, &path, &bearer).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            for item in page["_embedded"]["items"].as_array().unwrap() {
                seen.push(
                    item["values"]["sku"][0]["data"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                );
            }
            next = page["_links"]["next"]["href"].as_str().map(str::to_owned);
        }
        let want: Vec<String> = (1..=25).map(|n| format!("SKU-{n:06}")).collect();
        assert_eq!(seen, want, "{first}");
    }

    let (status, page) = get(&app, "/api/rest/v1/categories?limit=10&page=3", &bearer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["current_page"], 3);
    assert_eq!(page["_embedded"]["items"].as_array().unwrap().len(), 4);
    assert!(page["_links"]["next"].is_null(), "{page}");
    assert!(
        page["_links"]["previous"]["href"]
            .as_str()
            .unwrap()
            .contains("page=2")
    );
    let chairs = &page["_embedded"]["items"][0];
    assert!(chairs["labels"]["en_US"].is_string(), "{chairs}");
    let (_, root) = get(&app, "/api/rest/v1/categories/cat-01", &bearer).await;
    assert_eq!(root["parent"], Value::Null);
    assert_eq!(root["labels"]["en_US"], "Furniture");
}

#[tokio::test(start_paused = true)]
async fn a_malformed_page_breaks_one_item_in_akeneos_shape() {
    let app = app(20);
    let bearer = token(&app).await;
    let (status, _) = call(
        &app,
        Method::POST,
        "/_sim/faults/pim",
        &[("content-type", "application/json")],
        r#"{"malformed_rate": 1.0}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let mut broken_items = 0;
    for _ in 0..12 {
        let (status, page) = get(&app, "/api/rest/v1/products-uuid?limit=5", &bearer).await;
        assert_eq!(status, StatusCode::OK);
        let Some(items) = page["_embedded"]["items"].as_array() else {
            continue; // Cut short: not JSON at all.
        };
        let whole = |i: &Value| {
            i["uuid"].is_string()
                && i["values"]["sku"].is_array()
                && i["values"]["name"].is_array()
                && i["categories"].is_array()
                && i["updated"].is_string()
        };
        assert_eq!(items.iter().filter(|i| !whole(i)).count(), 1, "{page}");
        broken_items += 1;
    }
    assert!(broken_items > 0);
}

#[test]
fn a_product_change_is_sent_as_the_events_api_sends_it() {
    let sim = Simulator::new(SimConfig {
        products: 10,
        dialect: Dialect::Akeneo,
        ..SimConfig::default()
    });
    let item = serde_json::to_value(&sim.read().products[2]).unwrap();
    let change = |kind| super::super::Change {
        kind,
        item: &item,
        id: "evt-1",
        thin: false,
    };
    assert!(super::event(&sim, &change("price.updated"), Some("s")).is_none());
    assert!(super::event(&sim, &change("inventory.updated"), Some("s")).is_none());

    let sent = super::event(&sim, &change("product.updated"), Some("s")).unwrap();
    assert_eq!(sent.path, "/events/akeneo");
    let header = |name: &str| {
        sent.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let t = header("x-akeneo-request-timestamp");
    let want = super::super::super::sign::hmac_hex(b"s", &[t.as_bytes(), b".", &sent.body]);
    assert_eq!(header("x-akeneo-request-signature"), want);

    let body: Value = serde_json::from_slice(&sent.body).unwrap();
    let event = &body["events"][0];
    assert_eq!(event["action"], "product.updated");
    assert_eq!(event["event_id"], "evt-1");
    let resource = &event["data"]["resource"];
    assert_eq!(resource["uuid"], super::shape::uuid(2));
    assert_eq!(resource["values"]["sku"][0]["data"], "SKU-000003");
    assert_eq!(resource["values"]["name"][0]["data"], item["name"]);
    assert!(resource.get("_links").is_none(), "{resource}");

    let unsigned = super::event(&sim, &change("product.updated"), None).unwrap();
    assert!(unsigned.headers.is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_pims_faults_and_counters_hold_in_akeneos_shape() {
    let app = app(10);
    let bearer = token(&app).await;
    let fault = |body: &'static str| {
        let app = app.clone();
        async move {
            let (status, _) = call(
                &app,
                Method::POST,
                "/_sim/faults/pim",
                &[("content-type", "application/json")],
                body,
            )
            .await;
            assert_eq!(status, StatusCode::OK);
        }
    };
    fault(r#"{"down": true}"#).await;
    let (status, body) = get(&app, "/api/rest/v1/products-uuid", &bearer).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["code"], 503, "{body}");
    fault(r#"{"down": false}"#).await;
    let (status, body) = get(&app, "/api/rest/v1/categories?limit=5", &bearer).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, stats) = get(&app, "/_sim/stats", "").await;
    assert_eq!(stats["requests"]["pim.products"], 1, "{stats}");
    assert_eq!(stats["requests"]["pim.categories"], 1, "{stats}");
    assert_eq!(stats["items"]["pim.categories"], 5, "{stats}");
    assert_eq!(stats["tokens_issued"], 1, "{stats}");

    // A simulator that does not play the PIM serves none of it.
    let erp_only = Simulator::new(SimConfig {
        products: 10,
        dialect: Dialect::Akeneo,
        systems: Some(vec!["erp".into()]),
        ..SimConfig::default()
    })
    .router();
    let bearer = token(&erp_only).await;
    let (status, _) = get(&erp_only, "/api/rest/v1/products-uuid", &bearer).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
