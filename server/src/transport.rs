//! The HTTP transport: how connections are accepted and served, and the layers every
//! answer passes through.
//!
//! A slow or silent client must not hold the server. The request head has to arrive whole
//! within [`Limits::header_read_timeout`] (hyper's timer, which also starts after each
//! answer, so it closes a keep-alive connection left idle that long); a body has to keep
//! moving ([`Limits::body_idle_timeout`]) and end within [`Limits::body_deadline`], which
//! leaves a slow phone its upload; and the answer has to be ready within
//! [`Limits::request_timeout`] (plus the body deadline when there is a body). A request the
//! timeout cuts may still finish its write in the background: the writes run on blocking
//! threads and are all-or-nothing, so it is either stored whole or not at all.
//!
//! Connections are accepted only while one of [`connection_cap`] permits is free. A flood
//! waits in the kernel's listen queue, spending no descriptor, instead of driving `accept`
//! into `EMFILE` with the database and blob files starved beside it; the connections
//! already served keep being answered. One address (IPv6: one /64) holds at most
//! [`address_share`] of the permits: its next connection is closed as soon as it is
//! accepted, so one client's idle flood cannot keep everyone else in the listen queue. Accept errors that are not about one connection are
//! backed off, doubling up to a second, and logged once per episode.
//!
//! Every answer is `nosniff`; HTML answers also carry a Content-Security-Policy that allows
//! the console's own style sheet and script and nothing inline (but `style` attributes),
//! and refuse framing. A client error on an `/api/` path or `/health` that a framework
//! layer answered bare (405, 408, 413, 414, 431, extractor rejections) is given the API's
//! one JSON error shape ([`crate::Error`]). Only what hyper refuses before the router sees
//! the request (a head over [`Limits::head_ceiling`], over 100 headers) is still a bare
//! status, and the connection is closed.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::HttpBody;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::{RequestBodyDeadlineLayer, RequestBodyTimeoutLayer};

use crate::Error;

/// How long clients may take and how much the server holds for them.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time for a request head to arrive whole, from the connection's start or the end of
    /// the previous answer (so also how long a keep-alive connection may sit idle).
    pub header_read_timeout: Duration,
    /// Longest pause between two pieces of a request body.
    pub body_idle_timeout: Duration,
    /// Time for a whole request body to arrive, however steadily it moves.
    pub body_deadline: Duration,
    /// Time for the answer to be ready, counted after the head (and, for a request with a
    /// body, on top of [`Limits::body_deadline`]).
    pub request_timeout: Duration,
    /// Most connections served at once; lowered to what the open-file limit allows
    /// (see [`connection_cap`]).
    pub max_connections: usize,
    /// Most connections one address may hold at once; `None` for the default share of
    /// [`address_share`]. Behind a reverse proxy every client has the proxy's address, so
    /// raise it to the cap there.
    pub max_connections_per_address: Option<usize>,
    /// Longest request target (path and query) answered, in bytes; longer is a 414.
    pub max_uri_bytes: usize,
    /// Most bytes of request header fields answered; more is a 431.
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(30),
            // The largest bodies, a 32 MiB sync or a 128 MiB import, need 55 KiB/s or
            // 220 KiB/s; a phone's 256 KiB blob chunk 450 bytes/s.
            body_deadline: Duration::from_secs(600),
            request_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_connections_per_address: None,
            max_uri_bytes: 8 * 1024,
            max_header_bytes: 32 * 1024,
        }
    }
}

impl Limits {
    /// The largest request head hyper reads before refusing it itself: room for the
    /// largest target and fields answered with a JSON error, and their line framing.
    pub fn head_ceiling(&self) -> usize {
        2 * (self.max_uri_bytes + self.max_header_bytes)
    }
}

/// Descriptors kept aside from connections: listener, standard streams, the SQLite writer,
/// its WAL and shared memory, logs.
const RESERVED_DESCRIPTORS: u64 = 64;

/// Descriptors one connection may hold at once: its socket, a SQLite reader (database and
/// WAL) and a blob file.
const DESCRIPTORS_PER_CONNECTION: u64 = 4;

/// How many connections are served at once: `configured`, lowered so that that many busy
/// connections fit in `open_file_limit` (`None` for no limit) beside the server's own
/// files; at least one.
pub fn connection_cap(configured: usize, open_file_limit: Option<u64>) -> usize {
    let Some(limit) = open_file_limit else {
        return configured.max(1);
    };
    let affordable = limit.saturating_sub(RESERVED_DESCRIPTORS) / DESCRIPTORS_PER_CONNECTION;
    let affordable = usize::try_from(affordable).unwrap_or(usize::MAX);
    configured.min(affordable).max(1)
}

