//! Start-up, the accept loop and shutdown.
//!
//! [`Application::build`] opens the store, initializes it when new, loads the gateway
//! state, binds the listener (port 0 in tests) and starts the background tasks;
//! [`Application::run_until_stopped`] serves until the shutdown signal, then lets
//! in-flight requests finish and flushes the counters.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use secrecy::{ExposeSecret, SecretString};
use tokengate_core::token::{self, Prefix};
use tokengate_core::{Digest, IpAllowlist};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

use crate::config::Config;
use crate::drain::Drain;
use crate::gateway::lane::{Exit, Lane};
use crate::gateway::{self, ClientAddr, Gateway, GatewaySettings, PeerAddr, json_error};
use crate::limits::{ClientBody, ConnState, TimedBody, TrackedBody};
use crate::linger::ClientIo;
use crate::oauth::OAuthState;
use crate::service::Services;
use crate::state::GatewayState;
use crate::store::{AdminTokenStore, SqlStore, StoreError};
use crate::tls::Tls;
use crate::usage::UsageRecorder;
use crate::{api, sync};

/// Opens the store the configuration names.
pub async fn open_store(config: &Config) -> anyhow::Result<SqlStore> {
    let store = match &config.database_url {
        Some(url) => SqlStore::open(url).await,
        None => SqlStore::open_sqlite(&config.data_dir).await,
    };
    store.context("opening the store")
}

/// Opens PostgreSQL, waiting for it when it cannot be reached yet (a node may start
/// before its database, or during an outage). Meanwhile, on plain HTTP, the listener
/// answers `/healthz` with 200 and everything else with `503 store_unavailable`, each
/// on a connection of its own, so that health checks and load balancers see the truth.
async fn open_when_reachable(url: &str, listener: &TcpListener, answer: bool) -> anyhow::Result<SqlStore> {
    let mut waiting = false;
    loop {
        match SqlStore::open(url).await {
            Ok(store) => return Ok(store),
            Err(e) if store_unreachable(&e) => {
                if !waiting {
                    let listen = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
                    tracing::warn!(error = %e, listen = %listen, "waiting for the store");
                    waiting = true;
                }
            }
            Err(e) => return Err(e).context("opening the store"),
        }
        let retry = tokio::time::sleep(Duration::from_millis(250));
        tokio::pin!(retry);
        loop {
            tokio::select! {
                () = &mut retry => break,
                accepted = listener.accept(), if answer => {
                    if let Ok((stream, _)) = accepted {
                        tokio::spawn(answer_while_waiting(stream));
                    }
                }
            }
        }
    }
}

/// Whether opening the store failed because it cannot be reached (yet), rather than
/// because it refused us (credentials, migrations).
fn store_unreachable(e: &StoreError) -> bool {
    let starting = |e: &sqlx::Error| e.as_database_error().and_then(|d| d.code()).is_some_and(|c| c == "57P03");
    match e {
        StoreError::Backend(e) | StoreError::Migrate(sqlx::migrate::MigrateError::Execute(e)) => {
            matches!(e, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_)) || starting(e)
        }
        _ => false,
    }
}

