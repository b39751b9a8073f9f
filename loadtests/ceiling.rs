//! The ceiling for a load test: a minimal HTTP server that answers every
//! request with the same bytes Moat sent for the scenario's query, so the
//! runner can report Moat's throughput as a share of what the same machine,
//! load tool and HTTP stack can do at all.
//!
//! It is built on what Moat's listener is built on (tokio multi-thread,
//! hyper 1 through hyper-util's auto connection builder, no `TCP_NODELAY`),
//! so the difference is Moat's own work: routing, layers, GraphQL, caches.
//! It reads each request body as Moat does, then answers 200 with Moat's
//! content type for a client that does not ask for graphql-response+json.
//!
//! ```text
//! cargo run --release --example ceiling -- 127.0.0.1:0 body.json
//! ```
//! prints `ceiling: listening on http://ADDR` once bound.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

const CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// A body of one known chunk: no boxing, exact length up front.
struct Fixed(Option<Bytes>);

impl Body for Fixed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.take().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.as_ref().map_or(0, |b| b.len() as u64))
    }
}

/// Reads the request body to its end (Moat reads every POST body).
async fn drain(mut body: Incoming) -> Result<(), hyper::Error> {
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        frame?;
    }
    Ok(())
}

async fn answer(request: Request<Incoming>, body: Bytes) -> Result<Response<Fixed>, hyper::Error> {
    drain(request.into_body()).await?;
    let mut response = Response::new(Fixed(Some(body)));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    Ok(response)
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(path), None) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: ceiling <listen address, e.g. 127.0.0.1:0> <response body file>");
        return ExitCode::from(2);
    };
    let listen: SocketAddr = match listen.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ceiling: {listen:?} is not an address: {e}");
            return ExitCode::from(2);
        }
    };
    let body = match std::fs::read(&path) {
        Ok(b) => Bytes::from(b),
        Err(e) => {
            eprintln!("ceiling: cannot read {path}: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ceiling: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ceiling: no local address: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "ceiling: listening on http://{addr} ({} byte body)",
        body.len()
    );
    let _ = std::io::stdout().flush();

    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            // Out of file descriptors and the like: keep serving the rest.
            Err(e) => {
                eprintln!("ceiling: accept failed: {e}");
                continue;
            }
        };
        let builder = builder.clone();
        let body = body.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(request, body.clone()));
            // A client closing mid-request is normal at the end of a run.
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
