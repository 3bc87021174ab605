//! The SQL implementation of the store traits, on SQLite or PostgreSQL.
//!
//! Both engines run the same statements (sqlx's SQLite driver accepts `$N` placeholders)
//! through sqlx's `Any` driver, with the portable types only: text, 64-bit integers and
//! blobs. What differs lives here and nowhere else: the migrations (one directory per
//! engine), SQLite's pragmas and single writer connection, and PostgreSQL's change
//! notices. Business code never asks which engine it is on.

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use tokengate_core::{AccountId, AuditId, Digest, InstanceId, MemberId, Rule, Timestamp, TokenId};

use super::*;
pub use webhooks::EVENTS as WEBHOOK_EVENTS;

mod leaks;
mod oauth;
mod rate_grants;
mod rooms;
mod sessions;
mod tokens;
mod webhooks;

pub use rate_grants::{GrantRow, NodeSeen};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The channel PostgreSQL change notices are sent on.
pub const CHANGE_CHANNEL: &str = "tokengate_changes";

/// Rows a housekeeping prune deletes per statement (see [`SqlStore::delete_in_batches`]).
const PRUNE_BATCH: u64 = 5000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub struct SqlStore {
    backend: Backend,
    /// Reads. On PostgreSQL this is also the write pool.
    read: AnyPool,
    /// Writes. One connection on SQLite, so writers queue here instead of failing
    /// with SQLITE_BUSY; the same pool as `read` on PostgreSQL.
    write: AnyPool,
    url: String,
}

pub(super) type Tx = sqlx::Transaction<'static, sqlx::Any>;

impl SqlStore {
    /// Opens (creating if needed) the embedded SQLite store in `data_dir`.
    pub async fn open_sqlite(data_dir: &Path) -> StoreResult<SqlStore> {
        crate::data_dir::create_private_dir(data_dir).map_err(|e| StoreError::Corrupt(format!("data dir: {e}")))?;
        let file = data_dir.join("tokengate.db");
        crate::data_dir::ensure_private_file(&file).map_err(|e| StoreError::Corrupt(format!("store file: {e}")))?;
        let url = format!("sqlite://{}?mode=rwc", file.display());
        Self::open(&url).await
    }

