//! `[telemetry]`: logs and traces, set up once at start, so every key
//! needs a restart.

use serde::{Deserialize, Serialize};

use super::{Problems, Section, redact};

/// Logs and traces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Telemetry {
    /// `pretty` for people, `json` for log pipelines.
    pub log_format: LogFormat,
    /// A tracing filter such as `info` or `moat=debug,info`; `RUST_LOG` wins.
    pub log_level: String,
    pub traces: Traces,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            log_format: LogFormat::Pretty,
            log_level: "info".into(),
            traces: Traces::default(),
        }
    }
}

impl Section for Telemetry {
    fn problems(&self, p: &mut Problems) {
        p.check(
            tracing_subscriber::EnvFilter::try_new(&self.log_level).is_ok(),
            "log_level",
            format!(
                "{:?} is not a tracing filter such as \"info\"",
                self.log_level
            ),
        );
        p.within("traces", |p| self.traces.problems(p));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// `[telemetry.traces]`: OpenTelemetry traces, off unless an endpoint is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Traces {
    /// Base URL of an OTLP/HTTP receiver (`http://collector:4318`); spans
    /// go to `{otlp_endpoint}/v1/traces`. Empty: no traces, no propagation.
    pub otlp_endpoint: String,
    pub protocol: OtlpProtocol,
    /// Share of requests without a sampled `traceparent` that are traced
    /// (0.0 to 1.0). A storefront's sampled trace is always followed.
    pub sample_ratio: f64,
    /// `service.name` of every span.
    pub service_name: String,
}

impl Default for Traces {
    fn default() -> Self {
        Traces {
            otlp_endpoint: String::new(),
            protocol: OtlpProtocol::Protobuf,
            sample_ratio: 1.0,
            service_name: "moat".into(),
        }
    }
}

impl Traces {
    pub fn enabled(&self) -> bool {
        !self.otlp_endpoint.trim().is_empty()
    }
}

impl Section for Traces {
    fn problems(&self, p: &mut Problems) {
        p.check(
            !self.enabled()
                || reqwest::Url::parse(&self.otlp_endpoint)
                    .is_ok_and(|u| matches!(u.scheme(), "http" | "https")),
            "otlp_endpoint",
            format!(
                "{:?} is not an http:// or https:// URL (or empty: traces off)",
                redact(&self.otlp_endpoint)
            ),
        );
        p.check(
            (0.0..=1.0).contains(&self.sample_ratio),
            "sample_ratio",
            "must be between 0.0 and 1.0",
        );
        p.check(
            !self.service_name.trim().is_empty(),
            "service_name",
            "must not be empty",
        );
    }
}

/// OTLP over HTTP: `http/protobuf` (what collectors expect by default) or
/// `http/json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OtlpProtocol {
    #[serde(rename = "http/protobuf")]
    Protobuf,
    #[serde(rename = "http/json")]
    Json,
}
