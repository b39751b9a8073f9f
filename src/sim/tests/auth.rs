//! Separate systems and their credentials: `systems`, a fixed bearer token,
//! the OAuth2 client-credentials endpoint and the declared protocol.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::super::{SimConfig, Simulator};
use super::{assert_error, get, post};

const PRICES: &str = "/erp/v1/prices?skus=SKU-000001";

fn sim_with(config: SimConfig) -> Router {
    Simulator::new(SimConfig {
        products: 10,
        ..config
    })
    .router()
}

fn oauth_sim() -> Router {
    sim_with(SimConfig {
        oauth_client: Some(("moat".into(), "s3cret".into())),
        token_ttl: Duration::from_secs(60),
        ..SimConfig::default()
    })
}

/// Sends `request`, returning the status, headers and JSON body.
async fn call(app: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, Value) {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .expect("body reads");
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!("{}: not JSON ({e}): {bytes:?}", parts.status);
    });
    (parts.status, parts.headers, value)
}

/// `GET uri` with `Authorization: authorization`.
async fn get_as(app: &Router, uri: &str, authorization: &str) -> (StatusCode, HeaderMap, Value) {
    let request = Request::get(uri)
        .header(header::AUTHORIZATION, authorization)
        .body(Body::empty())
        .expect("request builds");
    call(app, request).await
}

/// `POST /oauth/token` with a form body and, optionally, an Authorization.
async fn token_request(
    app: &Router,
    form: &str,
    authorization: Option<&str>,
) -> (StatusCode, HeaderMap, Value) {
    let mut request = Request::post("/oauth/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    call(
        app,
        request.body(Body::from(form.to_owned())).expect("builds"),
    )
    .await
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

/// A fresh token by client_secret_post.
async fn fresh_token(app: &Router) -> String {
    let form = "grant_type=client_credentials&client_id=moat&client_secret=s3cret";
    let (status, _, body) = token_request(app, form, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().expect("a token").to_owned()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test(start_paused = true)]
async fn systems_not_served_are_404_naming_them_and_not_counted() {
    let app = sim_with(SimConfig {
        systems: Some(vec!["erp".into(), "crm".into()]),
        ..SimConfig::default()
    });
    assert_eq!(get(&app, PRICES).await.0, StatusCode::OK);
    let (_, sign_ins) = get(&app, "/_sim/customers").await;
    let token = sign_ins["items"][0]["token"].as_str().expect("a token");
    let customer = format!("/crm/v1/customers/by-token/{token}");
    assert_eq!(get(&app, &customer).await.0, StatusCode::OK);

    for (uri, system) in [
        ("/pim/v1/products?ids=prod-000001", "pim"),
        ("/pim/v1/categories", "pim"),
        ("/oms/v1/orders/ord-00001", "oms"),
    ] {
        let (status, headers, body) = get_as(&app, uri, "Bearer unused").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(
            body,
            json!({"error": format!("this simulator does not serve {system}")})
        );
        assert_eq!(header(&headers, "moat-protocol"), None, "{uri}");
    }
    assert_eq!(get(&app, "/healthz").await.0, StatusCode::OK);
    assert_eq!(get(&app, "/_sim/faults").await.0, StatusCode::OK);

    let (_, stats) = get(&app, "/_sim/stats").await;
    assert_eq!(
        stats["requests"],
        json!({"pim.products": 0, "pim.categories": 0, "erp.prices": 1, "erp.inventory": 0, "erp.quote": 0, "erp.offers": 0, "oms.orders": 0, "crm.customers": 1, "crm.jwks": 0})
    );
    assert_eq!(stats["unauthorized"], 0);
}

#[tokio::test(start_paused = true)]
async fn a_required_token_is_checked_before_counting_and_faults() {
    let app = sim_with(SimConfig {
        require_token: Some("t1".into()),
        ..SimConfig::default()
    });
    let (status, headers, body) = call(
        &app,
        Request::get(PRICES).body(Body::empty()).expect("builds"),
    )
    .await;
    assert_error(&(status, body.clone()), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&headers, "www-authenticate"), Some("Bearer"));
    assert_eq!(header(&headers, "moat-protocol"), Some("v1"));

    for wrong in ["Bearer t2", "Bearer ", "Basic dDE6", "t1"] {
        let (status, headers, body) = get_as(&app, PRICES, wrong).await;
        assert_error(&(status, body.clone()), StatusCode::UNAUTHORIZED);
        assert!(
            header(&headers, "www-authenticate").is_some_and(|c| c.starts_with("Bearer")),
            "{wrong}"
        );
        assert!(!body.to_string().contains("t2"), "{body}");
    }
    assert_eq!(get_as(&app, PRICES, "Bearer t1").await.0, StatusCode::OK);
    assert_eq!(get_as(&app, PRICES, "bearer t1").await.0, StatusCode::OK);

    // Refused before the faults: a token problem is not an outage.
    post(&app, "/_sim/faults/erp", json!({"down": true})).await;
    assert_eq!(
        get_as(&app, PRICES, "Bearer t2").await.0,
        StatusCode::UNAUTHORIZED
    );

    // Control and health routes need no token.
    assert_eq!(get(&app, "/healthz").await.0, StatusCode::OK);
    let (status, stats) = get(&app, "/_sim/stats").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stats["unauthorized"], 6, "{stats}");
    assert_eq!(stats["requests"]["erp.prices"], 2, "{stats}");
}