    /// Opens a store from a `sqlite:` or `postgres:` URL and runs its migrations.
    pub async fn open(url: &str) -> StoreResult<SqlStore> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(StoreError::Corrupt("database URL must start with sqlite: or postgres:".into()));
        };
        let (read, write) = match backend {
            Backend::Sqlite => {
                // `cache_kib`: the one writer gets a larger page cache than SQLite's 2 MiB,
                // since inserts into the digest index of a million tokens land on random pages.
                let opts = |cache_kib: i64| {
                    AnyPoolOptions::new().after_connect(move |conn, _| {
                        Box::pin(async move {
                            use sqlx::Executor;
                            // WAL lets readers work beside the writer; FULL syncs each commit,
                            // so an acknowledged write survives a crash of the machine too.
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA synchronous = FULL").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            conn.execute("PRAGMA busy_timeout = 5000").await?;
                            conn.execute(sqlx::AssertSqlSafe(format!("PRAGMA cache_size = -{cache_kib}"))).await?;
                            Ok(())
                        })
                    })
                };
                let write = opts(32 * 1024).max_connections(1).connect(url).await?;
                let read = opts(2 * 1024).max_connections(4).connect(url).await?;
                (read, write)
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    // With the server unreachable an admin write fails within a second
                    // (503 store_unavailable) instead of holding its caller for long.
                    .acquire_timeout(Duration::from_millis(800))
                    // Two kept open: a write on a busy machine need not wait for a new
                    // connection (a fork and an authentication) within that deadline.
                    .min_connections(2)
                    .connect(url)
                    .await?;
                (pool.clone(), pool)
            }
        };
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&write).await?;
        Ok(SqlStore { backend, read, write, url: url.to_string() })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Deletes the rows of `table` that `condition` (binding `$1` to `before`) picks,
    /// [`PRUNE_BATCH`] at a time, each batch its own statement: pruning a long history
    /// for the first time never holds the writer (SQLite's only one) for long, and what
    /// is deleted stays deleted if a later batch fails. Housekeeping only: the
    /// arguments are this crate's constants.
    pub(crate) async fn delete_in_batches(
        &self,
        table: &'static str,
        condition: &'static str,
        before: Timestamp,
    ) -> StoreResult<u64> {
        let row = match self.backend {
            Backend::Sqlite => "rowid",
            Backend::Postgres => "ctid",
        };
        let sql = format!(
            "DELETE FROM {table} WHERE {row} IN (SELECT {row} FROM {table} WHERE {condition} LIMIT {PRUNE_BATCH})"
        );
        let mut total = 0;
        loop {
            // Only `'static` text goes into it: the caller's constants.
            let query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
            let done = query.bind(before.as_millis()).execute(&self.write).await?.rows_affected();
            total += done;
            if done < PRUNE_BATCH {
                return Ok(total);
            }
            // Room for the writes waiting behind the prune.
            tokio::task::yield_now().await;
        }
    }

    /// The URL this store was opened with (for the PostgreSQL change listener).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// This deployment's id: made once, by whichever node opens a new store first
    /// (the insert is a no-op for the others), then the same for every node.
    pub async fn deployment_id(&self) -> StoreResult<String> {
        let fresh = uuid::Uuid::new_v4().simple().to_string();
        sqlx::query("INSERT INTO deployment (singleton, id) VALUES (1, $1) ON CONFLICT (singleton) DO NOTHING")
            .bind(fresh)
            .execute(&self.write)
            .await?;
        let row = sqlx::query("SELECT id FROM deployment WHERE singleton = 1").fetch_one(&self.write).await?;
        Ok(row.try_get::<String, _>(0)?)
    }

    /// Counts an account's objects inside a creating transaction, after taking the
    /// account row's lock (PostgreSQL keeps it until commit; SQLite has one writer), so
    /// that concurrent creations are counted one after the other and cannot overshoot.
    pub(super) async fn within_quota<'q>(
        &self,
        tx: &mut Tx,
        account: AccountId,
        count: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
        max: u64,
        what: &'static str,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE accounts SET name = name WHERE id = $1")
            .bind(account.to_string())
            .execute(&mut **tx)
            .await?;
        let n: i64 = count.fetch_one(&mut **tx).await?.try_get("n")?;
        if u64::try_from(n).unwrap_or(0) >= max {
            return Err(StoreError::QuotaExceeded(what));
        }
        Ok(())
    }

    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }

    pub(super) async fn begin(&self) -> StoreResult<Tx> {
        Ok(self.write.begin().await?)
    }

    /// Writes the audit entry and, on PostgreSQL, the change notice, then commits.
    pub(super) async fn finish(&self, mut tx: Tx, audit: &AuditEntry, change: Option<Change>) -> StoreResult<()> {
        self.record(&mut tx, audit).await?;
        if let Some(change) = change {
            self.notify(&mut tx, change).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Writes an audit entry and queues the webhook event it raises, if any.
    pub(super) async fn record(&self, tx: &mut Tx, audit: &AuditEntry) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO audit_log (id, account_id, at, actor, action, target, ip, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(audit.id.to_string())
        .bind(audit.account_id.map(|a| a.to_string()))
        .bind(audit.at.as_millis())
        .bind(&audit.actor)
        .bind(&audit.action)
        .bind(&audit.target)
        .bind(audit.ip.clone())
        .bind(audit.detail.as_ref().map(serde_json::Value::to_string))
        .execute(&mut **tx)
        .await?;
        // The events webhooks hear of are audited actions: queued in the same
        // transaction, so that no acknowledged change loses its event.
        self.enqueue_webhook_event(tx, audit).await
    }

    pub(super) async fn notify(&self, tx: &mut Tx, change: Change) -> StoreResult<()> {
        if self.backend == Backend::Postgres {
            // Delivered to every listening node when (and only if) the transaction commits.
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANGE_CHANNEL)
                .bind(change.encode_stamped(Timestamp::now()))
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }
}

pub(super) fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| d.is_unique_violation())
}

pub(super) fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| d.is_foreign_key_violation())
}

pub(super) fn parse_id<T: FromStr>(s: &str) -> StoreResult<T> {
    s.parse().map_err(|_| StoreError::Corrupt(format!("bad id {s:?}")))
}

pub(super) fn digest(bytes: &[u8]) -> StoreResult<Digest> {
    Digest::from_slice(bytes).ok_or_else(|| StoreError::Corrupt("digest length".into()))
}

