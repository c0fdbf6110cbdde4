//! The server loop: accepts connections and serves each with hyper's
//! HTTP/1.1 connection builder.
//!
//! `axum::serve` sets no header-read timeout, and the router's
//! `TimeoutLayer` only starts once a request's headers are in: a client
//! sending `GET / HTTP/1.1\r\nHost: x\r\n` and nothing more held its
//! connection (and a task) for ever. Here every connection gets
//! `http.header_read_timeout_ms` to send each request's headers. hyper
//! starts that clock whenever it waits for a request head, so it is also
//! the longest an idle kept-alive connection stays open.
//!
//! Graceful shutdown as before: once `shutdown` resolves no connection is
//! accepted, idle connections are closed, requests in flight are answered,
//! and [`serve`] returns when the last connection has ended. (`App::stop`
//! bounds the wait with its grace period.)

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tracing::{debug, warn};

/// Serves `app` on `listener` until `shutdown` resolves and every
/// connection has ended.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before
                    // it was accepted: nothing to do for it, but do not spin
                    // while descriptors are short.
                    warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // Answers are small and written once: do not wait for Nagle.
        if let Err(e) = stream.set_nodelay(true) {
            debug!(error = %e, "TCP_NODELAY not set");
        }
        let conn =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // A header-read timeout, a client that went away, a malformed
            // request: the connection ends, nothing else to do.
            if let Err(e) = conn.await {
                debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
