//! Leak reports and imported keys in SQL (SPEC §15).

use sqlx::Row;
use tokengate_core::{AccountId, Digest, Timestamp, TokenId};

use super::{Backend, SqlStore, parse_id};
use crate::store::{
    ApiToken, AuditEntry, Change, ImportOutcome, ImportStore, ImportedKey, LeakHit, LeakStore, StoreResult,
};

impl SqlStore {
    /// Which secret has this digest: (kind, target id, account, live API token?).
    async fn find_secret(
        &self,
        tx: &mut super::Tx,
        digest: &[u8],
        now: i64,
    ) -> StoreResult<Option<(&'static str, String, Option<String>, bool)>> {
        let token = sqlx::query(
            "SELECT id, account_id, kind, format, \
             CASE WHEN (revoked_at IS NULL OR revoked_at > $2) AND (expires_at IS NULL OR expires_at > $2) \
             THEN 1 ELSE 0 END AS live FROM api_tokens WHERE digest = $1",
        )
        .bind(digest.to_vec())
        .bind(now)
        .fetch_optional(&mut **tx)
        .await?;
        if let Some(row) = token {
            let kind = match (row.try_get::<String, _>("format")?.as_str(), row.try_get::<String, _>("kind")?.as_str())
            {
                ("imported", _) => "imported",
                (_, "personal") => "personal",
                _ => "api_key",
            };
            let live = row.try_get::<i64, _>("live")? == 1;
            return Ok(Some((kind, row.try_get("id")?, Some(row.try_get("account_id")?), live)));
        }
        let lookups: [(&'static str, &str); 4] = [
            ("oauth_client", "SELECT client_id AS id, account_id FROM oauth_clients WHERE secret_digest = $1"),
            (
                "client_token",
                "SELECT account_id AS id, account_id FROM security_tokens WHERE digest = $1 OR previous_digest = $1",
            ),
            ("instance", "SELECT id, account_id FROM instances WHERE token_digest = $1"),
            ("admin", "SELECT id, NULL AS account_id FROM admin_tokens WHERE digest = $1"),
        ];
        for (kind, sql) in lookups {
            if let Some(row) = sqlx::query(sql).bind(digest.to_vec()).fetch_optional(&mut **tx).await? {
                return Ok(Some((kind, row.try_get("id")?, row.try_get("account_id")?, false)));
            }
        }
        Ok(None)
    }
}

impl LeakStore for SqlStore {
    async fn report_leak(&self, digest: Digest, audit: &AuditEntry) -> StoreResult<Option<LeakHit>> {
        let mut tx = self.begin().await?;
        let at = audit.at.as_millis();
        let Some((kind, target, account, live)) = self.find_secret(&mut tx, &digest.0, at).await? else {
            return Ok(None);
        };
        let account_id: Option<AccountId> = account.as_deref().map(parse_id).transpose()?;
        // The leak is recorded first: of two reports racing for one secret, the second
        // waits here for the first to commit and then finds it recorded.
        let detail = audit.detail.as_ref();
        let text = |key: &str| detail.and_then(|d| d.get(key)).and_then(|v| v.as_str()).map(str::to_string);
        let recorded = sqlx::query(
            "INSERT INTO leaked_secrets (digest, kind, target, account_id, leaked_at, url, source) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest.0.to_vec())
        .bind(kind)
        .bind(&target)
        .bind(account.clone())
        .bind(at)
        .bind(text("url"))
        .bind(text("source"))
        .execute(&mut *tx)
        .await?;
        if recorded.rows_affected() == 0 {
            // Reported before: acted on then, no second audit entry.
            tx.commit().await?;
            return Ok(Some(LeakHit { kind, target, account_id, change: None }));
        }
        let mut change = None;
        match kind {
            "api_key" | "personal" | "imported" if live => {
                let done = sqlx::query(
                    "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND (revoked_at IS NULL OR revoked_at > $1)",
                )
                .bind(at)
                .bind(&target)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() > 0 {
                    change = Some(Change::Token(parse_id::<TokenId>(&target)?));
                }
            }
            "oauth_client" => {
                change = self.disable_client(&mut tx, &target, None, at).await?.then_some(Change::OAuthClients);
            }
            _ => {}
        }
        let hit = LeakHit { kind, target: target.clone(), account_id, change };
        let audit = AuditEntry { account_id, target, ..audit.clone() };
        self.finish(tx, &audit, change).await?;
        Ok(Some(hit))
    }

    async fn leaked_at(&self, digest: Digest) -> StoreResult<Option<Timestamp>> {
        let row = sqlx::query("SELECT leaked_at FROM leaked_secrets WHERE digest = $1")
            .bind(digest.0.to_vec())
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(|r| r.try_get::<i64, _>("leaked_at")).transpose()?.map(Timestamp::from_millis))
    }
}

impl ImportStore for SqlStore {
    async fn import_tokens(
        &self,
        account: AccountId,
        keys: &[ImportedKey],
        audit: &AuditEntry,
        max_live: u64,
        live_before: Option<u64>,
    ) -> StoreResult<(Vec<ImportOutcome>, u64)> {
        let (Some(first), Some(last)) = (keys.iter().map(|k| k.token.id).min(), keys.iter().map(|k| k.token.id).max())
        else {
            return Ok((Vec::new(), live_before.unwrap_or(0)));
        };
        let mut tx = self.begin().await?;
        let now = audit.at.as_millis();
        let live = match live_before {
            Some(n) => n,
            None => {
                // Exact, under the account's row lock (as for every token created).
                sqlx::query("UPDATE accounts SET name = name WHERE id = $1")
                    .bind(account.to_string())
                    .execute(&mut *tx)
                    .await?;
                let row = sqlx::query(
                    "SELECT count(*) AS n FROM api_tokens WHERE account_id = $1 \
                     AND (revoked_at IS NULL OR revoked_at > $2) AND (expires_at IS NULL OR expires_at > $2)",
                )
                .bind(account.to_string())
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0)
            }
        };
        // Many rows a statement, never more than the quota still has room for; the ids
        // that come back are the keys not seen before.
        let mut inserted_ids = std::collections::HashSet::with_capacity(keys.len());
        let mut rest = keys;
        while !rest.is_empty() {
            let added = u64::try_from(inserted_ids.len()).unwrap_or(u64::MAX);
            let room = usize::try_from(max_live.saturating_sub(live.saturating_add(added))).unwrap_or(usize::MAX);
            if room == 0 {
                break;
            }
            let (rows, after) = rest.split_at(rows_per_statement(self.backend()).min(room).min(rest.len()));
            rest = after;
            let mut sql = String::from(
                "INSERT INTO api_tokens (id, account_id, kind, member_id, name, digest, scopes, expires_at, \
                 ip_allowlist, rate_limit, rate_window_seconds, instance_ids, created_at, format, external_id) VALUES ",
            );
            for n in 0..rows.len() {
                let b = n * 8;
                if n > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!(
                    "(${}, ${}, 'api_key', NULL, ${}, ${}, ${}, ${}, '[]', NULL, NULL, '[]', ${}, 'imported', ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7,
                    b + 8
                ));
            }
            sql.push_str(" ON CONFLICT (digest) DO NOTHING RETURNING id");
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for key in rows {
                let t = &key.token;
                let scopes = serde_json::to_string(&t.scopes).unwrap_or_else(|_| "[]".into());
                query = query
                    .bind(t.id.to_string())
                    .bind(account.to_string())
                    .bind(t.name.clone())
                    .bind(key.digest.0.to_vec())
                    .bind(scopes)
                    .bind(t.expires_at.map(Timestamp::as_millis))
                    .bind(t.created_at.as_millis())
                    .bind(key.external_id.clone());
            }
            for row in query.fetch_all(&mut *tx).await? {
                inserted_ids.insert(row.try_get::<String, _>("id")?);
            }
        }
        let tried = keys.len() - rest.len();
        let mut outcomes: Vec<ImportOutcome> = keys
            .iter()
            .take(tried)
            .map(|k| {
                if inserted_ids.contains(&k.token.id.to_string()) {
                    ImportOutcome::Inserted
                } else {
                    ImportOutcome::Known
                }
            })
            .collect();
        // Past the quota: a key that exists already is only skipped.
        for key in rest {
            let known = sqlx::query("SELECT 1 AS one FROM api_tokens WHERE digest = $1")
                .bind(key.digest.0.to_vec())
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            outcomes.push(if known { ImportOutcome::Known } else { ImportOutcome::OverQuota });
        }
        let change = Change::TokenBatch { account, first, last };
        self.finish(tx, audit, Some(change)).await?;
        let added = u64::try_from(inserted_ids.len()).unwrap_or(0);
        Ok((outcomes, live.saturating_add(added)))
    }

    async fn live_tokens_between(
        &self,
        account: AccountId,
        first: TokenId,
        last: TokenId,
    ) -> StoreResult<Vec<(ApiToken, Digest)>> {
        let sql = format!(
            "{} WHERE account_id = $1 AND id >= $2 AND id <= $3 AND (revoked_at IS NULL OR revoked_at > $4) \
             AND (expires_at IS NULL OR expires_at > $4)",
            super::tokens::COLUMNS
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account.to_string())
            .bind(first.to_string())
            .bind(last.to_string())
            .bind(Timestamp::now().as_millis())
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(super::tokens::token_row).collect()
    }
}

/// Rows of an import a statement (8 parameters each). Few on SQLite: sqlx looks each
/// `$N` up by name among all of a statement's parameters, so a statement's binding cost
/// grows with the square of its size (measured: 4,000 parameters a statement spent half
/// of an import in `sqlite3_bind_parameter_name`).
fn rows_per_statement(backend: Backend) -> usize {
    match backend {
        Backend::Sqlite => 16,
        Backend::Postgres => 500,
    }
}

/// Whether the backend can skip rows other transactions have locked.
pub(super) fn skip_locked(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => " FOR UPDATE OF o SKIP LOCKED",
        Backend::Sqlite => "",
    }
}
