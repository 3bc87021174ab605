//! API keys and personal access tokens in SQL.

use std::borrow::Cow;

use sqlx::Row;
use sqlx::any::AnyRow;
use tokengate_core::{Digest, Timestamp, TokenId, TokenKind};

use super::{Backend, SqlStore, digest, parse_id};
use crate::store::{ApiToken, AuditEntry, Change, RateLimit, StoreError, StoreResult, TokenFormat, TokenStore};

/// Tokens per page of the bulk load.
const PAGE: i64 = 5_000;

/// One page of live tokens, as a JSON array of arrays, and the last id in it.
const SQLITE_LIVE_PAGE: &str = "SELECT json_group_array(json_array(id, account_id, kind, member_id, name, hex(digest), \
     json(scopes), expires_at, json(ip_allowlist), rate_limit, rate_window_seconds, json(instance_ids), created_at, \
     revoked_at, last_used_at, format)) AS page, max(id) AS last FROM (SELECT * FROM api_tokens \
     WHERE (revoked_at IS NULL OR revoked_at > $1) AND (expires_at IS NULL OR expires_at > $1) AND id > $2 \
     ORDER BY id LIMIT $3) AS t";
const POSTGRES_LIVE_PAGE: &str = "SELECT json_agg(json_build_array(id, account_id, kind, member_id, name, \
     encode(digest, 'hex'), scopes::json, expires_at, ip_allowlist::json, rate_limit, rate_window_seconds, \
     instance_ids::json, created_at, revoked_at, last_used_at, format))::text AS page, max(id) AS last FROM (SELECT * FROM api_tokens \
     WHERE (revoked_at IS NULL OR revoked_at > $1) AND (expires_at IS NULL OR expires_at > $1) AND id > $2 \
     ORDER BY id LIMIT $3) AS t";

/// A token as packed by the bulk-load queries, in their column order. Text borrows
/// from the page where it can, to keep a million short-lived allocations off the heap.
#[derive(serde::Deserialize)]
struct PackedToken<'a>(
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow)] Option<Cow<'a, str>>,
    String,
    #[serde(borrow)] Cow<'a, str>,
    Vec<String>,
    Option<i64>,
    Vec<String>,
    Option<u32>,
    Option<u32>,
    Vec<tokengate_core::InstanceId>,
    i64,
    Option<i64>,
    Option<i64>,
    #[serde(borrow)] Cow<'a, str>,
);

impl PackedToken<'_> {
    fn unpack(self) -> StoreResult<(ApiToken, Digest)> {
        let PackedToken(
            id,
            account,
            kind,
            member,
            name,
            hex_digest,
            scopes,
            expires,
            ip,
            limit,
            window,
            instances,
            created,
            revoked,
            used,
            format,
        ) = self;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_digest.as_bytes(), &mut bytes).map_err(|_| StoreError::Corrupt("digest".into()))?;
        let token = ApiToken {
            id: parse_id(&id)?,
            account_id: parse_id(&account)?,
            kind: TokenKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("kind {kind:?}")))?,
            member_id: member.map(|m| parse_id(&m)).transpose()?,
            name,
            scopes,
            expires_at: expires.map(Timestamp::from_millis),
            ip_allowlist: ip,
            rate_limit: limit.zip(window).map(|(limit, window_seconds)| RateLimit { limit, window_seconds }),
            instance_ids: instances,
            created_at: Timestamp::from_millis(created),
            revoked_at: revoked.map(Timestamp::from_millis),
            last_used_at: used.map(Timestamp::from_millis),
            format: TokenFormat::parse(&format).ok_or_else(|| StoreError::Corrupt(format!("format {format:?}")))?,
            external_id: None,
            leaked_at: None,
        };
        Ok((token, digest(&bytes)?))
    }
}

pub(super) const COLUMNS: &str = "SELECT id, account_id, kind, member_id, name, digest, scopes, expires_at, ip_allowlist, \
     rate_limit, rate_window_seconds, instance_ids, created_at, revoked_at, last_used_at, format, external_id, \
     (SELECT leaked_at FROM leaked_secrets l WHERE l.digest = api_tokens.digest) AS leaked_at FROM api_tokens";

