//! Start-up with one million live tokens (SPEC §10: load ≤ 5 s, RSS ≤ 300 MB), and a
//! revocation while a full resync of them runs.
//!
//! Fills an embedded SQLite store with a million API keys (bulk SQL, not the admin API:
//! a million audited single-row transactions would measure the disk), then measures
//! the full load of the gateway state the way `serve` does it at start-up, and the
//! process's resident memory before and after. Then starts another full resync and,
//! while it streams, revokes tokens the way the admin API does (store, then apply):
//! how long from the revocation's commit until the gateway refuses the token, and
//! whether the resync was still running then.
//!
//!     cargo run --release --example million_tokens [-- COUNT [DIR]]
//!
//! With DIR, the store is kept there and reused by the next run (filling it takes minutes).

use std::time::Instant;

use secrecy::ExposeSecret;
use tokengate::state::GatewayState;
use tokengate::store::{Account, AccountStore, AuditEntry, SqlStore};
use tokengate_core::token;
use tokengate_core::{AccountId, AuditId, Digest, Timestamp, TokenId, TokenKind};

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let count: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let temp = tempfile::tempdir()?;
    let dir = std::env::args().nth(2).map(std::path::PathBuf::from).unwrap_or_else(|| temp.path().to_path_buf());
    let reuse = dir.join("tokengate.db").exists();
    let store = SqlStore::open_sqlite(&dir).await?;
    if !reuse {
        fill(&store, count).await?;
    }
    measure(&store).await
}

async fn fill(store: &SqlStore, count: usize) -> anyhow::Result<()> {
    let account = Account { id: AccountId::new(), name: "bench".into(), created_at: Timestamp::now() };
    let audit = AuditEntry {
        id: AuditId::new(),
        account_id: Some(account.id),
        at: Timestamp::now(),
        actor: "bench".into(),
        action: "account.created".into(),
        target: account.id.to_string(),
        ip: None,
        detail: None,
    };
    store.create_account(&account, &audit).await?;

    let started = Instant::now();
    let pool = sqlx::any::AnyPoolOptions::new().max_connections(1).connect(store.url()).await?;
    let mut tx = pool.begin().await?;
    let expires = Timestamp::now().plus_secs(86_400).as_millis();
    let scope_sets = ["[\"messages:send\"]", "[\"messages:*\",\"instance:read\"]", "[\"*\"]"];
    for i in 0..count {
        let secret = token::generate(TokenKind::ApiKey.prefix());
        let digest = Digest::of(secret.expose_secret().as_bytes());
        sqlx::query(
            "INSERT INTO api_tokens (id, account_id, kind, name, digest, scopes, expires_at, created_at) \
             VALUES ($1, $2, 'api_key', 'bench', $3, $4, $5, $6)",
        )
        .bind(TokenId::new().to_string())
        .bind(account.id.to_string())
        .bind(digest.0.to_vec())
        .bind(scope_sets.get(i % 3).copied().unwrap_or("[]"))
        .bind(expires)
        .bind(Timestamp::now().as_millis())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    pool.close().await;
    println!("inserted {count} tokens in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

async fn measure(store: &SqlStore) -> anyhow::Result<()> {
    let before = rss_mib();
    let state = GatewayState::default();
    let started = Instant::now();
    state.resync(store).await?;
    let load = started.elapsed();
    let after = rss_mib();
    println!("loaded {} tokens in {:.2} s", state.token_count(), load.as_secs_f64());
    println!("RSS {before:.0} MiB before the load, {after:.0} MiB after ({:.0} MiB for the tokens)", after - before);
    revoke_during_resync(store, std::sync::Arc::new(state)).await
}

/// Revokes five tokens, one after the other, while a full resync runs.
async fn revoke_during_resync(store: &SqlStore, state: std::sync::Arc<GatewayState>) -> anyhow::Result<()> {
    use tokengate::store::{Change, TokenStore};
    let pool = sqlx::any::AnyPoolOptions::new().max_connections(1).connect(store.url()).await?;
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT id FROM api_tokens WHERE revoked_at IS NULL ORDER BY id DESC LIMIT 5")
            .fetch_all(&pool)
            .await?;
    pool.close().await;
    let started = Instant::now();
    let resync = {
        let (state, store) = (std::sync::Arc::clone(&state), store.clone());
        tokio::spawn(async move { state.resync(&store).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for (id,) in rows {
        let id: TokenId = id.parse().map_err(|_| anyhow::anyhow!("bad token id {id}"))?;
        let audit = AuditEntry {
            id: AuditId::new(),
            account_id: None,
            at: Timestamp::now(),
            actor: "bench".into(),
            action: "token.revoked".into(),
            target: id.to_string(),
            ip: None,
            detail: None,
        };
        store.revoke_token(id, Timestamp::now(), &audit).await?;
        let committed = Instant::now();
        state.apply(store, Change::Token(id)).await?;
        let enforced = committed.elapsed();
        println!(
            "revocation enforced {:.1} ms after its commit; resync {} ({:.2} s in)",
            enforced.as_secs_f64() * 1000.0,
            if resync.is_finished() { "already finished" } else { "still running" },
            started.elapsed().as_secs_f64()
        );
    }
    resync.await??;
    println!("concurrent resync took {:.2} s", started.elapsed().as_secs_f64());
    Ok(())
}
