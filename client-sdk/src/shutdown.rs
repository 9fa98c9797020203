//! A future that completes on Ctrl-C or SIGTERM, to deregister before a server stops.

/// Completes when the process receives Ctrl-C (SIGINT) or SIGTERM.
///
/// Use it to deregister first and stop serving second, so the gateway stops routing here before the
/// server stops answering (with actix-web: `.disable_signals()`, then on this future `deregister()` and
/// `server_handle.stop(true)`; with tonic: `serve_with_shutdown(addr, async { shutdown_signal().await;
/// let _ = registration.deregister().await; })`).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