fn json<T: serde::de::DeserializeOwned>(row: &AnyRow, column: &'static str) -> StoreResult<T> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

fn to_json<T: serde::Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn token_row(row: &AnyRow) -> StoreResult<(ApiToken, Digest)> {
    let kind: String = row.try_get("kind")?;
    let rate_limit =
        match (row.try_get::<Option<i64>, _>("rate_limit")?, row.try_get::<Option<i64>, _>("rate_window_seconds")?) {
            (Some(limit), Some(window)) => Some(RateLimit {
                limit: u32::try_from(limit).map_err(|_| StoreError::Corrupt("rate_limit".into()))?,
                window_seconds: u32::try_from(window).map_err(|_| StoreError::Corrupt("rate_window_seconds".into()))?,
            }),
            _ => None,
        };
    let ts = |c: &'static str| -> StoreResult<Option<Timestamp>> {
        Ok(row.try_get::<Option<i64>, _>(c)?.map(Timestamp::from_millis))
    };
    let token = ApiToken {
        id: parse_id(&row.try_get::<String, _>("id")?)?,
        account_id: parse_id(&row.try_get::<String, _>("account_id")?)?,
        kind: TokenKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("kind {kind:?}")))?,
        member_id: row.try_get::<Option<String>, _>("member_id")?.map(|m| parse_id(&m)).transpose()?,
        name: row.try_get("name")?,
        scopes: json(row, "scopes")?,
        expires_at: ts("expires_at")?,
        ip_allowlist: json(row, "ip_allowlist")?,
        rate_limit,
        instance_ids: json(row, "instance_ids")?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        revoked_at: ts("revoked_at")?,
        last_used_at: ts("last_used_at")?,
        format: {
            let format: String = row.try_get("format")?;
            TokenFormat::parse(&format).ok_or_else(|| StoreError::Corrupt(format!("format {format:?}")))?
        },
        external_id: row.try_get("external_id")?,
        leaked_at: ts("leaked_at")?,
    };
    Ok((token, digest(&row.try_get::<Vec<u8>, _>("digest")?)?))
}