fn account_row(row: &AnyRow) -> StoreResult<Account> {
    Ok(Account {
        id: parse_id(&row.try_get::<String, _>("id")?)?,
        name: row.try_get("name")?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
    })
}

pub(super) fn member_row(row: &AnyRow) -> StoreResult<Member> {
    let role: String = row.try_get("role")?;
    Ok(Member {
        id: parse_id(&row.try_get::<String, _>("id")?)?,
        account_id: parse_id(&row.try_get::<String, _>("account_id")?)?,
        email: row.try_get("email")?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
    })
}

fn instance_row(row: &AnyRow) -> StoreResult<GatewayInstance> {
    let rules: String = row.try_get("rules")?;
    let rules: Vec<Rule> = serde_json::from_str(&rules).map_err(|e| StoreError::Corrupt(format!("rules: {e}")))?;
    Ok(GatewayInstance {
        instance: Instance {
            id: parse_id(&row.try_get::<String, _>("id")?)?,
            account_id: parse_id(&row.try_get::<String, _>("account_id")?)?,
            name: row.try_get("name")?,
            upstream_url: row.try_get("upstream_url")?,
            rules,
            created_at: Timestamp::from_millis(row.try_get("created_at")?),
            leaked_at: row.try_get::<Option<i64>, _>("leaked_at")?.map(Timestamp::from_millis),
        },
        token_digest: digest(&row.try_get::<Vec<u8>, _>("token_digest")?)?,
    })
}

fn security_token_row(row: &AnyRow) -> StoreResult<Option<SecurityToken>> {
    let Some(status) = row.try_get::<Option<String>, _>("status")? else {
        return Ok(None);
    };
    let previous = match (
        row.try_get::<Option<Vec<u8>>, _>("previous_digest")?,
        row.try_get::<Option<i64>, _>("previous_valid_until")?,
    ) {
        (Some(d), Some(until)) => Some((digest(&d)?, Timestamp::from_millis(until))),
        _ => None,
    };
    Ok(Some(SecurityToken {
        active: status == "active",
        digest: digest(&row.try_get::<Vec<u8>, _>("digest")?)?,
        created_at: Timestamp::from_millis(row.try_get("st_created_at")?),
        activated_at: row.try_get::<Option<i64>, _>("activated_at")?.map(Timestamp::from_millis),
        previous,
    }))
}

fn policy_row(row: &AnyRow) -> StoreResult<AccountPolicyRecord> {
    let allowlist: String = row.try_get("ip_allowlist")?;
    Ok(AccountPolicyRecord {
        account_id: parse_id(&row.try_get::<String, _>("id")?)?,
        ip_allowlist: serde_json::from_str(&allowlist).map_err(|e| StoreError::Corrupt(format!("allowlist: {e}")))?,
        security_token: security_token_row(row)?,
    })
}

const INSTANCE_COLUMNS: &str = "SELECT id, account_id, name, upstream_url, token_digest, rules, created_at, \
     (SELECT leaked_at FROM leaked_secrets l WHERE l.digest = instances.token_digest) AS leaked_at FROM instances";
const POLICY_QUERY: &str = "SELECT a.id, a.ip_allowlist, s.status, s.digest, s.created_at AS st_created_at, \
     s.activated_at, s.previous_digest, s.previous_valid_until \
     FROM accounts a LEFT JOIN security_tokens s ON s.account_id = a.id";

impl AdminTokenStore for SqlStore {
    async fn create_first_admin_token(&self, id: &str, digest: Digest) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        // Insert only into an empty table: `init` twice must not mint a second token.
        let done = sqlx::query(
            "INSERT INTO admin_tokens (id, digest, created_at) SELECT $1, $2, $3 \
             WHERE NOT EXISTS (SELECT 1 FROM admin_tokens)",
        )
        .bind(id)
        .bind(digest.0.to_vec())
        .bind(Timestamp::now().as_millis())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict("the store is already initialized"));
        }
        let audit = AuditEntry {
            id: AuditId::new(),
            account_id: None,
            at: Timestamp::now(),
            actor: "init".into(),
            action: "admin_token.created".into(),
            target: id.to_string(),
            ip: None,
            detail: None,
        };
        self.finish(tx, &audit, Some(Change::AdminTokens)).await
    }

    async fn admin_token_digests(&self) -> StoreResult<Vec<(String, Digest)>> {
        let rows = sqlx::query("SELECT id, digest FROM admin_tokens").fetch_all(&self.read).await?;
        rows.iter().map(|r| Ok((r.try_get("id")?, digest(&r.try_get::<Vec<u8>, _>("digest")?)?))).collect()
    }
}

