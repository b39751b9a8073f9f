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
//! - HTTP/2, when on, with a bound on concurrent streams and header size;
//! - answers a client does not read are bounded: at most `max_unread`
//!   bytes of them per connection (an answer past it becomes a 503), and a
//!   connection whose client reads none of them for `unread_timeout` is
//!   closed. An HTTP/2 client can shut every stream's window and ask on
//!   all of them at once; without this the process would hold each answer
//!   for as long as it liked.
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
use std::task::{Context, Poll, ready};
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
    /// Bytes of answers handed over but not yet taken for the socket.
    unread: AtomicU64,
    /// When the client last took answer bytes (or an answer was handed
    /// over while none waited).
    last_read: AtomicU64,
    /// An answer did not fit in `max_unread` and the client has read
    /// nothing since: nothing more runs until it does.
    full: AtomicBool,
    /// Wakes the watchdog: a head started, or it was evicted.
    wake: Notify,
}

/// Why a connection was closed by us.
#[derive(Debug, Clone, Copy)]
enum Close {
    HeaderTimeout,
    IdleTimeout,
    Evicted,
    Unread,
}

impl Close {
    fn reason(self) -> &'static str {
        match self {
            Close::HeaderTimeout => "header_timeout",
            Close::IdleTimeout => "idle_timeout",
            Close::Evicted => "evicted",
            Close::Unread => "unread",
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
            unread: AtomicU64::new(0),
            last_read: AtomicU64::new(now),
            full: AtomicBool::new(false),
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
            let max_unread = limits.max_unread.bytes();
            // Not run at all while the client leaves that much unread.
            let response = (!conn.full.load(Ordering::Relaxed))
                .then(|| service.clone().oneshot(request.map(axum::body::Body::new)));
            let (conn, open) = (conn.clone(), open.clone());
            async move {
                let Some(response) = response else {
                    return Ok(Unread::refused(&open));
                };
                let response = response.await;
                drop(in_flight);
                response.map(|r| Unread::hand_over(r, conn, open, max_unread))
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
    let unread = ms(limits.unread_timeout);
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
        let (due, close) = if conn.unread.load(Ordering::Relaxed) > 0 {
            let last_read = conn.last_read.load(Ordering::Relaxed);
            (last_read + unread, Some(Close::Unread))
        } else if conn.in_flight.load(Ordering::Relaxed) > 0 {
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

/// An answer's body, counted in its connection's `unread` until the
/// client's side takes it. Handed on in pieces of at most `PIECE` bytes:
/// HTTP/2 asks for the next piece only when the client's window has room,
/// so what waits on a shut window stays here, counted, and not in the
/// protocol's own buffers.
struct Unread {
    body: axum::body::Body,
    /// Taken from `body` and not yet handed on.
    held: bytes::Bytes,
    /// Of this answer, still counted in `conn.unread`.
    counted: u64,
    conn: Arc<Conn>,
    open: Arc<Open>,
}

const PIECE: usize = 16 * 1024;

impl Unread {
    /// `response` with its body counted; a 503 in its place when the
    /// connection already holds `max` unread bytes. Bodies of one piece
    /// or less pass as they are (the stream cap bounds them: 100 streams
    /// hold at most 1.6 MiB), so the common small answer costs nothing
    /// here; so do bodies of unknown length (Moat's answers are whole
    /// buffers).
    fn hand_over(
        response: axum::response::Response,
        conn: Arc<Conn>,
        open: Arc<Open>,
        max: u64,
    ) -> axum::response::Response {
        use http_body::Body as _;
        let Some(len) = response
            .body()
            .size_hint()
            .exact()
            .filter(|n| *n > PIECE as u64)
        else {
            return response;
        };
        let before = conn.unread.fetch_add(len, Ordering::Relaxed);
        if before > 0 && before + len > max {
            conn.unread.fetch_sub(len, Ordering::Relaxed);
            conn.full.store(true, Ordering::Relaxed);
            return Unread::refused(&open);
        }
        if before == 0 {
            conn.last_read.store(open.now(), Ordering::Relaxed);
            conn.wake.notify_one();
        }
        response.map(|body| {
            axum::body::Body::new(Unread {
                body,
                held: bytes::Bytes::new(),
                counted: len,
                conn,
                open,
            })
        })
    }

    fn refused(open: &Open) -> axum::response::Response {
        metrics::counter!(telemetry::ANSWERS_UNREAD_REFUSED, "listener" => open.name).increment(1);
        unread_refusal()
    }
}

fn unread_refusal() -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = serde_json::json!({ "errors": [{
        "message": "this connection holds too many answers its client has not read; read them, or ask on another connection",
        "extensions": { "code": "UNREAD_ANSWERS" },
    }]});
    (
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        [(axum::http::header::RETRY_AFTER, "1")],
        axum::Json(body),
    )
        .into_response()
}

impl http_body::Body for Unread {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, axum::Error>>> {
        let this = &mut *self;
        if this.held.is_empty() {
            match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.held = data,
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                other => return Poll::Ready(other),
            }
        }
        let piece = this.held.split_to(this.held.len().min(PIECE));
        let taken = (piece.len() as u64).min(this.counted);
        this.counted -= taken;
        this.conn.unread.fetch_sub(taken, Ordering::Relaxed);
        this.conn.full.store(false, Ordering::Relaxed);
        this.conn
            .last_read
            .store(this.open.now(), Ordering::Relaxed);
        Poll::Ready(Some(Ok(http_body::Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_empty() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let mut hint = self.body.size_hint();
        let held = self.held.len() as u64;
        hint.set_lower(hint.lower() + held);
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + held);
        }
        hint
    }
}

impl Drop for Unread {
    fn drop(&mut self) {
        if self.counted > 0 {
            self.conn.unread.fetch_sub(self.counted, Ordering::Relaxed);
            self.conn.full.store(false, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Close;

    #[test]
    fn every_close_reason_is_exported_from_the_start() {
        for close in [
            Close::HeaderTimeout,
            Close::IdleTimeout,
            Close::Evicted,
            Close::Unread,
        ] {
            assert!(crate::telemetry::series::CLOSE_REASONS.contains(&close.reason()));
        }
    }
}