impl SqlStore {
    /// A personal token's member, write-locked until the commit: a removal running
    /// meanwhile either waits and then revokes this token with the member's others, or
    /// removed the member first, and this write is refused (`NotFound`). Taken before
    /// any token row, in the order a removal takes them (member, then tokens).
    async fn lock_member(&self, tx: &mut super::Tx, token: &ApiToken) -> StoreResult<()> {
        let Some(member) = token.member_id else { return Ok(()) };
        let held = sqlx::query("UPDATE members SET role = role WHERE id = $1 AND account_id = $2")
            .bind(member.to_string())
            .bind(token.account_id.to_string())
            .execute(&mut **tx)
            .await?;
        if held.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Inserts a token; `false` when one with the same digest exists already (an
    /// import's duplicate; a generated secret never collides).
    pub(super) async fn insert_token(&self, tx: &mut super::Tx, token: &ApiToken, digest: Digest) -> StoreResult<bool> {
        let done = sqlx::query(
            "INSERT INTO api_tokens (id, account_id, kind, member_id, name, digest, scopes, expires_at, ip_allowlist, \
             rate_limit, rate_window_seconds, instance_ids, created_at, revoked_at, last_used_at, format, external_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULL, NULL, $14, $15) \
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(token.id.to_string())
        .bind(token.account_id.to_string())
        .bind(token.kind.as_str())
        .bind(token.member_id.map(|m| m.to_string()))
        .bind(&token.name)
        .bind(digest.0.to_vec())
        .bind(to_json(&token.scopes)?)
        .bind(token.expires_at.map(Timestamp::as_millis))
        .bind(to_json(&token.ip_allowlist)?)
        .bind(token.rate_limit.map(|r| i64::from(r.limit)))
        .bind(token.rate_limit.map(|r| i64::from(r.window_seconds)))
        .bind(to_json(&token.instance_ids)?)
        .bind(token.created_at.as_millis())
        .bind(token.format.as_str())
        .bind(token.external_id.clone())
        .execute(&mut **tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

impl TokenStore for SqlStore {
    async fn create_token(
        &self,
        token: &ApiToken,
        digest: Digest,
        audit: &AuditEntry,
        max_live: u64,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let count = sqlx::query(
            "SELECT count(*) AS n FROM api_tokens WHERE account_id = $1 \
             AND (revoked_at IS NULL OR revoked_at > $2) AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(token.account_id.to_string())
        .bind(token.created_at.as_millis());
        self.within_quota(&mut tx, token.account_id, count, max_live, "live tokens").await?;
        self.lock_member(&mut tx, token).await?;
        if !self.insert_token(&mut tx, token, digest).await? {
            return Err(StoreError::Conflict("a token with this secret exists"));
        }
        self.finish(tx, audit, Some(Change::Token(token.id))).await
    }

    async fn list_tokens(&self, account: tokengate_core::AccountId) -> StoreResult<Vec<ApiToken>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{COLUMNS} WHERE account_id = $1 ORDER BY id")))
            .bind(account.to_string())
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(|r| token_row(r).map(|(t, _)| t)).collect()
    }

    async fn get_token(&self, id: TokenId) -> StoreResult<ApiToken> {
        self.live_token(id).await?.map(|(t, _)| t).ok_or(StoreError::NotFound)
    }

    async fn rotate_token(
        &self,
        old: TokenId,
        old_until: Timestamp,
        new: &ApiToken,
        digest: Digest,
        audit: &AuditEntry,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let now = new.created_at.as_millis();
        self.lock_member(&mut tx, new).await?;
        // One statement decides, so two concurrent rotations cannot both win: only a live
        // token (not revoked, not expired) without a successor is rotated.
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1, rotated_to = $2 WHERE id = $3 AND rotated_to IS NULL \
             AND (revoked_at IS NULL OR revoked_at > $4) AND (expires_at IS NULL OR expires_at > $4)",
        )
        .bind(old_until.as_millis())
        .bind(new.id.to_string())
        .bind(old.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict("the token is revoked, expired or already rotated"));
        }
        if !self.insert_token(&mut tx, new, digest).await? {
            return Err(StoreError::Conflict("a token with this secret exists"));
        }
        self.notify(&mut tx, Change::Token(old)).await?;
        self.finish(tx, audit, Some(Change::Token(new.id))).await
    }

    async fn revoke_token(&self, id: TokenId, at: Timestamp, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let exists = sqlx::query("SELECT 1 AS one FROM api_tokens WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound);
        }
        sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND (revoked_at IS NULL OR revoked_at > $1)")
            .bind(at.as_millis())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        self.finish(tx, audit, Some(Change::Token(id))).await
    }

    async fn live_token(&self, id: TokenId) -> StoreResult<Option<(ApiToken, Digest)>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{COLUMNS} WHERE id = $1")))
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(token_row).transpose()
    }

    async fn for_each_live_token(
        &self,
        since: Timestamp,
        f: &mut (dyn FnMut(ApiToken, Digest) + Send),
    ) -> StoreResult<()> {
        // Rows come back packed as JSON, a page of them per row: a million rows one by one
        // through the driver cost seconds in hand-overs alone.
        let sql = match self.backend() {
            Backend::Sqlite => SQLITE_LIVE_PAGE,
            Backend::Postgres => POSTGRES_LIVE_PAGE,
        };
        // The next page is read (on SQLite's worker thread, or by PostgreSQL) while this
        // one is unpacked: the two halves of the load run side by side.
        let fetch = |after: String| {
            let pool = self.read.clone();
            tokio::spawn(async move {
                let row = sqlx::query(sql).bind(since.as_millis()).bind(after).bind(PAGE).fetch_one(&pool).await?;
                let page = row.try_get::<Option<String>, _>("page")?;
                let last = row.try_get::<Option<String>, _>("last")?;
                Ok::<_, StoreError>(page.zip(last))
            })
        };
        let mut next = fetch(String::new());
        loop {
            let fetched = next.await.map_err(|e| StoreError::Corrupt(format!("token load task: {e}")))??;
            let Some((page, last)) = fetched else { return Ok(()) };
            next = fetch(last);
            let packed: Vec<PackedToken> =
                serde_json::from_str(&page).map_err(|e| StoreError::Corrupt(format!("token page: {e}")))?;
            for p in packed {
                let (token, digest) = p.unpack()?;
                f(token, digest);
            }
        }
    }

    async fn touch_tokens(&self, used: &[(TokenId, Timestamp)]) -> StoreResult<()> {
        if used.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for (id, at) in used {
            sqlx::query(
                "UPDATE api_tokens SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
            )
            .bind(at.as_millis())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn max_token_lifetime_seconds(&self, account: tokengate_core::AccountId) -> StoreResult<u64> {
        let row = sqlx::query("SELECT max_token_lifetime_seconds FROM accounts WHERE id = $1")
            .bind(account.to_string())
            .fetch_optional(&self.read)
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(u64::try_from(row.try_get::<i64, _>("max_token_lifetime_seconds")?).unwrap_or(0))
    }
}