#[tokio::test(start_paused = true)]
async fn client_credentials_by_basic_or_form_get_a_token() {
    let app = oauth_sim();
    let (status, headers, body) = token_request(
        &app,
        "grant_type=client_credentials&scope=catalog+prices",
        Some(&basic("moat", "s3cret")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(header(&headers, "cache-control"), Some("no-store"));
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 60);
    assert_eq!(body["scope"], "catalog prices");
    let by_basic = body["access_token"].as_str().expect("token").to_owned();

    let by_form = fresh_token(&app).await;
    assert_ne!(by_basic, by_form);
    let (_, _, body) = token_request(
        &app,
        "grant_type=client_credentials&client_id=moat&client_secret=s3cret",
        None,
    )
    .await;
    assert!(body.get("scope").is_none(), "no scope asked, none given");

    for token in [&by_basic, &by_form] {
        let (status, headers, _) = get_as(&app, PRICES, &format!("Bearer {token}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(header(&headers, "moat-protocol"), Some("v1"));
    }
    assert_eq!(
        get_as(&app, PRICES, "Bearer sim_0000").await.0,
        StatusCode::UNAUTHORIZED
    );
    let (_, stats) = get(&app, "/_sim/stats").await;
    assert_eq!(stats["tokens_issued"], 3, "{stats}");
    assert_eq!(stats["unauthorized"], 1, "{stats}");
}

#[tokio::test(start_paused = true)]
async fn the_token_endpoint_refuses_with_rfc_6749_codes() {
    let app = oauth_sim();
    let grant = "grant_type=client_credentials";
    let cases = [
        (
            "wrong secret by Basic",
            grant.to_owned(),
            Some(basic("moat", "nope")),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            "wrong secret by form",
            format!("{grant}&client_id=moat&client_secret=nope"),
            None,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            "no client at all",
            grant.to_owned(),
            None,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            "another grant",
            "grant_type=password&client_id=moat&client_secret=s3cret".to_owned(),
            None,
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (
            "no grant",
            "client_id=moat&client_secret=s3cret".to_owned(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "two client authentications",
            format!("{grant}&client_id=moat&client_secret=s3cret"),
            Some(basic("moat", "s3cret")),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "a repeated field",
            format!("{grant}&{grant}&client_id=moat&client_secret=s3cret"),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (case, form, authorization, status, code) in cases {
        let (got, headers, body) = token_request(&app, &form, authorization.as_deref()).await;
        assert_eq!((got, &body["error"]), (status, &json!(code)), "{case}");
        let challenge = header(&headers, "www-authenticate");
        let by_basic = authorization.is_some() && status == StatusCode::UNAUTHORIZED;
        assert_eq!(challenge, by_basic.then_some("Basic"), "{case}");
    }

    let json_body = Request::post("/oauth/token")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"grant_type":"client_credentials"}"#))
        .expect("builds");
    let (status, _, body) = call(&app, json_body).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_request"))
    );

    let (_, stats) = get(&app, "/_sim/stats").await;
    assert_eq!(stats["tokens_issued"], 0);
    // Without a client there is no token endpoint at all.
    let plain = sim_with(SimConfig::default());
    assert_error(
        &post(&plain, "/oauth/token", json!({})).await,
        StatusCode::NOT_FOUND,
    );
}

#[tokio::test(start_paused = true)]
async fn expired_tokens_are_refused_and_fresh_ones_work() {
    let app = sim_with(SimConfig {
        oauth_client: Some(("moat".into(), "s3cret".into())),
        require_token: Some("fixed".into()),
        token_ttl: Duration::from_secs(60),
        ..SimConfig::default()
    });
    let old = format!("Bearer {}", fresh_token(&app).await);
    let other = format!("Bearer {}", fresh_token(&app).await);
    assert_eq!(get_as(&app, PRICES, &old).await.0, StatusCode::OK);

    let (status, expired) = post(&app, "/_sim/oauth/expire", json!({})).await;
    assert_eq!((status, expired), (StatusCode::OK, json!({"expired": 2})));
    for gone in [&old, &other] {
        let (status, headers, _) = get_as(&app, PRICES, gone).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            header(&headers, "www-authenticate"),
            Some(r#"Bearer error="invalid_token""#)
        );
    }
    let new = format!("Bearer {}", fresh_token(&app).await);
    assert_eq!(get_as(&app, PRICES, &new).await.0, StatusCode::OK);
    // The fixed token is accepted next to issued ones.
    assert_eq!(get_as(&app, PRICES, "Bearer fixed").await.0, StatusCode::OK);

    // Reset zeroes the counters but keeps tokens valid.
    post(&app, "/_sim/reset", json!({})).await;
    assert_eq!(get_as(&app, PRICES, &new).await.0, StatusCode::OK);
    let (_, stats) = get(&app, "/_sim/stats").await;
    assert_eq!(
        (&stats["tokens_issued"], &stats["unauthorized"]),
        (&json!(0), &json!(0))
    );

    // And tokens run out on their own after the TTL.
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(get_as(&app, PRICES, &new).await.0, StatusCode::UNAUTHORIZED);
    let (_, expired) = post(&app, "/_sim/oauth/expire", json!({})).await;
    assert_eq!(expired, json!({"expired": 0}), "nothing left to expire");
}

#[tokio::test(start_paused = true)]
async fn protocol_responses_declare_their_version() {
    let v1 = sim_with(SimConfig::default());
    let v2 = sim_with(SimConfig {
        protocol: "v2".into(),
        ..SimConfig::default()
    });
    for (app, version) in [(&v1, "v1"), (&v2, "v2")] {
        for uri in [PRICES, "/erp/v1/prices", "/oms/v1/orders/nope"] {
            let (status, headers, _) = get_as(app, uri, "Bearer unused").await;
            assert_ne!(status, StatusCode::UNAUTHORIZED, "no auth configured");
            assert_eq!(header(&headers, "moat-protocol"), Some(version), "{uri}");
        }
        let quote = Request::builder()
            .method(Method::POST)
            .uri("/erp/v1/quote")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"lines": []}"#))
            .expect("builds");
        let (_, headers, _) = call(app, quote).await;
        assert_eq!(header(&headers, "moat-protocol"), Some(version));
        for uri in ["/healthz", "/_sim/stats"] {
            let (_, headers, _) = get_as(app, uri, "Bearer unused").await;
            assert_eq!(header(&headers, "moat-protocol"), None, "{uri}");
        }
    }
}