impl AccountStore for SqlStore {
    async fn create_account(&self, account: &Account, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO accounts (id, name, ip_allowlist, created_at) VALUES ($1, $2, '[]', $3)")
            .bind(account.id.to_string())
            .bind(&account.name)
            .bind(account.created_at.as_millis())
            .execute(&mut *tx)
            .await?;
        self.finish(tx, audit, Some(Change::Account(account.id))).await
    }

    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        let rows = sqlx::query("SELECT id, name, created_at FROM accounts ORDER BY id").fetch_all(&self.read).await?;
        rows.iter().map(account_row).collect()
    }

    async fn get_account(&self, id: AccountId) -> StoreResult<Account> {
        let row = sqlx::query("SELECT id, name, created_at FROM accounts WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await?
            .ok_or(StoreError::NotFound)?;
        account_row(&row)
    }

    async fn set_ip_allowlist(&self, id: AccountId, cidrs: &[String], audit: &AuditEntry) -> StoreResult<()> {
        let json = serde_json::to_string(cidrs).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.begin().await?;
        let done = sqlx::query("UPDATE accounts SET ip_allowlist = $1 WHERE id = $2")
            .bind(json)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.finish(tx, audit, Some(Change::Account(id))).await
    }
}

impl MemberStore for SqlStore {
    async fn create_member(&self, member: &Member, password_hash: &str, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO members (id, account_id, email, password_hash, role, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(member.id.to_string())
        .bind(member.account_id.to_string())
        .bind(&member.email)
        .bind(password_hash)
        .bind(member.role.as_str())
        .bind(member.created_at.as_millis())
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict("a member with this email already exists"));
            }
            other => other?,
        };
        self.finish(tx, audit, None).await
    }

    async fn list_members(&self, account: AccountId) -> StoreResult<Vec<Member>> {
        let rows = sqlx::query(
            "SELECT id, account_id, email, role, created_at FROM members WHERE account_id = $1 ORDER BY id",
        )
        .bind(account.to_string())
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(member_row).collect()
    }

    async fn delete_member(
        &self,
        id: MemberId,
        now: Timestamp,
        audit: &AuditEntry,
    ) -> StoreResult<(Member, Vec<TokenId>)> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("DELETE FROM members WHERE id = $1 RETURNING id, account_id, email, role, created_at")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let member = member_row(&row)?;
        let revoked = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE member_id = $2 AND (revoked_at IS NULL OR revoked_at > $1) RETURNING id",
        )
        .bind(now.as_millis())
        .bind(id.to_string())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| parse_id(&r.try_get::<String, _>("id")?))
        .collect::<StoreResult<Vec<TokenId>>>()?;
        // Each personal token ends as a revocation of its own: audited, and heard by
        // webhooks that follow `token.revoked`.
        for token in &revoked {
            self.notify(&mut tx, Change::Token(*token)).await?;
            let revocation = AuditEntry {
                id: AuditId::new(),
                account_id: Some(member.account_id),
                action: "token.revoked".into(),
                target: token.to_string(),
                detail: Some(serde_json::json!({ "reason": "member_removed" })),
                ..audit.clone()
            };
            self.record(&mut tx, &revocation).await?;
        }
        let audit = AuditEntry { account_id: Some(member.account_id), ..audit.clone() };
        self.finish(tx, &audit, Some(Change::Account(member.account_id))).await?;
        Ok((member, revoked))
    }

    async fn get_member(&self, id: MemberId) -> StoreResult<Member> {
        let row = sqlx::query("SELECT id, account_id, email, role, created_at FROM members WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await?
            .ok_or(StoreError::NotFound)?;
        member_row(&row)
    }
}

