//! `eunomia serve`: the seed's `core` for the server: load the config, open the store,
//! start the session manager, serve HTTP until SIGINT/SIGTERM, then end every session.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};

use super::RunError;
use crate::api::{graphql, http};
use crate::config::{Config, Tls};
use crate::container::{ContainerManager, ContainerOptions};
use crate::engine::{core_btf, system};
use crate::exporter::{default_exporters, StandingExporters};
use crate::fleet::Fleet;
use crate::metrics::Metrics;
use crate::results::store::{Store, StoreError, StoreOptions};
use crate::session::{spawn_retention, SessionManager};
use crate::trackers::warm::WarmPool;
use crate::trackers::PROBE_OBJECTS;

/// `HOST:PORT`, the host a name (`localhost`) or an address: its first address.
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .map_err(|e| format!("not HOST:PORT ({e})"))?
        .next()
        .ok_or_else(|| format!("`{text}` names no address"))
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on, `HOST:PORT` with a name or an address (default
    /// 127.0.0.1:8527; port 0 picks a free one).
    #[arg(long, value_parser = parse_listen)]
    pub listen: Option<SocketAddr>,
    /// SQLite database file (default ./eunomia.db), created and migrated on start.
    #[arg(long)]
    pub db: Option<std::path::PathBuf>,
    /// TOML configuration file.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (leaf first); SIGHUP reloads it.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's PEM private key (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Allow plain HTTP on a non-loopback address, for a TLS-terminating proxy in front.
    #[arg(long)]
    pub insecure_http: bool,
    /// Join the fleet whose shared database this is (`postgres://...`): run fleet
    /// sessions with the other nodes ([fleet] database).
    #[arg(long, value_name = "URL")]
    pub fleet: Option<String>,
    /// This server's name in the fleet ([fleet] node; default the hostname).
    #[arg(long)]
    pub node: Option<String>,
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
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        config.tls = Some(Tls {
            cert: cert.clone(),
            key: key.clone(),
        });
    }
    config.insecure_http |= args.insecure_http;
    if let Some(fleet) = &args.fleet {
        config.fleet.database = Some(fleet.clone());
    }
    if let Some(node) = &args.node {
        config.fleet.node = node.clone();
    }
    config
        .validate()
        .map_err(|e| RunError::Usage(e.to_string()))?;
    system::check_ready()?;
    if !config.btf_cache.as_os_str().is_empty() {
        core_btf::enable(&config.btf_cache, PROBE_OBJECTS);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve_async(config))
}

