//! OAuth signing keys, clients, revoked access tokens and trusted issuers in SQL.

use sqlx::Row;
use sqlx::any::AnyRow;
use tokengate_core::{AccountId, ClientId, Digest, IssuerId, Timestamp};

use super::{SqlStore, digest, is_foreign_key_violation, is_unique_violation, parse_id};
use crate::store::{
    AuditEntry, Change, OAuthClient, OAuthStore, RevokedJti, SigningKeyRecord, StoreError, StoreResult, TrustedIssuer,
};

fn ts(row: &AnyRow, column: &'static str) -> StoreResult<Option<Timestamp>> {
    Ok(row.try_get::<Option<i64>, _>(column)?.map(Timestamp::from_millis))
}

fn key_row(row: &AnyRow) -> StoreResult<SigningKeyRecord> {
    Ok(SigningKeyRecord {
        kid: row.try_get("kid")?,
        alg: row.try_get("alg")?,
        private_sealed: row.try_get("private_sealed")?,
        public_jwk: row.try_get("public_jwk")?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        retired_at: ts(row, "retired_at")?,
        publish_until: ts(row, "publish_until")?,
    })
}

fn client_row(row: &AnyRow) -> StoreResult<OAuthClient> {
    let scopes: String = row.try_get("scopes")?;
    Ok(OAuthClient {
        client_id: parse_id(&row.try_get::<String, _>("client_id")?)?,
        account_id: parse_id(&row.try_get::<String, _>("account_id")?)?,
        name: row.try_get("name")?,
        scopes: serde_json::from_str(&scopes).map_err(|e| StoreError::Corrupt(format!("scopes: {e}")))?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        disabled_at: row.try_get::<Option<i64>, _>("disabled_at")?.map(Timestamp::from_millis),
    })
}

fn issuer_row(row: &AnyRow) -> StoreResult<TrustedIssuer> {
    Ok(TrustedIssuer {
        id: parse_id(&row.try_get::<String, _>("id")?)?,
        account_id: parse_id(&row.try_get::<String, _>("account_id")?)?,
        issuer: row.try_get("issuer")?,
        jwks_uri: row.try_get("jwks_uri")?,
        audience: row.try_get("audience")?,
        scopes_claim: row.try_get("scopes_claim")?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
    })
}

const CLIENT_COLUMNS: &str =
    "SELECT client_id, account_id, name, scopes, secret_digest, created_at, disabled_at FROM oauth_clients";
const ISSUER_COLUMNS: &str =
    "SELECT id, account_id, issuer, jwks_uri, audience, scopes_claim, created_at FROM trusted_issuers";

impl SqlStore {
    /// Marks a client disabled (of `account` only, when given); `false` when no such
    /// client was still enabled. A revocation of its secret and a leak report both end
    /// a client this way.
    pub(super) async fn disable_client(
        &self,
        tx: &mut super::Tx,
        client_id: &str,
        account: Option<AccountId>,
        at_millis: i64,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE oauth_clients SET disabled_at = $1 WHERE client_id = $2 AND ($3 IS NULL OR account_id = $3) \
             AND disabled_at IS NULL",
        )
        .bind(at_millis)
        .bind(client_id)
        .bind(account.map(|a| a.to_string()))
        .execute(&mut **tx)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}

impl OAuthStore for SqlStore {
    async fn signing_keys(&self, now: Timestamp) -> StoreResult<Vec<SigningKeyRecord>> {
        let rows = sqlx::query(
            "SELECT kid, alg, private_sealed, public_jwk, created_at, retired_at, publish_until FROM signing_keys \
             WHERE publish_until IS NULL OR publish_until > $1 ORDER BY created_at, kid",
        )
        .bind(now.as_millis())
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(key_row).collect()
    }

