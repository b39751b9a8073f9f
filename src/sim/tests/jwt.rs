//! `customer_tokens` = JWT: the simulator as the shop's identity provider.

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::{assert_error, get, post, sim};
use crate::sim::{CustomerTokens, JwtAlg, SimConfig, Simulator};

fn part(token: &str, i: usize) -> Value {
    let text = token.split('.').nth(i).expect("part");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text).expect("base64url")).expect("json")
}

#[tokio::test(start_paused = true)]
async fn customers_get_signed_jwts_and_the_keys_are_served_and_rotated() {
    for alg in [JwtAlg::Es256, JwtAlg::EdDsa, JwtAlg::Rs256] {
        let app = Simulator::new(SimConfig {
            products: 10,
            customer_tokens: CustomerTokens::Jwt(alg),
            ..SimConfig::default()
        })
        .router();
        let (_, sign_ins) = get(&app, "/_sim/customers").await;
        let token = sign_ins["items"][0]["token"].as_str().expect("token");
        let header = part(token, 0);
        assert_eq!(header["alg"], alg.name());
        let claims = part(token, 1);
        assert_eq!(claims["sub"], sign_ins["items"][0]["id"]);
        assert_eq!(
            (&claims["iss"], &claims["aud"]),
            (&json!("moat-sim"), &json!("moat"))
        );
        let (status, jwks) = get(&app, "/.well-known/jwks.json").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(jwks["keys"][0]["kid"], header["kid"]);

        let (_, rotated) = post(&app, "/_sim/jwks/rotate", json!({})).await;
        let (_, jwks) = get(&app, "/.well-known/jwks.json").await;
        let kids: Vec<&Value> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| &k["kid"])
            .collect();
        assert_eq!(kids, [&header["kid"], &rotated["kid"]], "{alg:?}");

        let (_, minted) = post(
            &app,
            "/_sim/jwt",
            json!({"sub": "cust-002", "expires_in": -60, "claims": {"aud": ["x"], "iat": null}}),
        )
        .await;
        let claims = part(minted["token"].as_str().expect("token"), 1);
        assert_eq!(claims["aud"], json!(["x"]));
        assert!(claims.get("iat").is_none());
        assert!(claims["exp"].as_i64() < part(token, 1)["exp"].as_i64());
        assert_eq!(
            part(minted["token"].as_str().unwrap(), 0)["kid"],
            rotated["kid"]
        );
    }
}

#[tokio::test(start_paused = true)]
async fn with_opaque_tokens_there_is_no_jwks_and_minting_is_refused() {
    let app = sim(10).router();
    assert_error(
        &get(&app, "/.well-known/jwks.json").await,
        StatusCode::NOT_FOUND,
    );
    assert_error(
        &post(&app, "/_sim/jwt", json!({"sub": "cust-001"})).await,
        StatusCode::BAD_REQUEST,
    );
    let (_, sign_ins) = get(&app, "/_sim/customers").await;
    assert!(
        sign_ins["items"][0]["token"]
            .as_str()
            .unwrap()
            .starts_with("ct_")
    );
}