async fn answer_while_waiting(stream: tokio::net::TcpStream) {
    let service = service_fn(|req: Request<Incoming>| async move {
        let mut response = if req.uri().path() == "/healthz" {
            Response::new(Body::from(r#"{"status":"ok"}"#))
        } else {
            let body = r#"{"error":"store unavailable, try again","code":"store_unavailable"}"#;
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            response
        };
        response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok::<_, std::convert::Infallible>(response)
    });
    let conn =
        hyper::server::conn::http1::Builder::new().keep_alive(false).serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;
}

/// Creates the first admin token. `None` when the store was already initialized.
pub async fn initialize(store: &SqlStore) -> anyhow::Result<Option<SecretString>> {
    let secret = token::generate(Prefix::Admin);
    let id = tokengate_core::AuditId::new().to_string();
    match store.create_first_admin_token(&id, Digest::of(secret.expose_secret().as_bytes())).await {
        Ok(()) => Ok(Some(secret)),
        Err(StoreError::Conflict(_)) => Ok(None),
        Err(e) => Err(e).context("initializing the store"),
    }
}

/// Writes the admin token to `DIR/admin-token`, readable by the owner only.
fn write_admin_token(dir: &Path, secret: &SecretString) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    crate::data_dir::create_private_dir(dir)?;
    let path = dir.join("admin-token");
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
    file.write_all(secret.expose_secret().as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    Ok(path)
}

pub struct Application {
    listener: TcpListener,
    port: u16,
    services: Services,
    /// What each worker's gateway is made from (each has its own upstream pool).
    gateway_settings: GatewaySettings,
    usage: Arc<UsageRecorder>,
    stop_tx: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    tls: Option<Arc<Tls>>,
}

/// A listening socket with `SO_REUSEPORT`, so that every worker can have its own on
/// the same address and the kernel spreads connections between them.
fn reuseport_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(4096)?.into_std()
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let listener = reuseport_listener(config.listen)
            .and_then(TcpListener::from_std)
            .with_context(|| format!("binding {}", config.listen))?;
        let local = listener.local_addr()?;
        let store = match &config.database_url {
            Some(url) => open_when_reachable(url, &listener, config.tls_cert.is_none()).await?,
            None => open_store(&config).await?,
        };
        if let Some(secret) = initialize(&store).await? {
            let path = write_admin_token(&config.data_dir, &secret).context("writing the admin token file")?;
            tracing::info!(path = %path.display(), "initialized a new store; the admin token is in this file");
        }
        let port = local.port();
        if config.database_url.is_some() && config.master_key.is_none() {
            tracing::warn!(
                "no TOKENGATE_MASTER_KEY: this node seals secrets with its own key file; nodes sharing \
                 PostgreSQL must all be given the same master key"
            );
        }
        let master_key = Arc::new(
            crate::master_key::MasterKey::load(config.master_key.as_ref().map(|k| k.expose_secret()), &config.data_dir)
                .context("loading the master key")?,
        );
        let issuer = config.issuer(local);
        let egress = Arc::new(config.egress_policy());
        let state = Arc::new(GatewayState::new(OAuthState::new(
            Arc::clone(&master_key),
            issuer,
            Duration::from_secs(config.jwks_kid_refresh_seconds),
            Arc::clone(&egress),
        )));
        state.resync(&store).await.context("loading the gateway state")?;
        let usage = Arc::new(UsageRecorder::with_max_rows(config.usage_buffer_rows));
        let trusted = IpAllowlist::parse(&config.trusted_proxies)?;
        let deployment_id = store.deployment_id().await.context("reading the deployment id")?;
        let gateway_settings = GatewaySettings {
            trusted_proxies: trusted,
            upstream_timeout: Duration::from_secs(config.upstream_timeout_seconds),
            max_body_bytes: config.max_body_bytes,
            deployment_id,
            egress: Arc::clone(&egress),
            upgrade_idle: Duration::from_secs(config.idle_timeout_seconds),
            upstream_tls: crate::egress::upstream_tls(&match &config.upstream_ca_file {
                Some(path) => crate::egress::read_ca_file(path)?,
                None => Vec::new(),
            }),
            // Set for each worker when the listener starts (see `run_until_stopped`).
            max_idle_upstreams: config.max_connections,
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(Arc::new(Tls::load(cert, key)?)),
            _ => None,
        };
        let github_keys = Arc::new(crate::service::github::GithubKeys::new(
            config.leak_github_keys_url.clone(),
            crate::outbound::Outbound::new(Arc::clone(&egress), Duration::from_secs(5)),
        ));
        let services = Services {
            store: store.clone(),
            state: Arc::clone(&state),
            usage: Arc::clone(&usage),
            config: Arc::new(config),
            master_key,
            leak_limiter: Arc::default(),
            github_keys,
            egress,
        };
        services.ensure_signing_key().await.context("creating the first JWT signing key")?;

        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(crate::webhooks::run(services.clone(), stop_rx.clone())));
        if let Some(tls) = &tls {
            tasks.push(tokio::spawn(crate::tls::reload_on_sighup(Arc::clone(tls), stop_rx.clone())));
        }
        {
            let (usage, store, stop) = (Arc::clone(&usage), store.clone(), stop_rx.clone());
            let every = Duration::from_millis(services.config.usage_flush_millis);
            tasks.push(tokio::spawn(async move { usage.run(&store, every, stop).await }));
        }
        {
            let (store, mut stop) = (store.clone(), stop_rx.clone());
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(2));
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            let up = matches!(tokio::time::timeout(Duration::from_secs(1), store.ping()).await, Ok(Ok(())));
                            metrics::gauge!("tokengate_store_up").set(if up { 1.0 } else { 0.0 });
                        }
                        _ = stop.changed() => break,
                    }
                }
            }));
        }
        if store.backend() == crate::store::Backend::Postgres {
            let cluster = Arc::new(crate::ratelimit::ClusterLimits::new());
            // A first turn before serving: the node learns how many others there are
            // (until then it would count itself alone). A turn another node holds the
            // lock for is skipped, so this retries for up to two seconds.
            let first_turn = async {
                loop {
                    match cluster.reconcile(&store).await {
                        Ok(true) => return true,
                        Ok(false) => tokio::time::sleep(Duration::from_millis(20)).await,
                        Err(_) => return false,
                    }
                }
            };
            if !tokio::time::timeout(Duration::from_secs(2), first_turn).await.unwrap_or(false) {
                tracing::warn!("first rate-limit reconciliation failed; local shares apply until one succeeds");
            }
            state.count_limits_across(Arc::clone(&cluster));
            let every = Duration::from_millis(services.config.rate_limit_sync_millis.max(10));
            tasks.push(tokio::spawn(cluster.run(store.clone(), every, stop_rx.clone())));
        }
        tasks.push(tokio::spawn(sync::run(
            store.clone(),
            Arc::clone(&state),
            Duration::from_secs(services.config.resync_interval_seconds.max(1)),
            stop_rx.clone(),
        )));
        {
            let mut stop = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tokio::select! {
                        _ = tick.tick() => crate::telemetry::metrics_handle().run_upkeep(),
                        _ = stop.changed() => break,
                    }
                }
            }));
        }
        {
            let (state, mut stop) = (Arc::clone(&state), stop_rx.clone());
            let every = Duration::from_secs(services.config.jwks_refresh_seconds.max(1));
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = tick.tick() => state.oauth.refresh_all_jwks().await,
                        _ = stop.changed() => break,
                    }
                }
            }));
        }
        {
            let (store, mut stop) = (store.clone(), stop_rx.clone());
            let config = Arc::clone(&services.config);
            let leak_limiter = Arc::clone(&services.leak_limiter);
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(config.housekeeping_interval_seconds));
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            housekeeping(&store, &config).await;
                            leak_limiter.prune();
                        }
                        _ = stop.changed() => break,
                    }
                }
            }));
        }
        tracing::info!(listen = %SocketAddr::new(services.config.listen.ip(), port), tls = tls.is_some(), store = ?store.backend(), instances = state.instance_count(), "tokengate ready");
        Ok(Application { listener, port, services, gateway_settings, usage, stop_tx, tasks, tls })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Serves until `shutdown` completes, then drains connections and flushes counters.
    ///
    /// `workers` accept loops run side by side, each on its own single-threaded runtime
    /// and thread with its own `SO_REUSEPORT` listener and upstream pool: a request
    /// stays on the thread that accepted it (no work stealing on the hot path), and the
    /// background tasks (a full resync of a million tokens takes seconds of CPU) stay on
    /// this runtime, away from every worker.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Application { listener, services, mut gateway_settings, usage, stop_tx, tasks, tls, .. } = self;
        let config = Arc::clone(&services.config);
        let max_connections = crate::limits::fit_max_connections(config.max_connections);
        // Parked upstream sockets take no more descriptors than the connections do.
        gateway_settings.max_idle_upstreams = max_connections.div_ceil(config.effective_workers().max(1));
        let permits = u32::try_from(max_connections).unwrap_or(u32::MAX);
        let shared = Arc::new(Shared {
            services: services.clone(),
            usage,
            gateway_settings,
            open: Arc::new(Semaphore::new(permits as usize)),
            tls,
        });
        let (drain_tx, drain_rx) = watch::channel(false);
        let addr = listener.local_addr()?;
        let mut listeners = vec![listener.into_std()?];
        for n in 1..config.effective_workers() {
            listeners.push(reuseport_listener(addr).with_context(|| format!("binding worker {n} to {addr}"))?);
        }
        let mut threads = Vec::new();
        for (n, std_listener) in listeners.into_iter().enumerate() {
            let (shared, drain) = (Arc::clone(&shared), drain_rx.clone());
            let thread = std::thread::Builder::new().name(format!("tokengate-worker-{n}")).spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
                match runtime {
                    Ok(runtime) => runtime.block_on(async move {
                        match TcpListener::from_std(std_listener) {
                            Ok(listener) => shared.serve(listener, drain).await,
                            Err(e) => tracing::error!(error = %e, worker = n, "worker could not listen"),
                        }
                    }),
                    Err(e) => tracing::error!(error = %e, worker = n, "worker runtime did not start"),
                }
            })?;
            threads.push(thread);
        }
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = drain_tx.send(true);
        let grace = Duration::from_secs(config.shutdown_grace_seconds);
        // Every connection of every worker holds a permit until it ends.
        if tokio::time::timeout(grace, shared.open.acquire_many(permits)).await.is_err() {
            tracing::warn!("in-flight requests still running after the grace period; closing");
        }
        for thread in threads {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        let _ = stop_tx.send(true);
        for task in tasks {
            let _ = task.await;
        }
        services.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// What every worker shares.
struct Shared {
    services: Services,
    usage: Arc<UsageRecorder>,
    gateway_settings: GatewaySettings,
    /// One permit per open client connection, across workers (`max_connections`).
    open: Arc<Semaphore>,
    /// Set when the listener speaks TLS.
    tls: Option<Arc<Tls>>,
}

impl Shared {
    /// One worker's accept loop, until `drain` says stop; then waits (within the grace
    /// period) for this worker's connections to finish.
    async fn serve(&self, listener: TcpListener, mut drain: watch::Receiver<bool>) {
        let config = &self.services.config;
        let gateway = Arc::new(Gateway::new(
            Arc::clone(&self.services.state),
            Arc::clone(&self.usage),
            self.gateway_settings.clone(),
        ));
        let edge = Arc::new(Edge {
            // The admin API and the dashboard side by side, neither importing the other.
            router: api::with_store_deadline(
                api::router(self.services.clone()).merge(crate::dashboard::router(self.services.clone())),
                Duration::from_millis(self.services.config.store_timeout_millis.max(1)),
            ),
            gateway,
            max_header_bytes: config.max_header_bytes,
            body_timeout: Duration::from_secs(config.body_read_timeout_seconds),
        });
        let idle_timeout = Duration::from_secs(config.idle_timeout_seconds);
        let shutdown_grace = Duration::from_secs(config.shutdown_grace_seconds);
        let handshake_timeout = Duration::from_secs(config.header_read_timeout_seconds);
        let timeouts = Timeouts { idle: idle_timeout, header: handshake_timeout, shutdown_grace };
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(config.header_read_timeout_seconds))
            // hyper's own hard limit; our JSON 431 answers below it.
            .max_buf_size((config.max_header_bytes * 4).max(64 * 1024))
            .max_headers(200);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(MAX_H2_STREAMS)
            .max_header_list_size(u32::try_from((config.max_header_bytes * 4).max(64 * 1024)).unwrap_or(u32::MAX))
            .keep_alive_interval(Some(idle_timeout.min(H2_PING_INTERVAL)))
            .keep_alive_timeout(H2_PING_INTERVAL);
        // Plain HTTP/1.1 gateway requests take the lean lane; the rest goes to hyper.
        let lane = config.plain_lane.then(|| {
            Arc::new(Lane {
                gateway: Arc::clone(&edge.gateway),
                max_header_bytes: config.max_header_bytes,
                header_timeout: handshake_timeout,
                body_timeout: edge.body_timeout,
                idle_timeout,
            })
        });
        // What every connection of this listener reads the drain from (an atomic load,
        // see `crate::drain`); the accept loop itself follows `drain`.
        let signal = Drain::following(drain.clone());
        let tracker = tokio_util::task::TaskTracker::new();
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                changed = drain.changed() => {
                    if changed.is_err() || *drain.borrow() {
                        break;
                    }
                    continue;
                }
            };
            // Past max_connections the new socket is closed at once; open ones go on.
            let Ok(permit) = Arc::clone(&self.open).try_acquire_owned() else {
                metrics::counter!("tokengate_connections_refused_total").increment(1);
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let conn_state = Arc::new(ConnState::new(Some(permit)));
            let svc = connection_service(Arc::clone(&edge), Arc::clone(&conn_state), peer, self.tls.is_some());
            match &self.tls {
                None if let Some(lane) = &lane => {
                    let (lane, builder, signal) = (Arc::clone(lane), builder.clone(), Arc::clone(&signal));
                    tracker.spawn(async move {
                        // What is in flight at shutdown gets the grace period, as on
                        // hyper: one period from the start of the drain, whichever
                        // path the connection is on by then. Polled at every wake-up
                        // of the connection, it costs an atomic load.
                        let mut grace = std::pin::pin!(grace_after(Arc::clone(&signal), shutdown_grace));
                        let exit = tokio::select! {
                            biased;
                            exit = lane.serve(&stream, peer, &signal) => exit,
                            () = grace.as_mut() => Exit::Closed,
                        };
                        if let Exit::Handoff(read) = exit {
                            conn_state.touch();
                            let io = TokioIo::new(ClientIo::new(read, stream, Arc::clone(&conn_state)));
                            let conn = builder.serve_connection_with_upgrades(io, svc).into_owned();
                            tokio::select! {
                                biased;
                                () = watch_connection(conn, conn_state, timeouts, Arc::clone(&signal)) => {}
                                () = grace => {}
                            }
                        }
                    });
                }
                None => {
                    let io = TokioIo::new(ClientIo::new(Bytes::new(), stream, Arc::clone(&conn_state)));
                    let conn = builder.serve_connection_with_upgrades(io, svc).into_owned();
                    tracker.spawn(watch_connection(conn, conn_state, timeouts, Arc::clone(&signal)));
                }
                Some(tls) => {
                    let (acceptor, builder, signal) = (tls.acceptor(), builder.clone(), Arc::clone(&signal));
                    tracker.spawn(async move {
                        // The handshake is part of what a client has the header deadline for.
                        let io = ClientIo::new(Bytes::new(), stream, Arc::clone(&conn_state));
                        match tokio::time::timeout(handshake_timeout, acceptor.accept(io)).await {
                            Ok(Ok(stream)) => {
                                let conn =
                                    builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).into_owned();
                                watch_connection(conn, conn_state, timeouts, signal).await;
                            }
                            Ok(Err(e)) => {
                                metrics::counter!("tokengate_tls_handshake_failures_total").increment(1);
                                tracing::debug!(error = %e, %peer, "TLS handshake failed");
                            }
                            Err(_) => metrics::counter!("tokengate_tls_handshake_failures_total").increment(1),
                        }
                    });
                }
            }
        }
        drop(listener);
        tracker.close();
        // Each connection is dropped after the grace period at the latest.
        tracker.wait().await;
    }
}

