//! `eunomia serve`: the seed's `core` for the server: load the config, open the store,
//! start the session manager, serve HTTP until SIGINT/SIGTERM, then end every session.

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::RunError;
use crate::api::{graphql, http};
use crate::config::Config;
use crate::container::{ContainerManager, ContainerOptions};
use crate::engine::system;
use crate::metrics::Metrics;
use crate::results::sqlite::{Store, StoreOptions};
use crate::session::{spawn_retention, SessionManager};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8527; port 0 picks a free one).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// SQLite database file (default ./eunomia.db), created and migrated on start.
    #[arg(long)]
    pub db: Option<std::path::PathBuf>,
    /// TOML configuration file.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
}

/// How long open connections (subscriptions) get to close after shutdown begins.
const DRAIN: Duration = Duration::from_secs(3);
const RETENTION_INTERVAL: Duration = Duration::from_secs(60);

pub fn serve(args: &ServeArgs) -> Result<(), RunError> {
    let mut config = match &args.config {
        Some(path) => Config::load(path).map_err(|e| RunError::Usage(e.to_string()))?,
        None => Config::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(db) = &args.db {
        config.db = db.clone();
    }
    config
        .validate()
        .map_err(|e| RunError::Usage(e.to_string()))?;
    system::check_ready()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve_async(config))
}

async fn serve_async(config: Config) -> Result<(), RunError> {
    let metrics = Metrics::new();
    let options = StoreOptions {
        query_budget: Duration::from_secs(config.limits.request_timeout_secs),
        ..StoreOptions::default()
    };
    let store = Store::open(&config.db, options, metrics.clone()).await?;
    let config = Arc::new(config);
    let containers = ContainerManager::new(ContainerOptions::default());
    containers.sync().await;
    containers.spawn_background();
    if let Err(err) = containers.watch_processes() {
        tracing::warn!("containers are kept current by rescans only: {err}");
    }
    let manager = SessionManager::new(store, metrics, config.clone(), containers).await?;
    spawn_retention(manager.clone(), RETENTION_INTERVAL);
    let app = http::router(graphql::schema(manager.clone()), manager.clone(), &config);
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    eprintln!(
        "eunomia: listening on http://{addr}/graphql (database {})",
        config.db.display()
    );

    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = drain_rx.await;
        })
        .into_future(),
    );
    shutdown_signal().await?;
    eprintln!(
        "eunomia: shutting down; ending {} running sessions",
        manager.active_sessions()
    );
    manager.shutdown().await;
    let _ = drain_tx.send(());
    if tokio::time::timeout(DRAIN, server).await.is_err() {
        tracing::warn!("connections still open after {DRAIN:?}; closing them");
    }
    manager.store().flush().await?;
    Ok(())
}

async fn shutdown_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
