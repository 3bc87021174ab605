//! Room apps in SQL.

use sqlx::Row;
use tokengate_core::{AccountId, Timestamp};

use super::{SqlStore, is_unique_violation, parse_id};
use crate::store::{AuditEntry, RoomApp, RoomAppStore, StoreError, StoreResult};

impl RoomAppStore for SqlStore {
    async fn create_room_app(&self, app: &RoomApp, sealed_secret: &[u8], audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO room_apps (account_id, app_id, secret_sealed, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(app.account_id.to_string())
        .bind(i64::from(app.app_id))
        .bind(sealed_secret.to_vec())
        .bind(app.created_at.as_millis())
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict("this account already has a room app with this app_id"));
            }
            other => other?,
        };
        self.finish(tx, audit, None).await
    }

    async fn list_room_apps(&self, account: AccountId) -> StoreResult<Vec<RoomApp>> {
        let rows = sqlx::query("SELECT app_id, created_at FROM room_apps WHERE account_id = $1 ORDER BY app_id")
            .bind(account.to_string())
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(RoomApp {
                    account_id: account,
                    app_id: u32::try_from(r.try_get::<i64, _>("app_id")?)
                        .map_err(|_| StoreError::Corrupt("app_id".into()))?,
                    created_at: Timestamp::from_millis(r.try_get("created_at")?),
                })
            })
            .collect()
    }

    async fn room_app_secret(&self, account: AccountId, app_id: u32) -> StoreResult<Vec<u8>> {
        let row = sqlx::query("SELECT secret_sealed FROM room_apps WHERE account_id = $1 AND app_id = $2")
            .bind(account.to_string())
            .bind(i64::from(app_id))
            .fetch_optional(&self.read)
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(row.try_get("secret_sealed")?)
    }

    async fn room_apps_by_id(&self, app_id: u32) -> StoreResult<Vec<(AccountId, Vec<u8>)>> {
        let rows = sqlx::query("SELECT account_id, secret_sealed FROM room_apps WHERE app_id = $1")
            .bind(i64::from(app_id))
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| Ok((parse_id(&r.try_get::<String, _>("account_id")?)?, r.try_get("secret_sealed")?)))
            .collect()
    }

    async fn delete_room_app(&self, account: AccountId, app_id: u32, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("DELETE FROM room_apps WHERE account_id = $1 AND app_id = $2")
            .bind(account.to_string())
            .bind(i64::from(app_id))
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.finish(tx, audit, None).await
    }

    async fn max_room_token_ttl_seconds(&self, account: AccountId) -> StoreResult<u64> {
        let row = sqlx::query("SELECT max_room_token_ttl_seconds FROM accounts WHERE id = $1")
            .bind(account.to_string())
            .fetch_optional(&self.read)
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(u64::try_from(row.try_get::<i64, _>("max_room_token_ttl_seconds")?).unwrap_or(0))
    }

    async fn record_audit(&self, audit: &AuditEntry) -> StoreResult<()> {
        let tx = self.begin().await?;
        self.finish(tx, audit, None).await
    }
}