/// The service of one client connection: every request gets its body deadline, is
/// counted in flight until its response body ends, and is dispatched.
fn connection_service(
    edge: Arc<Edge>,
    conn_state: Arc<ConnState>,
    peer: SocketAddr,
    over_tls: bool,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<TrackedBody<Body>>,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<Response<TrackedBody<Body>>, std::convert::Infallible>> + Send + 'static,
> + Clone
+ Send
+ 'static {
    service_fn(move |req: Request<Incoming>| {
        let in_flight = conn_state.begin();
        let mut req = req.map(|body| TimedBody::new(body, edge.body_timeout, Arc::clone(&conn_state)));
        if over_tls {
            req.extensions_mut().insert(gateway::OverTls);
        }
        let (edge, conn_state) = (Arc::clone(&edge), Arc::clone(&conn_state));
        async move {
            let mut response = edge.dispatch(req, peer).await;
            if conn_state.body_timed_out() {
                response = json_error(StatusCode::REQUEST_TIMEOUT, "request body timeout");
                response.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, std::convert::Infallible>(response.map(|body| TrackedBody::new(body, in_flight)))
        }
    })
}

/// Deletes what has outlived its use: expired dashboard sessions and pending logins,
/// usage counts and webhook delivery history past their retention (`usage_retention_days`),
/// login throttles nobody has touched for a day.
async fn housekeeping(store: &SqlStore, config: &Config) {
    use crate::dashboard::session::{ABSOLUTE_TIMEOUT_SECONDS, IDLE_TIMEOUT_SECONDS, PENDING_LOGIN_SECONDS};
    use crate::store::{SessionStore, ThrottleStore, UsageStore, WebhookStore};
    let now = tokengate_core::Timestamp::now();
    let retention = i64::try_from(config.usage_retention_days.saturating_mul(86_400)).unwrap_or(i64::MAX / 2000);
    let sessions = store
        .prune_sessions(
            now.plus_secs(-IDLE_TIMEOUT_SECONDS),
            now.plus_secs(-ABSOLUTE_TIMEOUT_SECONDS),
            now.plus_secs(-PENDING_LOGIN_SECONDS),
        )
        .await;
    let usage = store.prune_usage(now.plus_secs(-retention)).await;
    let throttles = store.prune_throttles(now.plus_secs(-86_400)).await;
    let webhooks = store.prune_webhooks(now.plus_secs(-retention)).await;
    match (sessions, usage, throttles, webhooks) {
        (Ok(s), Ok(u), Ok(t), Ok(w)) => {
            tracing::debug!(sessions = s, usage_rows = u, throttles = t, webhook_rows = w, "housekeeping");
        }
        (s, u, t, w) => {
            let error =
                [s.err(), u.err(), t.err(), w.err()].into_iter().flatten().map(|e| e.to_string()).collect::<Vec<_>>();
            tracing::warn!(error = ?error, "housekeeping failed; retrying at the next interval");
        }
    }
}

/// HTTP/2: concurrent streams per connection (SPEC §11), and the keep-alive ping
/// interval (a peer that does not answer within it is dropped).
const MAX_H2_STREAMS: u32 = 100;
const H2_PING_INTERVAL: Duration = Duration::from_secs(20);

/// How long a connection told to close (idle, or server shutdown) may take to finish
/// what it has in flight before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// What every request on the listener goes through first: size of headers, loops, then
/// the gateway or the admin router.
struct Edge {
    router: axum::Router,
    gateway: Arc<Gateway>,
    max_header_bytes: usize,
    body_timeout: Duration,
}

impl Edge {
    async fn dispatch(&self, mut req: Request<ClientBody>, peer: SocketAddr) -> Response<Body> {
        let refused = self.refusal(&req);
        // `/decide` answers only trusted proxies, each refusal in the proxy's profile.
        if gateway::is_decide_path(req.uri().path()) {
            return self.gateway.decide(req, peer, refused).await;
        }
        if let Some(refused) = refused {
            return refused;
        }
        if req.uri().path().starts_with(gateway::PREFIX) {
            return self.gateway.handle(req, peer).await;
        }
        let client = ClientAddr::resolve(peer, req.headers(), self.gateway.trusted_proxies()).client;
        req.extensions_mut().insert(PeerAddr { peer, client });
        match self.router.clone().oneshot(req).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

impl Edge {
    /// What no route takes: headers past the limit, and a request that has been through
    /// this deployment already (a loop, whatever route it is for now: an upstream_url
    /// may point anywhere on us).
    fn refusal<B>(&self, req: &Request<B>) -> Option<Response<Body>> {
        if header_bytes(req) > self.max_header_bytes {
            return Some(json_error(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "request headers too large"));
        }
        if self.gateway.is_loop(req.headers()) {
            return Some(json_error(StatusCode::LOOP_DETECTED, "loop detected"));
        }
        None
    }
}

/// What [`watch_connection`] closes a connection after.
#[derive(Clone, Copy)]
struct Timeouts {
    idle: Duration,
    /// Before its first request: an HTTP/2 connection whose first request head never
    /// completes (hyper's header timeout is HTTP/1's only) is closed after this too.
    header: Duration,
    shutdown_grace: Duration,
}

/// Drives one connection: closes it gracefully (what is in flight finishes) once idle
/// for `idle_timeout` (or, before any request, `header_read_timeout` if shorter),
/// dropping it if that takes longer than [`CLOSE_GRACE`], and on server shutdown,
/// dropping it after `shutdown_grace`. (Its place under `max_connections` is held by
/// its [`ConnState`].)
async fn watch_connection<C>(conn: C, state: Arc<ConnState>, timeouts: Timeouts, drain: Arc<Drain>)
where
    C: Future + GracefulConn,
{
    let Timeouts { idle, header, shutdown_grace } = timeouts;
    let idle_timeout = || if state.has_begun() { idle } else { idle.min(header) };
    tokio::pin!(conn);
    let mut drained = std::pin::pin!(drain.wait());
    let mut closing_until: Option<tokio::time::Instant> = None;
    loop {
        let wake = match closing_until {
            Some(deadline) => deadline,
            None => tokio::time::Instant::now() + idle_timeout().saturating_sub(state.idle_for().unwrap_or_default()),
        };
        tokio::select! {
            _ = conn.as_mut() => return,
            () = tokio::time::sleep_until(wake) => {
                if closing_until.is_some() {
                    return;
                }
                if state.idle_for().is_some_and(|quiet| quiet >= idle_timeout()) {
                    conn.as_mut().close_gracefully();
                    closing_until = Some(tokio::time::Instant::now() + CLOSE_GRACE);
                }
            }
            () = drained.as_mut(), if closing_until.is_none() => {
                conn.as_mut().close_gracefully();
                closing_until = Some(tokio::time::Instant::now() + shutdown_grace);
            }
        }
    }
}

/// Resolves `grace` after the server started draining.
async fn grace_after(drain: Arc<Drain>, grace: Duration) {
    drain.wait().await;
    tokio::time::sleep(grace).await;
}

/// hyper's connections, told to finish what is in flight and close.
trait GracefulConn {
    fn close_gracefully(self: std::pin::Pin<&mut Self>);
}

impl<I, S, E, B> GracefulConn for auto::UpgradeableConnection<'_, I, S, E>
where
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: auto::HttpServerConnExec<S::Future, B>,
{
    fn close_gracefully(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Total size of header names and values.
fn header_bytes<B>(req: &Request<B>) -> usize {
    req.headers().iter().map(|(k, v)| k.as_str().len() + v.len()).sum()
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
