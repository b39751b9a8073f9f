//! Traces: OpenTelemetry spans for each GraphQL operation, its cache
//! lookups and its upstream calls, exported over OTLP/HTTP, with W3C trace
//! context taken from the storefront (`traceparent`, `tracestate`) and sent
//! on every upstream call, and the trace id on every log line written
//! inside an operation.
//!
//! Off unless `[telemetry.traces] otlp_endpoint` is set, and then free: no
//! span is even created (`trace_span!` yields `Span::none()`), so the hot
//! path pays one relaxed load. Off, Moat still passes the storefront's
//! context on unchanged (OpenTelemetry's rule for a service without an
//! exporter), so the ERP can join the storefront's trace: the request runs
//! with it as a task-local (`pass_on`), each cache flight keeps the one of
//! the request that started it (`carried`), and `inject` sends it. A
//! request without `traceparent` costs one header lookup.
//!
//! Spans are `tracing` spans; `tracing-opentelemetry` turns those of this
//! crate into OpenTelemetry spans, and the SDK's batch processor exports
//! them from a thread of its own with a blocking HTTP client (the SDK's
//! thread has no async runtime).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
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

/// A storefront's W3C trace context, as it sent it.
#[derive(Debug)]
pub struct Incoming {
    traceparent: HeaderValue,
    tracestate: Option<HeaderValue>,
}

tokio::task_local! {
    /// What the request being served (or that started this cache flight)
    /// sent, to pass on while traces are off.
    static PASSED_ON: Option<Arc<Incoming>>;
}

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// The context to pass on to the upstream calls of a request with
/// `headers`: only while traces are off (on, the calls carry the request
/// span's child), and only a valid `traceparent`, with its `tracestate`.
pub fn incoming(headers: &HeaderMap) -> Option<Arc<Incoming>> {
    if on() {
        return None;
    }
    let traceparent = headers.get(TRACEPARENT)?.clone();
    if !well_formed(traceparent.as_bytes()) {
        return None;
    }
    // Several `tracestate` lines are one list (W3C trace context §3.3.1.2).
    let mut states = headers.get_all(TRACESTATE).iter();
    let tracestate = match (states.next(), states.next()) {
        (None, _) => None,
        (Some(one), None) if one.len() <= MAX_TRACESTATE => Some(one.clone()),
        _ => {
            let joined: Vec<&[u8]> = headers
                .get_all(TRACESTATE)
                .iter()
                .map(HeaderValue::as_bytes)
                .collect();
            capped(&joined.join(&b","[..]))
        }
    };
    Some(Arc::new(Incoming {
        traceparent,
        tracestate,
    }))
}

/// Most of a `tracestate` passed on: what every W3C trace context
/// participant must propagate (§3.3.1.5), and all a client may make Moat
/// carry to every upstream call.
const MAX_TRACESTATE: usize = 512;
/// An entry longer than this is dropped first when the list is too long.
const MAX_TRACESTATE_ENTRY: usize = 128;

/// `tracestate` within `MAX_TRACESTATE` as §3.3.1.5 cuts it: entries over
/// 128 characters go first, then entries from the end. None if nothing is
/// left.
fn capped(value: &[u8]) -> Option<HeaderValue> {
    let entries: Vec<&[u8]> = value
        .split(|b| *b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|e| !e.is_empty())
        .collect();
    let total = |kept: &[&[u8]]| {
        kept.iter()
            .map(|e| e.len() + 1)
            .sum::<usize>()
            .saturating_sub(1)
    };
    let mut kept = entries.clone();
    if total(&kept) > MAX_TRACESTATE {
        kept.retain(|e| e.len() <= MAX_TRACESTATE_ENTRY);
    }
    while total(&kept) > MAX_TRACESTATE {
        kept.pop();
    }
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_bytes(&kept.join(&b","[..])).ok()
}

