//! Keeps this node's gateway state in step with the store when other nodes write to it.
//!
//! On PostgreSQL every committed change sends a notice on [`CHANGE_CHANNEL`]; this task
//! listens and reloads what each notice names. Notices sent while the connection was
//! down are lost, so every (re)connection is followed by a full resync. A periodic full
//! resync on every store is a safety net.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::watch;

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
    if let Err(e) = state.resync(store).await {
        tracing::warn!(error = %e, "gateway state resync failed");
    }
}

async fn listen(store: &SqlStore, state: &GatewayState, resync_every: Duration) {
    loop {
        let mut listener = match connect(store.url()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "change listener cannot connect; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // Whatever changed before we were listening is picked up here.
        resync(store, state).await;
        let mut tick = tokio::time::interval(resync_every);
        tick.tick().await;
        loop {
            tokio::select! {
                received = listener.try_recv() => match received {
                    Ok(Some(notice)) => match Change::decode(notice.payload()) {
                        Some(change) => {
                            if let Err(e) = state.apply(store, change).await {
                                tracing::warn!(error = %e, "applying a change failed; resyncing");
                                resync(store, state).await;
                            }
                        }
                        None => tracing::warn!("unknown change notice ignored"),
                    },
                    // The connection dropped and sqlx reconnected: notices may be lost.
                    Ok(None) => {
                        tracing::warn!("change listener reconnected; resyncing");
                        resync(store, state).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "change listener failed; reconnecting");
                        break;
                    }
                },
                _ = tick.tick() => resync(store, state).await,
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn connect(url: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(CHANGE_CHANNEL).await?;
    Ok(listener)
}