/// How many of `cap` connections one address may hold: `configured`, or a quarter of the cap
/// but at least 16; never more than the cap, never less than one.
pub fn address_share(cap: usize, configured: Option<usize>) -> usize {
    configured.unwrap_or((cap / 4).max(16)).clamp(1, cap.max(1))
}

/// Connections held by each address key, shared by the accept loop and the connections.
#[derive(Debug, Default)]
struct Holders(std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>);

impl Holders {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<IpAddr, usize>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts one more connection of `ip`, or refuses it when `ip` holds `share` already.
    fn take(self: &Arc<Self>, ip: IpAddr, share: usize) -> Option<Held> {
        let mut held = self.lock();
        let count = held.entry(ip).or_insert(0);
        if *count >= share {
            return None;
        }
        *count += 1;
        Some(Held {
            holders: self.clone(),
            ip,
        })
    }
}

/// One connection counted against its address until dropped.
struct Held {
    holders: Arc<Holders>,
    ip: IpAddr,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self.holders.lock();
        if let Some(count) = held.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

/// The process's open-file limit (soft), `None` when unlimited.
pub fn open_file_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// Raises the process's soft open-file limit to its hard limit, as the server may, and
/// returns the limit then in force. Distributions start services at a soft 1,024 with a
/// far higher hard limit, which would cap the server at a few hundred connections.
pub fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
        }
    }
    open_file_limit()
}

/// Serves `app` on `listener` within `limits` until `shutdown` resolves, then stops
/// accepting, closes idle connections and lets requests in flight finish.
///
/// Handlers can take the peer's address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cap = connection_cap(limits.max_connections, open_file_limit());
    let share = address_share(cap, limits.max_connections_per_address);
    tracing::debug!(max_connections = cap, per_address = share, "serving");
    let permits = Arc::new(Semaphore::new(cap));
    let holders = Arc::new(Holders::default());
    let mut refusals = RefusalLog::default();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.head_ceiling());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut backoff = AcceptBackoff::default();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A permit first: at the cap the server stops accepting rather than accept and drop.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                tokio::select! {
                    () = backoff.wait(&e) => continue,
                    () = &mut shutdown => break,
                }
            }
        };
        backoff.recovered();
        let Some(held) = holders.take(crate::throttle::address_key(peer.ip()), share) else {
            // Closed at once: the permit is free again for the next connection in the queue.
            refusals.refused(peer.ip(), share);
            continue;
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: Request<_>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(request)
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                // Timeouts, resets and malformed heads: the client's doing, not the server's.
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(held);
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Logs connections refused for their address's share, at most once a minute, with how
/// many were refused since the last line.
#[derive(Debug, Default)]
struct RefusalLog {
    since: usize,
    last: Option<std::time::Instant>,
}

impl RefusalLog {
    fn refused(&mut self, ip: IpAddr, share: usize) {
        self.since += 1;
        let now = std::time::Instant::now();
        if self
            .last
            .is_none_or(|at| now - at >= Duration::from_secs(60))
        {
            tracing::warn!(
                %ip,
                per_address = share,
                refused = self.since,
                "closing connections of an address that holds its share"
            );
            self.since = 0;
            self.last = Some(now);
        }
    }
}

/// Errors of `accept` that concern one connection only: the next accept may succeed.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// The pause after an accept error such as `EMFILE`, doubling while the errors last.
#[derive(Debug, Default)]
struct AcceptBackoff {
    failures: u32,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MOST: Duration = Duration::from_secs(1);

    async fn wait(&mut self, e: &std::io::Error) {
        if self.failures == 0 {
            tracing::warn!(error = %e, "accept failed; backing off until it succeeds");
        }
        self.failures = self.failures.saturating_add(1);
        let pause = Self::FIRST
            .saturating_mul(1 << self.failures.min(8))
            .min(Self::MOST);
        tokio::time::sleep(pause).await;
    }

    fn recovered(&mut self) {
        if self.failures > 0 {
            tracing::info!(failures = self.failures, "accepting connections again");
            self.failures = 0;
        }
    }
}

/// Wraps `app` in the transport's layers: the JSON shape for client errors, security
/// headers, head size limits, the request timeout and the body timeouts.
pub fn layers(app: Router, limits: &Limits) -> Router {
    let limits = Arc::new(limits.clone());
    // Around the router as a whole, not each of its routes (as `app.layer` would be), so
    // that what the router itself adds, such as a 405's `Allow`, is seen.
    Router::new()
        .fallback_service(app)
        .layer(RequestBodyDeadlineLayer::new(limits.body_deadline))
        .layer(RequestBodyTimeoutLayer::new(limits.body_idle_timeout))
        .layer(middleware::from_fn_with_state(limits, bounded))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            html_only(CONTENT_SECURITY_POLICY),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            html_only("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            html_only("same-origin"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(middleware::from_fn(json_client_errors))
}

/// The console's policy: its own style sheet, script and images, nothing inline but the
/// `style` attributes of the statistics bars, no plugins, no framing, forms to itself.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; style-src 'self'; \
     style-src-attr 'unsafe-inline'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// A header value for HTML answers only.
fn html_only(value: &'static str) -> impl Fn(&Response) -> Option<HeaderValue> + Clone {
    move |response: &Response| {
        let html = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.trim_start().starts_with("text/html"));
        html.then(|| HeaderValue::from_static(value))
    }
}

/// Refuses oversized heads, then gives the handler its time.
async fn bounded(State(limits): State<Arc<Limits>>, request: Request, next: Next) -> Response {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if target > limits.max_uri_bytes {
        return (
            StatusCode::URI_TOO_LONG,
            format!(
                "the request target is {target} bytes, over the limit of {}",
                limits.max_uri_bytes
            ),
        )
            .into_response();
    }
    let fields = header_bytes(request.headers());
    if fields > limits.max_header_bytes {
        return (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "the header fields are {fields} bytes, over the limit of {}",
                limits.max_header_bytes
            ),
        )
            .into_response();
    }
    let allowed = if request.body().is_end_stream() {
        limits.request_timeout
    } else {
        limits.body_deadline + limits.request_timeout
    };
    let path = request.uri().path().to_owned();
    match tokio::time::timeout(allowed, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(%path, seconds = allowed.as_secs(), "request timed out");
            (
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request was not answered within {} s",
                    allowed.as_secs()
                ),
            )
                .into_response()
        }
    }
}