impl InstanceStore for SqlStore {
    async fn create_instance(
        &self,
        instance: &Instance,
        token: Digest,
        audit: &AuditEntry,
        max: u64,
    ) -> StoreResult<()> {
        let rules = serde_json::to_string(&instance.rules).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.begin().await?;
        let count = sqlx::query("SELECT count(*) AS n FROM instances WHERE account_id = $1")
            .bind(instance.account_id.to_string());
        self.within_quota(&mut tx, instance.account_id, count, max, "instances").await?;
        sqlx::query(
            "INSERT INTO instances (id, account_id, name, upstream_url, token_digest, rules, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(instance.id.to_string())
        .bind(instance.account_id.to_string())
        .bind(&instance.name)
        .bind(&instance.upstream_url)
        .bind(token.0.to_vec())
        .bind(rules)
        .bind(instance.created_at.as_millis())
        .execute(&mut *tx)
        .await?;
        self.finish(tx, audit, Some(Change::Instance(instance.id))).await
    }

    async fn list_instances(&self, account: AccountId) -> StoreResult<Vec<Instance>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{INSTANCE_COLUMNS} WHERE account_id = $1 ORDER BY id")))
            .bind(account.to_string())
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(|r| instance_row(r).map(|g| g.instance)).collect()
    }

    async fn get_instance(&self, id: InstanceId) -> StoreResult<Instance> {
        self.gateway_instance(id).await?.map(|g| g.instance).ok_or(StoreError::NotFound)
    }

    async fn update_instance(&self, id: InstanceId, change: &InstanceChange, audit: &AuditEntry) -> StoreResult<()> {
        let rules = match &change.rules {
            Some(rules) => Some(serde_json::to_string(rules).map_err(|e| StoreError::Corrupt(e.to_string()))?),
            None => None,
        };
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE instances SET name = COALESCE($1, name), upstream_url = COALESCE($2, upstream_url), \
             rules = COALESCE($3, rules) WHERE id = $4",
        )
        .bind(change.name.as_deref())
        .bind(change.upstream_url.as_deref())
        .bind(rules)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.finish(tx, audit, Some(Change::Instance(id))).await
    }

    async fn delete_instance(&self, id: InstanceId, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("DELETE FROM instances WHERE id = $1").bind(id.to_string()).execute(&mut *tx).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.finish(tx, audit, Some(Change::Instance(id))).await
    }

    async fn gateway_instance(&self, id: InstanceId) -> StoreResult<Option<GatewayInstance>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{INSTANCE_COLUMNS} WHERE id = $1")))
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(instance_row).transpose()
    }

    async fn all_gateway_instances(&self) -> StoreResult<Vec<GatewayInstance>> {
        let rows = sqlx::query(INSTANCE_COLUMNS).fetch_all(&self.read).await?;
        rows.iter().map(instance_row).collect()
    }
}

impl SecurityTokenStore for SqlStore {
    async fn security_token(&self, account: AccountId) -> StoreResult<Option<SecurityToken>> {
        Ok(self.account_policy(account).await?.ok_or(StoreError::NotFound)?.security_token)
    }

