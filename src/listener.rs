//! Accepting connections for a listener (public or admin) and holding them
//! to the limits a server on the internet needs, which `axum::serve` does
//! not offer:
//!
//! - a client must send a request's headers within `header_read_timeout`
//!   (one byte a second is not a request);
//! - a keep-alive connection without a request for `idle_timeout` is
//!   closed;
//! - at most `max` connections are open: at the cap a new one takes the
//!   place of the connection idle longest, so a flood of idle sockets
//!   cannot lock real clients out; only when every connection is busy is
//!   a new one refused;
//! - HTTP/2, when on, with a bound on concurrent streams and header size.
//!
//! hyper's own header timeout also fires on an idle keep-alive connection,
//! which would make the idle timeout as short as the header one; so both
//! are kept here, from what the connection reads and which requests are in
//! flight.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::config::Connections;
use crate::telemetry;

/// Serves `service` (a router, or one in front of it) on `listener` until `stopped` turns true, then stops
/// accepting, lets every connection finish its requests (idle ones close
/// at once) and returns when the last one has closed.
pub fn serve<S: Service>(
    name: &'static str,
    listener: TcpListener,
    service: S,
    limits: Connections,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let open = Arc::new(Open {
            name,
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            by_id: Mutex::new(HashMap::new()),
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // The header timeout is ours (see the module docs).
        builder.http1().header_read_timeout(None);
        builder
            .http2()
            .max_concurrent_streams(limits.http2_max_streams)
            .max_header_list_size(64 * 1024);
        if !limits.http2 {
            builder = builder.http1_only();
        }
        let mut connections = JoinSet::new();
        let conn_stopped = stopped.clone();
        let stop = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        tokio::pin!(stop);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        if !open.make_room(limits.max) {
                            metrics::counter!(telemetry::CONNECTIONS_REFUSED, "listener" => name).increment(1);
                            continue; // dropping the stream closes it
                        }
                        let _ = stream.set_nodelay(true);
                        let conn = Arc::new(Conn::new(open.now()));
                        let id = open.add(conn.clone());
                        connections.spawn(connection(
                            open.clone(),
                            id,
                            conn,
                            builder.clone(),
                            service.clone(),
                            stream,
                            peer,
                            limits.clone(),
                            conn_stopped.clone(),
                        ));
                    }
                    // Out of descriptors or a connection reset before it was
                    // accepted: wait a moment rather than spin.
                    Err(e) => {
                        tracing::warn!(listener = name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                _ = &mut stop => break,
            }
        }
        drop(listener);
        while connections.join_next().await.is_some() {}
    })
}

/// The open connections of one listener.
struct Open {
    name: &'static str,
    /// Times below are milliseconds since this instant.
    epoch: Instant,
    next_id: AtomicU64,
    by_id: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Open {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// True when a new connection may be taken: below the cap, or after
    /// telling the connection idle longest to close.
    fn make_room(&self, max: usize) -> bool {
        let by_id = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        if by_id.len() < max {
            return true;
        }
        let idle_longest = by_id
            .values()
            .filter(|c| {
                c.in_flight.load(Ordering::Relaxed) == 0 && !c.evicted.load(Ordering::Relaxed)
            })
            .min_by_key(|c| c.last_active.load(Ordering::Relaxed));
        match idle_longest {
            Some(conn) => {
                conn.evicted.store(true, Ordering::Relaxed);
                conn.wake.notify_one();
                true
            }
            None => false,
        }
    }

    fn add(&self, conn: Arc<Conn>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut by_id = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        by_id.insert(id, conn);
        metrics::gauge!(telemetry::CONNECTIONS_OPEN, "listener" => self.name)
            .set(by_id.len() as f64);
        id
    }

    fn remove(&self, id: u64) {
        let mut by_id = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        by_id.remove(&id);
        metrics::gauge!(telemetry::CONNECTIONS_OPEN, "listener" => self.name)
            .set(by_id.len() as f64);
    }
}

/// What the watchdog knows of one connection.
struct Conn {
    /// Requests being handled.
    in_flight: AtomicU32,
    /// When a request last finished (or the connection opened).
    last_active: AtomicU64,
    /// When bytes of a request's head started arriving with no request in
    /// flight; 0 when none are pending.
    head_since: AtomicU64,
    /// HTTP/2 multiplexes: only idleness applies to it.
    http2: AtomicBool,
    /// Chosen to make room for a new connection.
    evicted: AtomicBool,
    /// Wakes the watchdog: a head started, or it was evicted.
    wake: Notify,
}

/// Why a connection was closed by us.
#[derive(Debug, Clone, Copy)]
enum Close {
    HeaderTimeout,
    IdleTimeout,
    Evicted,
}

impl Close {
    fn reason(self) -> &'static str {
        match self {
            Close::HeaderTimeout => "header_timeout",
            Close::IdleTimeout => "idle_timeout",
            Close::Evicted => "evicted",
        }
    }
}