/// Bytes of header fields as sent: name, value and their `: ` and line end.
fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum()
}

/// Whether `path` is answered by the JSON API rather than the console.
fn is_api(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/") || path == "/health"
}

/// Largest plain-text rejection body read to become the JSON error's message.
const REJECTION_TEXT_LIMIT: usize = 4096;

/// Gives a bare client error on an API path the JSON error shape, keeping its status and
/// headers (`Allow`, `Retry-After`) and using its plain-text body, if any, as the message.
async fn json_client_errors(request: Request, next: Next) -> Response {
    let api = is_api(request.uri().path());
    let method = request.method().clone();
    let response = next.run(request).await;
    if !api || !response.status().is_client_error() || is_json(response.headers()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = if is_plain_text(&parts.headers) {
        axum::body::to_bytes(body, REJECTION_TEXT_LIMIT)
            .await
            .ok()
            .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok())
            .filter(|text| !text.trim().is_empty())
    } else {
        None
    };
    let message = text.unwrap_or_else(|| match parts.headers.get(header::ALLOW) {
        Some(allow) if parts.status == StatusCode::METHOD_NOT_ALLOWED => format!(
            "{method} is not allowed here; allowed: {}",
            allow.to_str().unwrap_or_default()
        ),
        _ => parts
            .status
            .canonical_reason()
            .unwrap_or("client error")
            .to_lowercase(),
    });
    let mut answer = Error::Rejected {
        status: parts.status,
        message,
    }
    .into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().insert(name, value.clone());
        }
    }
    answer
}

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn is_json(headers: &HeaderMap) -> bool {
    crate::extract::is_json_content_type(content_type(headers))
}

fn is_plain_text(headers: &HeaderMap) -> bool {
    content_type(headers).trim_start().starts_with("text/plain")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_leaves_room_for_the_servers_own_files() {
        // Debian's default soft limit: (1024 - 64) / 4.
        assert_eq!(connection_cap(1024, Some(1024)), 240);
        assert_eq!(connection_cap(1024, Some(1 << 20)), 1024);
        assert_eq!(connection_cap(1024, None), 1024);
        assert_eq!(connection_cap(1024, Some(10)), 1);
    }

    #[test]
    fn api_paths_are_told_from_console_paths() {
        assert!(is_api("/api/v1/targets"));
        assert!(is_api("/health"));
        assert!(!is_api("/apiary"));
        assert!(!is_api("/targets"));
    }
}