    async fn generate_security_token(
        &self,
        account: AccountId,
        digest: Digest,
        now: Timestamp,
        audit: &AuditEntry,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        // One statement decides: insert, replace a disabled token, or touch nothing when
        // the current token is active (that case is the 409).
        let done = sqlx::query(
            "INSERT INTO security_tokens (account_id, status, digest, created_at, activated_at, previous_digest, previous_valid_until) \
             VALUES ($1, 'disabled', $2, $3, NULL, NULL, NULL) \
             ON CONFLICT (account_id) DO UPDATE SET status = 'disabled', digest = excluded.digest, \
                created_at = excluded.created_at, activated_at = NULL, previous_digest = NULL, previous_valid_until = NULL \
             WHERE security_tokens.status <> 'active'",
        )
        .bind(account.to_string())
        .bind(digest.0.to_vec())
        .bind(now.as_millis())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(
                "the account's security token is active; deactivate it or rotate it instead",
            ));
        }
        self.finish(tx, audit, Some(Change::Account(account))).await
    }

    async fn set_security_token_active(
        &self,
        account: AccountId,
        active: bool,
        now: Timestamp,
        audit: &AuditEntry,
    ) -> StoreResult<SecurityToken> {
        let mut tx = self.begin().await?;
        let query = if active {
            sqlx::query(
                "UPDATE security_tokens SET status = 'active', \
                 activated_at = CASE WHEN status = 'active' THEN activated_at ELSE $1 END WHERE account_id = $2",
            )
            .bind(now.as_millis())
        } else {
            sqlx::query("UPDATE security_tokens SET status = 'disabled', activated_at = NULL WHERE account_id = $1")
        };
        let done = query.bind(account.to_string()).execute(&mut *tx).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.finish(tx, audit, Some(Change::Account(account))).await?;
        self.security_token(account).await?.ok_or(StoreError::NotFound)
    }

    async fn rotate_security_token(
        &self,
        account: AccountId,
        digest: Digest,
        now: Timestamp,
        previous_valid_until: Timestamp,
        audit: &AuditEntry,
    ) -> StoreResult<SecurityToken> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE security_tokens SET previous_digest = digest, previous_valid_until = $1, digest = $2, created_at = $3 \
             WHERE account_id = $4",
        )
        .bind(previous_valid_until.as_millis())
        .bind(digest.0.to_vec())
        .bind(now.as_millis())
        .bind(account.to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.finish(tx, audit, Some(Change::Account(account))).await?;
        self.security_token(account).await?.ok_or(StoreError::NotFound)
    }

    async fn delete_security_token(&self, account: AccountId, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("DELETE FROM security_tokens WHERE account_id = $1")
            .bind(account.to_string())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.finish(tx, audit, Some(Change::Account(account))).await
    }

    async fn all_account_policies(&self) -> StoreResult<Vec<AccountPolicyRecord>> {
        let rows = sqlx::query(POLICY_QUERY).fetch_all(&self.read).await?;
        rows.iter().map(policy_row).collect()
    }

    async fn account_policy(&self, account: AccountId) -> StoreResult<Option<AccountPolicyRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{POLICY_QUERY} WHERE a.id = $1")))
            .bind(account.to_string())
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(policy_row).transpose()
    }
}

impl AuditStore for SqlStore {
    async fn audit_entries(&self, account: AccountId, limit: u32) -> StoreResult<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT id, account_id, at, actor, action, target, ip, detail FROM audit_log WHERE account_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(account.to_string())
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: parse_id(&r.try_get::<String, _>("id")?)?,
                    account_id: r.try_get::<Option<String>, _>("account_id")?.map(|s| parse_id(&s)).transpose()?,
                    at: Timestamp::from_millis(r.try_get("at")?),
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    ip: r.try_get("ip")?,
                    detail: r
                        .try_get::<Option<String>, _>("detail")?
                        .map(|d| {
                            serde_json::from_str(&d).map_err(|e| StoreError::Corrupt(format!("audit detail: {e}")))
                        })
                        .transpose()?,
                })
            })
            .collect()
    }
}

impl UsageStore for SqlStore {
    async fn prune_usage(&self, before: Timestamp) -> StoreResult<u64> {
        self.delete_in_batches("usage_counts", "bucket_start < $1", before).await
    }

    async fn add_usage(&self, rows: &[UsageRow]) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for row in rows {
            sqlx::query(
                "INSERT INTO usage_counts (account_id, token_id, bucket_start, kind, reason, count) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (account_id, token_id, kind, bucket_start, reason) DO UPDATE SET count = usage_counts.count + excluded.count",
            )
            .bind(row.account_id.to_string())
            .bind(&row.token_id)
            .bind(row.bucket_start.as_millis())
            .bind(row.kind.as_str())
            .bind(row.reason.as_ref())
            .bind(row.count)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn usage(
        &self,
        account: AccountId,
        token: Option<&str>,
        kind: UsageKind,
        since: Timestamp,
    ) -> StoreResult<Vec<UsageRow>> {
        let rows = sqlx::query(
            "SELECT bucket_start, reason, count FROM usage_counts \
             WHERE account_id = $1 AND token_id = $2 AND kind = $3 AND bucket_start >= $4 ORDER BY bucket_start",
        )
        .bind(account.to_string())
        .bind(token.unwrap_or(""))
        .bind(kind.as_str())
        .bind(since.as_millis())
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(UsageRow {
                    account_id: account,
                    token_id: token.unwrap_or("").to_string(),
                    bucket_start: Timestamp::from_millis(r.try_get("bucket_start")?),
                    kind,
                    reason: Cow::Owned(r.try_get("reason")?),
                    count: r.try_get("count")?,
                })
            })
            .collect()
    }
}
