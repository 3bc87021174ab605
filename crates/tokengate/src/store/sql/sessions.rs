//! Dashboard sessions and members' two-factor secrets in SQL.

use sqlx::Row;
use tokengate_core::{Digest, MemberId, Timestamp};

use super::{SqlStore, member_row};
use crate::store::{AuditEntry, LoginRecord, SessionRecord, SessionStore, StoreError, StoreResult, ThrottleStore};

impl SessionStore for SqlStore {
    async fn login_record(&self, email: &str) -> StoreResult<Option<LoginRecord>> {
        let row = sqlx::query(
            "SELECT id, account_id, email, role, created_at, password_hash, totp_sealed, totp_last_step \
             FROM members WHERE email = $1",
        )
        .bind(email)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| {
            Ok(LoginRecord {
                member: member_row(&r)?,
                password_hash: r.try_get("password_hash")?,
                totp_sealed: r.try_get("totp_sealed")?,
                totp_last_step: r.try_get("totp_last_step")?,
            })
        })
        .transpose()
    }

    async fn create_session(
        &self,
        digest: Digest,
        member: MemberId,
        csrf: &str,
        mfa_pending: bool,
        now: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sessions (id_digest, member_id, csrf, mfa_pending, created_at, last_seen_at) \
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(digest.0.to_vec())
        .bind(member.to_string())
        .bind(csrf)
        .bind(i64::from(mfa_pending))
        .bind(now.as_millis())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn session(&self, digest: Digest) -> StoreResult<Option<SessionRecord>> {
        let row = sqlx::query(
            "SELECT m.id, m.account_id, m.email, m.role, m.created_at, s.csrf, s.mfa_pending, \
             s.created_at AS session_created, s.last_seen_at \
             FROM sessions s JOIN members m ON m.id = s.member_id WHERE s.id_digest = $1",
        )
        .bind(digest.0.to_vec())
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| {
            Ok(SessionRecord {
                member: member_row(&r)?,
                csrf: r.try_get("csrf")?,
                mfa_pending: r.try_get::<i64, _>("mfa_pending")? != 0,
                created_at: Timestamp::from_millis(r.try_get("session_created")?),
                last_seen_at: Timestamp::from_millis(r.try_get("last_seen_at")?),
            })
        })
        .transpose()
    }

    async fn touch_session(&self, digest: Digest, now: Timestamp) -> StoreResult<()> {
        sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id_digest = $2")
            .bind(now.as_millis())
            .bind(digest.0.to_vec())
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn complete_mfa(&self, digest: Digest, member: MemberId, step: i64) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("UPDATE members SET totp_last_step = $1 WHERE id = $2 AND totp_last_step < $1")
            .bind(step)
            .bind(member.to_string())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict("this code was already used"));
        }
        sqlx::query("UPDATE sessions SET mfa_pending = 0 WHERE id_digest = $1")
            .bind(digest.0.to_vec())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_session(&self, digest: Digest) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE id_digest = $1").bind(digest.0.to_vec()).execute(&self.write).await?;
        Ok(())
    }

    async fn set_totp(
        &self,
        member: MemberId,
        sealed: Option<&[u8]>,
        keep_session: Digest,
        audit: &AuditEntry,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE members SET totp_sealed = $1, totp_last_step = 0 WHERE id = $2")
            .bind(sealed.map(<[u8]>::to_vec))
            .bind(member.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM sessions WHERE member_id = $1 AND id_digest <> $2")
            .bind(member.to_string())
            .bind(keep_session.0.to_vec())
            .execute(&mut *tx)
            .await?;
        self.finish(tx, audit, None).await
    }

    async fn mfa_attempt(&self, digest: Digest) -> StoreResult<u32> {
        let row = sqlx::query(
            "UPDATE sessions SET mfa_failures = mfa_failures + 1 WHERE id_digest = $1 AND mfa_pending = 1 \
             RETURNING mfa_failures",
        )
        .bind(digest.0.to_vec())
        .fetch_optional(&self.write)
        .await?;
        match row {
            Some(r) => Ok(u32::try_from(r.try_get::<i64, _>("mfa_failures")?).unwrap_or(u32::MAX)),
            None => Ok(u32::MAX),
        }
    }

    async fn prune_sessions(
        &self,
        idle_before: Timestamp,
        created_before: Timestamp,
        pending_before: Timestamp,
    ) -> StoreResult<u64> {
        let done = sqlx::query(
            "DELETE FROM sessions WHERE last_seen_at < $1 OR created_at < $2 OR (mfa_pending = 1 AND created_at < $3)",
        )
        .bind(idle_before.as_millis())
        .bind(created_before.as_millis())
        .bind(pending_before.as_millis())
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected())
    }
}

impl ThrottleStore for SqlStore {
    async fn throttle_locked(&self, keys: &[&str], now: Timestamp) -> StoreResult<bool> {
        for key in keys {
            let row = sqlx::query("SELECT 1 AS one FROM login_throttles WHERE key = $1 AND locked_until > $2")
                .bind(*key)
                .bind(now.as_millis())
                .fetch_optional(&self.read)
                .await?;
            if row.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn throttle_failed(&self, key: &str, free: u32, now: Timestamp) -> StoreResult<()> {
        self.count_failure(key, free, now, false).await.map(drop)
    }

    async fn throttle_attempt(&self, key: &str, free: u32, now: Timestamp) -> StoreResult<Option<u32>> {
        self.count_failure(key, free, now, true).await
    }

    async fn throttle_reset(&self, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM login_throttles WHERE key = $1").bind(key).execute(&self.write).await?;
        Ok(())
    }

    async fn prune_throttles(&self, before: Timestamp) -> StoreResult<u64> {
        let done = sqlx::query(
            "DELETE FROM login_throttles WHERE updated_at < $1 AND (locked_until IS NULL OR locked_until < $1)",
        )
        .bind(before.as_millis())
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected())
    }
}

impl SqlStore {
    /// One upsert counts (atomically on both engines; with `unless_locked`, not while
    /// the key is locked), then the lock follows the count, in the same transaction: a
    /// concurrent attempt waits for it and sees the lock.
    async fn count_failure(
        &self,
        key: &str,
        free: u32,
        now: Timestamp,
        unless_locked: bool,
    ) -> StoreResult<Option<u32>> {
        const COUNT: &str = "INSERT INTO login_throttles (key, failures, locked_until, updated_at) VALUES ($1, 1, NULL, $2) \
             ON CONFLICT (key) DO UPDATE SET failures = login_throttles.failures + 1, updated_at = $2";
        const UNLOCKED: &str = " WHERE login_throttles.locked_until IS NULL OR login_throttles.locked_until <= $2";
        let sql = format!("{COUNT}{} RETURNING failures", if unless_locked { UNLOCKED } else { "" });
        let mut tx = self.begin().await?;
        let Some(row) =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(key).bind(now.as_millis()).fetch_optional(&mut *tx).await?
        else {
            return Ok(None);
        };
        let failures = u32::try_from(row.try_get::<i64, _>("failures")?).unwrap_or(u32::MAX);
        if failures >= free {
            let doublings = (failures - free).min(6);
            let until = now.plus_secs(60i64 << doublings);
            sqlx::query("UPDATE login_throttles SET locked_until = $1 WHERE key = $2")
                .bind(until.as_millis())
                .bind(key)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Some(failures))
    }
}
