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
//! With `[http] tls_cert_file` / `tls_key_file` ([`ServerTls`]) every
//! connection is a TLS one (tokio-rustls): the handshake runs in the
//! connection's own task, bounded by the same header-read timeout, so a
//! client that connects and never says hello holds nothing for long. The
//! certificate is re-read when its files change (a cheap `stat` of both at
//! each new connection) and on SIGHUP; a reload that fails (a key that does
//! not fit yet, half-written files) keeps the certificate in use and logs a
//! warning.
//!
//! Graceful shutdown as before: once `shutdown` resolves no connection is
//! accepted, idle connections are closed, requests in flight are answered,
//! and [`serve`] returns when the last connection has ended. (`App::stop`
//! bounds the wait with its grace period.)

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::gateway::http::{crypto_provider, read_certs, read_key};

/// What identifies one version of a file cheaply: modification time,
/// length and inode (a rename over the file changes the inode even within
/// one timestamp tick).
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// The listener's certificate and key, re-read when their files change.
pub struct ServerTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    /// The files' stamps when `acceptor` was built, and the acceptor.
    current: Mutex<(Stamp, Stamp, TlsAcceptor)>,
}

impl ServerTls {
    /// Reads both files; any problem is a start-up error naming the field.
    pub fn load(cert_file: &Path, key_file: &Path) -> anyhow::Result<ServerTls> {
        let (c, k) = (stamp(cert_file), stamp(key_file));
        let acceptor = Self::read(cert_file, key_file)?;
        Ok(ServerTls {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            current: Mutex::new((c, k, acceptor)),
        })
    }

    fn read(cert_file: &Path, key_file: &Path) -> anyhow::Result<TlsAcceptor> {
        let chain = read_certs(cert_file, "http.tls_cert_file")?;
        let key = read_key(key_file, "http.tls_key_file")?;
        let mut config = rustls::ServerConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .with_context(|| {
                format!(
                    "http.tls_key_file {}: does not fit http.tls_cert_file {}",
                    key_file.display(),
                    cert_file.display()
                )
            })?;
        // hyper here speaks HTTP/1.1 only.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// The acceptor for a new connection: re-reads the files first when
    /// either changed since the last read (or always, with `force`: SIGHUP).
    pub fn acceptor(&self, force: bool) -> TlsAcceptor {
        let (c, k) = (stamp(&self.cert_file), stamp(&self.key_file));
        // Plain data: a panicking holder cannot leave it half-updated.
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if force || cur.0 != c || cur.1 != k {
            match Self::read(&self.cert_file, &self.key_file) {
                Ok(a) => {
                    info!("TLS certificate (re)loaded");
                    *cur = (c, k, a);
                }
                Err(e) => {
                    // Stamped anyway, so one bad pair of files is reported
                    // once, not at every connection; the next change (or a
                    // SIGHUP) is tried again.
                    warn!(error = %format!("{e:#}"), "TLS certificate reload failed; keeping the one in use");
                    cur.0 = c;
                    cur.1 = k;
                }
            }
        }
        cur.2.clone()
    }
}

/// Serves `app` on `listener` until `shutdown` resolves and every
/// connection has ended. Plain HTTP; see [`serve_with`] for HTTPS.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    serve_with(listener, app, header_read_timeout, None, shutdown).await
}

/// [`serve`], over TLS when `tls` is given.
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
    tls: Option<Arc<ServerTls>>,
    shutdown: impl Future<Output = ()>,
) {
    // SIGHUP reloads the certificate; only listened for with TLS, so a
    // plain-HTTP server keeps the default meaning of the signal.
    let mut hangup = match &tls {
        Some(_) => match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGHUP; the certificate still reloads when its files change");
                None
            }
        },
        None => None,
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    // Turns true when shutdown starts: a TLS handshake still in progress
    // then ends at once instead of holding shutdown for its timeout.
    let (stopping, _) = tokio::sync::watch::channel(false);
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
            Some(()) = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                if let Some(t) = &tls {
                    t.acceptor(true);
                }
                continue;
            }
        };
        // Answers are small and written once: do not wait for Nagle.
        if let Err(e) = stream.set_nodelay(true) {
            debug!(error = %e, "TCP_NODELAY not set");
        }
        let service = TowerToHyperService::new(app.clone());
        if let Some(tls) = &tls {
            let acceptor = tls.acceptor(false);
            let builder = builder.clone();
            // Watched from now: shutdown waits for a handshake in progress
            // (bounded by the timeout below), then for its connection.
            let watcher = graceful.watcher();
            let mut stopping = stopping.subscribe();
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(header_read_timeout, acceptor.accept(stream));
                let stream = tokio::select! {
                    done = handshake => match done {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            debug!(error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            debug!("TLS handshake timed out");
                            return;
                        }
                    },
                    _ = stopping.wait_for(|s| *s) => return,
                };
                let conn = watcher.watch(builder.serve_connection(TokioIo::new(stream), service));
                if let Err(e) = conn.await {
                    debug!(error = %e, "HTTPS connection ended with an error");
                }
            });
            continue;
        }
        let conn = builder.serve_connection(TokioIo::new(stream), service);
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
    stopping.send_replace(true);
    graceful.shutdown().await;
}
