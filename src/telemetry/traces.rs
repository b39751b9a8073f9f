//! Traces: OpenTelemetry spans for each GraphQL operation, its cache
//! lookups and its upstream calls, exported over OTLP/HTTP, with W3C trace
//! context taken from the storefront (`traceparent`, `tracestate`) and sent
//! on every upstream call, and the trace id on every log line written
//! inside an operation.
//!
//! Off unless `[telemetry.traces] otlp_endpoint` is set, and then free: no
//! span is even created (`trace_span!` yields `Span::none()`), so the hot
//! path pays one relaxed load.
//!
//! Spans are `tracing` spans; `tracing-opentelemetry` turns those of this
//! crate into OpenTelemetry spans, and the SDK's batch processor exports
//! them from a thread of its own with a blocking HTTP client (the SDK's
//! thread has no async runtime).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

use crate::config::{OtlpProtocol, Traces};

static ON: AtomicBool = AtomicBool::new(false);
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Longest one export may take; spans that cannot be sent are dropped,
/// never queued without bound.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether traces are on in this process.
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// An INFO span for the trace, or `Span::none()` when traces are off.
macro_rules! trace_span {
    ($($arg:tt)*) => {
        if $crate::telemetry::traces::on() {
            ::tracing::info_span!($($arg)*)
        } else {
            ::tracing::Span::none()
        }
    };
}
pub(crate) use trace_span;

/// The layer that exports this crate's spans, when traces are configured.
/// A setting the exporter refuses is reported and leaves traces off: a
/// collector is never a reason not to serve.
pub(super) fn layer<S>(config: &Traces) -> Option<Box<dyn Layer<S> + Send + Sync>>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    if !config.enabled() {
        return None;
    }
    let provider = match provider(config) {
        Ok(provider) => provider,
        Err(e) => {
            eprintln!("moat: traces stay off: {e}");
            return None;
        }
    };
    let tracer = provider.tracer("moat");
    let _ = PROVIDER.set(provider);
    ON.store(true, Ordering::Relaxed);
    // Only Moat's own spans: not the HTTP libraries' debug spans.
    let ours = Targets::new().with_target("moat", tracing::Level::INFO);
    Some(
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            // What a span says is in its attributes; source locations,
            // threads and poll timings would be noise at a cost per span.
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_filter(ours)
            .boxed(),
    )
}

fn provider(config: &Traces) -> Result<SdkTracerProvider, String> {
    // The blocking client builds a TLS stack at once: it needs the process
    // crypto provider (the rest of Moat installs the same one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::blocking::Client::builder()
        .timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| format!("cannot build the OTLP client: {e}"))?;
    let endpoint = format!("{}/v1/traces", config.otlp_endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(http)
        .with_endpoint(endpoint)
        .with_protocol(match config.protocol {
            OtlpProtocol::Protobuf => Protocol::HttpBinary,
            OtlpProtocol::Json => Protocol::HttpJson,
        })
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| format!("cannot set up the OTLP exporter: {e}"))?;
    let resource = opentelemetry_sdk::Resource::builder_empty()
        .with_service_name(config.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.sample_ratio,
        ))))
        .with_resource(resource)
        .build())
}

/// Sends what is still buffered and stops the exporter: at the end of the
/// process, outside the async runtime (the export blocks).
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get() {
        if let Err(e) = provider.force_flush() {
            eprintln!("moat: could not send the last spans: {e}");
        }
        let _ = provider.shutdown();
    }
}

/// Makes `span` a child of the storefront's span when the request carries
/// a valid `traceparent`, and records the trace id on it for log lines
/// (the span must declare a `trace_id` field).
pub fn continue_from(span: &Span, headers: &HeaderMap) {
    if span.is_none() {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    let trace_id = span.context().span().span_context().trace_id();
    span.record("trace_id", tracing::field::display(trace_id));
}

/// Names `span` once its name is known (the operation, after parsing):
/// it has started by then, and a started span takes no `otel.name`.
pub fn rename(span: &Span, name: String) {
    if !span.is_none() {
        span.context().span().update_name(name);
    }
}

/// Adds `traceparent` (and `tracestate`) for the current span to an
/// upstream request. Nothing when traces are off.
pub fn inject(headers: &mut HeaderMap) {
    if !on() {
        return;
    }
    let context = Span::current().context();
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&context, &mut HeadersMut(headers));
    }
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeadersMut<'a>(&'a mut HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}
