//! The accept loop: HTTP/1.1 connections with a header-read timeout, at most
//! `max_connections` open at once (one more is closed at accept), each request bounded by
//! `request_timeout` and at most `max_concurrent_requests` in flight (503 `overloaded`
//! beyond). Slow or idle clients cannot hold descriptors or workers the lease API needs.
//!
//! With TLS, each accepted connection first completes a rustls handshake, itself bounded by
//! the header-read timeout and holding its connection slot, so a client that never sends a
//! ClientHello is closed like one that never sends its headers; then hyper serves it as before.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

/// The limits of `[api]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `app` on `listener` (HTTPS when `tls` is given) until `shutdown` resolves; then
/// stops accepting, lets open connections finish their request in flight (at most `drain`),
/// and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => break,
        };
        let (stream, _peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors, say: wait a little rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Full: closing at once costs nothing; queueing would hold a descriptor.
            tracing::warn!(
                max = limits.max_connections,
                "connection refused: at max_connections"
            );
            drop(stream);
            continue;
        };
        let (builder, app, tls) = (builder.clone(), app.clone(), tls.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let Some(tls) = tls else {
                return serve_connection(builder, TokioIo::new(stream), app, stop).await;
            };
            let handshake = tokio::select! {
                r = tokio::time::timeout(limits.header_read_timeout, tls.accept(stream)) => r,
                // The one change is to true: shutting down; a half-made connection is dropped.
                _ = stop.changed() => return,
            };
            match handshake {
                Ok(Ok(stream)) => serve_connection(builder, TokioIo::new(stream), app, stop).await,
                // A scanner, a plain-HTTP client or an untrusting one: nothing to act on.
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake not done within header_read_timeout"),
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every slot back: every connection closed.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(drain, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain time; closing them");
    }
    Ok(())
}

/// Serves one connection until it ends, or until shutdown lets its request in flight finish.
async fn serve_connection<I>(
    builder: http1::Builder,
    io: I,
    app: Router,
    mut stop: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let conn = builder
        .serve_connection(io, TowerToHyperService::new(app))
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended");
            }
        }
        // The one change is to true: shutting down.
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
