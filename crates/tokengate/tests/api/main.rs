//! Integration tests: the real server on port 0, a real store (SQLite and PostgreSQL)
//! and a real upstream. `scripts/test.sh` provides the PostgreSQL server.

// Tests fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod helpers;

mod admin_api;
mod cluster_limits;
mod corpus;
mod dashboard;
mod drills;
mod edge;
mod forward_auth;
mod gateway;
mod housekeeping;
mod imports;
mod leaks;
mod multi_node;
mod oauth;
mod plain_lane;
mod privileges;
mod process;
mod rooms;
mod security_token;
mod sso;
mod tls;
mod tokens;
mod upstream_pool;
mod webhooks;
mod websocket;

/// Runs an async scenario `fn(StoreKind)` once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both_stores {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario($crate::helpers::StoreKind::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$scenario($crate::helpers::StoreKind::Postgres).await
            }
        }
    )*};
}