impl Conn {
    fn new(now: u64) -> Conn {
        Conn {
            in_flight: AtomicU32::new(0),
            last_active: AtomicU64::new(now),
            head_since: AtomicU64::new(0),
            http2: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn connection<S: Service>(
    open: Arc<Open>,
    id: u64,
    conn: Arc<Conn>,
    builder: auto::Builder<TokioExecutor>,
    service: S,
    stream: TcpStream,
    peer: SocketAddr,
    limits: Connections,
    mut stopped: watch::Receiver<bool>,
) {
    let io = TokioIo::new(Watched {
        stream,
        conn: conn.clone(),
        open: open.clone(),
        first_read: true,
    });
    let service = {
        let (conn, open) = (conn.clone(), open.clone());
        hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let in_flight = InFlight::begin(conn.clone(), open.clone());
            let response = service.clone().oneshot(request.map(axum::body::Body::new));
            async move {
                let response = response.await;
                drop(in_flight);
                response
            }
        })
    };
    let served = builder.serve_connection(io, service);
    tokio::pin!(served);
    let watchdog = watch(&open, &conn, &limits);
    tokio::pin!(watchdog);
    let stopping = async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    tokio::pin!(stopping);
    let drain = tokio::select! {
        _ = served.as_mut() => false,
        close = &mut watchdog => {
            // Nothing is in flight: dropping the connection closes it.
            metrics::counter!(telemetry::CONNECTIONS_CLOSED, "listener" => open.name, "reason" => close.reason())
                .increment(1);
            false
        }
        _ = &mut stopping => true,
    };
    if drain {
        // Finish what is in flight, then close; idle connections close now.
        served.as_mut().graceful_shutdown();
        let _ = served.await;
    }
    open.remove(id);
}

/// What a listener serves: an axum `Router`, or any service like one.
pub trait Service:
    tower::Service<
        axum::extract::Request,
        Response = axum::response::Response,
        Error = std::convert::Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> Service for S where
    S: tower::Service<
            axum::extract::Request,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// Resolves when the connection should be closed: its head is too slow,
/// it has been idle too long, or it was evicted.
async fn watch(open: &Open, conn: &Conn, limits: &Connections) -> Close {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let (header, idle) = (ms(limits.header_read_timeout), ms(limits.idle_timeout));
    loop {
        if conn.evicted.load(Ordering::Relaxed) {
            if conn.in_flight.load(Ordering::Relaxed) == 0 {
                return Close::Evicted;
            }
            // A request arrived after it was chosen: it stays.
            conn.evicted.store(false, Ordering::Relaxed);
        }
        let now = open.now();
        let head_since = conn.head_since.load(Ordering::Relaxed);
        let (due, close) = if conn.in_flight.load(Ordering::Relaxed) > 0 {
            (now + idle, None)
        } else if head_since > 0 {
            (head_since + header, Some(Close::HeaderTimeout))
        } else {
            (
                conn.last_active.load(Ordering::Relaxed) + idle,
                Some(Close::IdleTimeout),
            )
        };
        if let Some(close) = close
            && now >= due
        {
            return close;
        }
        let at = open.epoch + Duration::from_millis(due);
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {}
            _ = conn.wake.notified() => {}
        }
    }
}

/// Counts a request in flight for as long as it is handled, even if the
/// client goes away mid-request (the future is then dropped).
struct InFlight {
    conn: Arc<Conn>,
    open: Arc<Open>,
}

impl InFlight {
    fn begin(conn: Arc<Conn>, open: Arc<Open>) -> InFlight {
        conn.in_flight.fetch_add(1, Ordering::Relaxed);
        conn.head_since.store(0, Ordering::Relaxed);
        InFlight { conn, open }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.conn
            .last_active
            .store(self.open.now(), Ordering::Relaxed);
        self.conn.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The socket, telling the watchdog when a request's head starts arriving.
struct Watched {
    stream: TcpStream,
    conn: Arc<Conn>,
    open: Arc<Open>,
    first_read: bool,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let this = &mut *self;
            if std::mem::take(&mut this.first_read) && buf.filled()[before..].starts_with(b"PRI ") {
                this.conn.http2.store(true, Ordering::Relaxed);
            }
            let conn = &this.conn;
            if !conn.http2.load(Ordering::Relaxed)
                && conn.in_flight.load(Ordering::Relaxed) == 0
                && conn.head_since.load(Ordering::Relaxed) == 0
            {
                conn.head_since
                    .store(this.open.now().max(1), Ordering::Relaxed);
                conn.wake.notify_one();
            }
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::Close;

    #[test]
    fn every_close_reason_is_exported_from_the_start() {
        for close in [Close::HeaderTimeout, Close::IdleTimeout, Close::Evicted] {
            assert!(crate::telemetry::series::CLOSE_REASONS.contains(&close.reason()));
        }
    }
}