async fn serve_async(config: Config) -> Result<(), RunError> {
    // Before the store is opened: a bad certificate is the operator's input to fix (exit 2).
    let tls = match &config.tls {
        Some(tls) => Some(load_certificate(tls).await.map_err(RunError::Usage)?),
        None => None,
    };
    let metrics = Metrics::new();
    let options = StoreOptions {
        query_budget: Duration::from_secs(config.limits.request_timeout_secs),
        node: Some(config.fleet.node_name().map_err(|name| {
            RunError::Usage(format!(
                "`{name}` cannot name a node: use 1 to 64 letters, digits, `.`, `_` or `-`"
            ))
        })?),
        ..StoreOptions::default()
    };
    let store = Store::open(&config.db, options, metrics.clone())
        .await
        .map_err(|e| match e {
            // Another server holds it: the operator's to fix (exit 2).
            StoreError::InUse { .. } => RunError::Usage(e.to_string()),
            other => other.into(),
        })?;
    let config = Arc::new(config);
    let containers = ContainerManager::new(ContainerOptions::default());
    containers.sync().await;
    containers.spawn_background();
    if let Err(err) = containers.watch_processes() {
        tracing::warn!("containers are kept current by rescans only: {err}");
    }
    if let Err(err) = containers.watch_cgroups() {
        tracing::warn!("sessions take in new containers at the next rescan only: {err}");
    }
    let mut exporters = config.exporters.clone();
    if config.metrics.default_exporters {
        exporters.extend(default_exporters());
    }
    // Kept until the server ends; a configured exporter that cannot run stops the start.
    let standing =
        StandingExporters::start(&exporters, &metrics, &containers, config.metrics.max_series)
            .map_err(|e| RunError::Usage(e.to_string()))?;
    if !standing.is_empty() {
        tracing::info!(exporters = standing.len(), "standing exporters run");
    }
    let warm = WarmPool::new(&config.sessions.warm)
        .map_err(|e| RunError::Usage(format!("[sessions] warm: {e}")))?;
    let manager = SessionManager::new(store, metrics, config.clone(), containers, warm).await?;
    spawn_retention(manager.clone(), RETENTION_INTERVAL);
    let fleet = match &config.fleet.database {
        Some(database) => {
            let fleet = Fleet::join(&config.fleet, database, manager.clone())
                .await
                .map_err(|e| RunError::Usage(format!("cannot join the fleet: {e}")))?;
            eprintln!("eunomia: node {} of the fleet", fleet.node());
            Some(fleet)
        }
        None => None,
    };
    let schema = graphql::schema(manager.clone(), fleet);
    let app = http::router(schema, manager.clone(), &config);
    let listener = std::net::TcpListener::bind(config.listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    eprintln!(
        "eunomia: listening on {}://{addr}/graphql (database {})",
        if tls.is_some() { "https" } else { "http" },
        crate::results::store::shown(&config.db)
    );

    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp(listener)?
        .handle(handle.clone())
        // A caller that connects and never asks holds a socket; the TLS handshake has its own bound.
        .first_request_timeout(Duration::from_secs(config.limits.request_timeout_secs));
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    let server = match &tls {
        Some(rustls) => tokio::spawn(
            server
                .acceptor(RustlsAcceptor::new(rustls.clone()))
                .serve(service),
        ),
        None => tokio::spawn(server.serve(service)),
    };
    wait_for_shutdown(tls.as_ref().zip(config.tls.as_ref()), &manager).await?;
    eprintln!(
        "eunomia: shutting down; ending {} running sessions",
        manager.active_sessions()
    );
    manager.shutdown().await;
    // Subscriptions get DRAIN to close on their own; whatever is still open then is cut.
    handle.graceful_shutdown(Some(DRAIN));
    if let Ok(Ok(Err(err))) = tokio::time::timeout(DRAIN * 2, server).await {
        tracing::warn!("the HTTP server ended with an error: {err}");
    }
    manager.store().flush().await?;
    Ok(())
}

async fn load_certificate(tls: &Tls) -> Result<RustlsConfig, String> {
    RustlsConfig::from_pem_file(&tls.cert, &tls.key)
        .await
        .map_err(|e| {
            format!(
                "cannot use TLS certificate {} with key {}: {e}",
                tls.cert.display(),
                tls.key.display()
            )
        })
}

/// Returns on SIGINT or SIGTERM. SIGHUP reloads the detection rules and the certificate,
/// so a renewed one is served without a restart; a bad one of either is reported and the
/// old one kept.
async fn wait_for_shutdown(
    tls: Option<(&RustlsConfig, &Tls)>,
    manager: &SessionManager,
) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = hangup.recv() => {
                match manager.reload_rules() {
                    Ok(count) => eprintln!("eunomia: reloaded {count} detection rules"),
                    Err(e) => eprintln!("eunomia: keeping the current detection rules: {e}"),
                }
                let Some((rustls, files)) = tls else { continue };
                match rustls.reload_from_pem_file(&files.cert, &files.key).await {
                    Ok(()) => eprintln!("eunomia: reloaded TLS certificate {}", files.cert.display()),
                    Err(e) => eprintln!(
                        "eunomia: keeping the current TLS certificate; cannot reload {}: {e}",
                        files.cert.display()
                    ),
                }
            }
        }
    }
}