/// A `traceparent` as W3C trace context §3.2 has it: `version-traceid-
/// parentid-flags` in lowercase hex, ids not all zero, version not `ff`;
/// version `00` exactly so, a later one perhaps followed by `-` and more.
/// (OpenTelemetry's propagator also takes short ids, which must not be
/// passed on as if they were the storefront's.)
fn well_formed(value: &[u8]) -> bool {
    let hex = |part: &[u8]| {
        part.iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    };
    let nonzero = |part: &[u8]| part.iter().any(|b| *b != b'0');
    if value.len() < 55 || (value.len() > 55 && (value[..2] == *b"00" || value[55] != b'-')) {
        return false;
    }
    let (version, trace_id, parent_id, flags) =
        (&value[..2], &value[3..35], &value[36..52], &value[53..55]);
    [value[2], value[35], value[52]] == [b'-'; 3]
        && hex(version)
        && version != b"ff"
        && hex(trace_id)
        && nonzero(trace_id)
        && hex(parent_id)
        && nonzero(parent_id)
        && hex(flags)
}

/// Runs a request whose upstream calls pass `context` on.
pub async fn pass_on<F: Future>(context: Arc<Incoming>, request: F) -> F::Output {
    PASSED_ON.scope(Some(context), request).await
}

/// `flight` passing on the context of the request that starts it (none
/// if it sent none), whichever task polls it: flights are shared, and a
/// request that joins one must not lend it its own context.
pub fn carried<F: Future>(flight: F) -> impl Future<Output = F::Output> {
    let context = PASSED_ON.try_with(Option::clone).ok().flatten();
    PASSED_ON.scope(context, flight)
}

/// Adds `traceparent` (and `tracestate`) to an upstream request: for the
/// current span when traces are on, else the storefront's own, unchanged.
pub fn inject(headers: &mut HeaderMap) {
    if !on() {
        let _ = PASSED_ON.try_with(|context| {
            if let Some(context) = context {
                headers.insert(TRACEPARENT, context.traceparent.clone());
                if let Some(state) = &context.tracestate {
                    headers.insert(TRACESTATE, state.clone());
                }
            }
        });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_tracestate_is_cut_as_w3c_says() {
        let short = b"a=1,b=2";
        assert_eq!(capped(short).unwrap(), "a=1,b=2");
        let long_entry = format!("big={}", "x".repeat(200));
        let many: Vec<String> = (0..90).map(|i| format!("k{i:02}=v{i:02}")).collect();
        let value = format!(
            "{},{long_entry},{}",
            many[..3].join(","),
            many[3..].join(",")
        );
        let cut = capped(value.as_bytes()).unwrap();
        let cut = cut.to_str().unwrap();
        assert!(cut.len() <= MAX_TRACESTATE, "{}", cut.len());
        assert!(!cut.contains("big="), "long entries go first");
        assert!(cut.starts_with("k00=v00,k01=v01,k02=v02,k03=v03"), "{cut}");
        assert!(!cut.contains("k89"), "then entries from the end: {cut}");
        assert_eq!(capped(long_entry.repeat(5).as_bytes()), None);
    }

    const SENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn sent(traceparent: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_str(traceparent).unwrap());
        headers
    }

    /// What an upstream call made now would carry.
    async fn injected() -> Option<String> {
        let mut headers = HeaderMap::new();
        inject(&mut headers);
        headers
            .get(TRACEPARENT)
            .map(|v| v.to_str().unwrap().to_string())
    }

    #[test]
    fn only_a_valid_traceparent_is_passed_on() {
        assert!(incoming(&sent(SENT)).is_some());
        // A later version may carry more fields, after a dash.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-cafe";
        assert!(incoming(&sent(later)).is_some());
        assert!(incoming(&HeaderMap::new()).is_none());
        for malformed in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(incoming(&sent(malformed)).is_none(), "{malformed}");
        }
    }

    #[tokio::test]
    async fn a_flight_passes_on_the_context_of_the_request_that_started_it() {
        let context = || incoming(&sent(SENT)).expect("valid");
        assert_eq!(pass_on(context(), injected()).await.as_deref(), Some(SENT));
        assert_eq!(injected().await, None, "outside any request");

        // Started by a request, driven by a background task: still its.
        let flight = PASSED_ON.sync_scope(Some(context()), || carried(injected()));
        assert_eq!(tokio::spawn(flight).await.unwrap().as_deref(), Some(SENT));

        // Started by a request that sent none, joined and driven by one
        // that sent one: nothing, never the joiner's.
        let flight = carried(injected());
        assert_eq!(pass_on(context(), flight).await, None);
    }
}
