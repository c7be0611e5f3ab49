//! The process's life under a service manager: systemd is told when tug serves (`READY=1` over
//! `$NOTIFY_SOCKET`, what a `Type=notify` unit waits for) and when it stops; SIGTERM or SIGINT starts a
//! graceful stop, which is bounded so that a stuck part cannot hold the service past its stop timeout
//! (every write is durable before it is acknowledged, so cutting a stop short loses nothing).

use std::future::Future;
use std::time::Duration;

use sd_notify::NotifyState;

/// How long a graceful stop may take before tug exits anyway (with the runtime's own 5 s bound on
/// blocking work in `main`, tug is gone within 20 s).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Tells the service manager, if any, that tug is serving.
pub fn notify_ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

fn notify(states: &[NotifyState]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "cannot notify the service manager");
    }
}

/// Returns on SIGTERM or SIGINT.
pub async fn until_stopped() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, shutting down"),
    }
    Ok(())
}

/// Runs a graceful stop, telling the service manager; gives up after `STOP_TIMEOUT` or on a second
/// SIGTERM or SIGINT.
pub async fn stop_within(stop: impl Future<Output = ()>) {
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    tokio::select! {
        () = stop => tracing::info!("stopped"),
        () = tokio::time::sleep(STOP_TIMEOUT) => {
            tracing::warn!(timeout = ?STOP_TIMEOUT, "not stopped in time; exiting anyway");
        }
        Ok(()) = until_stopped() => tracing::warn!("told again to stop; exiting without waiting"),
    }
}