    async fn add_signing_key(
        &self,
        key: &SigningKeyRecord,
        retired_publish_until: Timestamp,
        audit: &AuditEntry,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE signing_keys SET retired_at = $1, publish_until = $2 WHERE retired_at IS NULL")
            .bind(key.created_at.as_millis())
            .bind(retired_publish_until.as_millis())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_sealed, public_jwk, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&key.kid)
        .bind(&key.alg)
        .bind(key.private_sealed.clone())
        .bind(&key.public_jwk)
        .bind(key.created_at.as_millis())
        .execute(&mut *tx)
        .await?;
        self.finish(tx, audit, Some(Change::SigningKeys)).await
    }

    async fn create_oauth_client(
        &self,
        client: &OAuthClient,
        digest: Digest,
        audit: &AuditEntry,
        max: u64,
    ) -> StoreResult<()> {
        let scopes = serde_json::to_string(&client.scopes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.begin().await?;
        let count = sqlx::query("SELECT count(*) AS n FROM oauth_clients WHERE account_id = $1")
            .bind(client.account_id.to_string());
        self.within_quota(&mut tx, client.account_id, count, max, "OAuth clients").await?;
        let inserted = sqlx::query(
            "INSERT INTO oauth_clients (client_id, account_id, name, scopes, secret_digest, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(client.client_id.to_string())
        .bind(client.account_id.to_string())
        .bind(&client.name)
        .bind(scopes)
        .bind(digest.0.to_vec())
        .bind(client.created_at.as_millis())
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_foreign_key_violation(&e) => {
                return Err(StoreError::NotFound);
            }
            other => other?,
        };
        self.finish(tx, audit, Some(Change::OAuthClients)).await
    }

    async fn list_oauth_clients(&self, account: AccountId) -> StoreResult<Vec<OAuthClient>> {
        let sql = sqlx::AssertSqlSafe(format!("{CLIENT_COLUMNS} WHERE account_id = $1 ORDER BY client_id"));
        let rows = sqlx::query(sql).bind(account.to_string()).fetch_all(&self.read).await?;
        rows.iter().map(client_row).collect()
    }

    async fn all_oauth_clients(&self) -> StoreResult<Vec<(OAuthClient, Digest)>> {
        // A client disabled by a leak report is as good as gone for the gateway.
        let sql = format!("{CLIENT_COLUMNS} WHERE disabled_at IS NULL");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.read).await?;
        rows.iter().map(|r| Ok((client_row(r)?, digest(&r.try_get::<Vec<u8>, _>("secret_digest")?)?))).collect()
    }

    async fn delete_oauth_client(&self, account: AccountId, id: ClientId, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("DELETE FROM oauth_clients WHERE account_id = $1 AND client_id = $2")
            .bind(account.to_string())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.finish(tx, audit, Some(Change::OAuthClients)).await
    }

    async fn disable_oauth_client(
        &self,
        account: AccountId,
        id: ClientId,
        at: Timestamp,
        audit: &AuditEntry,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        if !self.disable_client(&mut tx, &id.to_string(), Some(account), at.as_millis()).await? {
            return Err(StoreError::NotFound);
        }
        self.finish(tx, audit, Some(Change::OAuthClients)).await
    }

    async fn revoke_jti(&self, revoked: &RevokedJti, now: Timestamp, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM revoked_jtis WHERE expires_at < $1")
            .bind(now.plus_secs(-24 * 3600).as_millis())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO revoked_jtis (jti, account_id, expires_at, revoked_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (jti) DO NOTHING",
        )
        .bind(&revoked.jti)
        .bind(revoked.account_id.to_string())
        .bind(revoked.expires_at.as_millis())
        .bind(now.as_millis())
        .execute(&mut *tx)
        .await?;
        self.finish(tx, audit, Some(Change::RevokedJtis)).await
    }

    async fn revoked_jtis(&self, now: Timestamp) -> StoreResult<Vec<RevokedJti>> {
        let rows = sqlx::query("SELECT jti, account_id, expires_at FROM revoked_jtis WHERE expires_at > $1")
            .bind(now.as_millis())
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(RevokedJti {
                    jti: r.try_get("jti")?,
                    account_id: parse_id(&r.try_get::<String, _>("account_id")?)?,
                    expires_at: Timestamp::from_millis(r.try_get("expires_at")?),
                })
            })
            .collect()
    }

    async fn create_trusted_issuer(&self, issuer: &TrustedIssuer, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO trusted_issuers (id, account_id, issuer, jwks_uri, audience, scopes_claim, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(issuer.id.to_string())
        .bind(issuer.account_id.to_string())
        .bind(&issuer.issuer)
        .bind(&issuer.jwks_uri)
        .bind(&issuer.audience)
        .bind(&issuer.scopes_claim)
        .bind(issuer.created_at.as_millis())
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict("this account already trusts this issuer"));
            }
            Err(e) if is_foreign_key_violation(&e) => {
                return Err(StoreError::NotFound);
            }
            other => other?,
        };
        self.finish(tx, audit, Some(Change::TrustedIssuers)).await
    }

    async fn list_trusted_issuers(&self, account: AccountId) -> StoreResult<Vec<TrustedIssuer>> {
        let sql = sqlx::AssertSqlSafe(format!("{ISSUER_COLUMNS} WHERE account_id = $1 ORDER BY id"));
        let rows = sqlx::query(sql).bind(account.to_string()).fetch_all(&self.read).await?;
        rows.iter().map(issuer_row).collect()
    }

    async fn all_trusted_issuers(&self) -> StoreResult<Vec<TrustedIssuer>> {
        let rows = sqlx::query(ISSUER_COLUMNS).fetch_all(&self.read).await?;
        rows.iter().map(issuer_row).collect()
    }

    async fn delete_trusted_issuer(&self, account: AccountId, id: IssuerId, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("DELETE FROM trusted_issuers WHERE account_id = $1 AND id = $2")
            .bind(account.to_string())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.finish(tx, audit, Some(Change::TrustedIssuers)).await
    }
}
