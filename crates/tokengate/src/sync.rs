//! Keeps this node's gateway state in step with the store when other nodes write to it.
//!
//! On PostgreSQL every committed change sends a notice on [`CHANGE_CHANNEL`]; this task
//! listens and reloads what each notice names. Notices sent while the connection was
//! down are lost, so every (re)connection is followed by a full resync. A periodic full
//! resync on every store is a safety net. Resyncs run in a task of their own, beside
//! the listener: a notice is applied at once even while a resync streams a million
//! tokens (the state's read stamps keep the two from undoing each other).

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::{Notify, watch};

use crate::state::GatewayState;
use crate::store::{Backend, CHANGE_CHANNEL, Change, SqlStore};

pub async fn run(store: SqlStore, state: Arc<GatewayState>, resync_every: Duration, mut stop: watch::Receiver<bool>) {
    if store.backend() == Backend::Postgres {
        tokio::select! {
            () = listen(&store, &state, resync_every) => {},
            _ = stop.changed() => {},
        }
        return;
    }
    let mut tick = tokio::time::interval(resync_every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => resync(&store, &state).await,
            _ = stop.changed() => return,
        }
    }
}

async fn resync(store: &SqlStore, state: &GatewayState) {
    let started = std::time::Instant::now();
    let result = state.resync(store).await;
    let outcome = if result.is_ok() { "ok" } else { "failed" };
    metrics::counter!("tokengate_resyncs_total", "result" => outcome).increment(1);
    metrics::histogram!("tokengate_resync_duration_seconds").record(started.elapsed().as_secs_f64());
    if let Err(e) = result {
        tracing::warn!(error = %e, "gateway state resync failed");
    }
}

/// Records how long a notice took from its commit (the writer's clock, stamped just
/// before it committed) to being applied here.
fn record_lag(sent_ms: Option<i64>) {
    if let Some(sent) = sent_ms {
        let lag = (tokengate_core::Timestamp::now().as_millis() - sent).max(0) as f64 / 1000.0;
        metrics::histogram!("tokengate_change_notice_lag_seconds").record(lag);
    }
}

/// Runs a resync each time one is asked for; asks made while one runs make one more
/// (not one each).
async fn resync_when_asked(store: SqlStore, state: Arc<GatewayState>, asked: Arc<Notify>) {
    loop {
        asked.notified().await;
        resync(&store, &state).await;
    }
}

async fn listen(store: &SqlStore, state: &Arc<GatewayState>, resync_every: Duration) {
    let asked = Arc::new(Notify::new());
    // Ends with this future (a JoinSet aborts its tasks when dropped).
    let mut resyncs = tokio::task::JoinSet::new();
    resyncs.spawn(resync_when_asked(store.clone(), Arc::clone(state), Arc::clone(&asked)));
    loop {
        let mut listener = match connect(store.url()).await {
            Ok(l) => l,
            Err(e) => {
                // Retried often: a change committed as soon as the store is back must
                // reach this node within a second, so the listener has to be back first.
                tracing::debug!(error = %e, "change listener cannot connect; retrying");
                metrics::gauge!("tokengate_change_listener_up").set(0.0);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        metrics::gauge!("tokengate_change_listener_up").set(1.0);
        // Whatever changed before we were listening is picked up here.
        asked.notify_one();
        let mut tick = tokio::time::interval(resync_every);
        tick.tick().await;
        loop {
            tokio::select! {
                received = listener.try_recv() => match received {
                    Ok(Some(notice)) => match Change::decode_stamped(notice.payload()) {
                        Some((change, sent_ms)) => {
                            if let Err(e) = state.apply(store, change).await {
                                tracing::warn!(error = %e, "applying a change failed; resyncing");
                                asked.notify_one();
                            }
                            record_lag(sent_ms);
                        }
                        None => tracing::warn!("unknown change notice ignored"),
                    },
                    // The connection dropped. Reconnected here rather than by sqlx (whose
                    // retries back off for seconds): notices sent meanwhile are lost, so
                    // the reconnection is followed by a resync.
                    Ok(None) => {
                        tracing::warn!("change listener lost its connection; reconnecting");
                        metrics::gauge!("tokengate_change_listener_up").set(0.0);
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "change listener failed; reconnecting");
                        metrics::gauge!("tokengate_change_listener_up").set(0.0);
                        break;
                    }
                },
                _ = tick.tick() => asked.notify_one(),
            }
        }
    }
}

/// One attempt, failing within half a second when the server is unreachable (the
/// caller retries every 100 ms, so the listener is back as soon as the server is).
async fn connect(url: &str) -> Result<PgListener, sqlx::Error> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy(url)?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen(CHANGE_CHANNEL).await?;
    Ok(listener)
}
