//! OAuth 2.0 operations: clients, signing keys, trusted issuers, and the protocol
//! endpoints' logic (client-credentials grant, introspection, revocation).

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use tokengate_core::rules::{grants, validate_scope};
use tokengate_core::token::{self, Prefix};
use tokengate_core::{AccountId, ClientId, Digest, IssuerId, Timestamp};

use super::accounts::not_found;
use super::{Actor, ServiceError, ServiceResult, Services, valid_name};
use crate::oauth::LiveClient;
use crate::oauth::keys::{self, SigningAlg};
use crate::store::{Change, OAuthClient, OAuthStore, RevokedJti, TrustedIssuer};
pub use tokengate_proto::oauth::{
    Introspection, NewOAuthClient, NewTrustedIssuer, RotateSigningKey, RotatedSigningKey, TokenResponse,
};

/// Why a token request failed (RFC 6749 §5.2 error codes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    #[error("invalid_client")]
    InvalidClient,
    #[error("invalid_scope: {0}")]
    InvalidScope(String),
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    #[error("server_error")]
    ServerError,
}

/// What `/oauth/revoke` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// Revoked, or nothing of the caller's to revoke (RFC 7009 answers both alike).
    Done,
    /// A kind of secret this endpoint does not revoke (`unsupported_token_type`).
    Unsupported,
}

/// Who calls introspection or revocation: the platform admin (any account) or an OAuth
/// client (its own account only).
pub enum ProtocolCaller {
    Admin(Actor),
    Client(Arc<LiveClient>, Option<String>),
}

impl ProtocolCaller {
    fn may_see(&self, account: AccountId) -> bool {
        match self {
            ProtocolCaller::Admin(_) => true,
            ProtocolCaller::Client(c, _) => c.client.account_id == account,
        }
    }

    fn actor(&self) -> Actor {
        match self {
            ProtocolCaller::Admin(actor) => actor.clone(),
            ProtocolCaller::Client(c, ip) => {
                Actor { name: format!("oauth-client:{}", c.client.client_id), ip: ip.clone() }
            }
        }
    }
}

fn valid_scopes(scopes: &[String]) -> ServiceResult<()> {
    if scopes.is_empty() || scopes.len() > 100 {
        return Err(ServiceError::Invalid("scopes must list 1 to 100 scopes".into()));
    }
    for scope in scopes {
        validate_scope(scope).map_err(|e| ServiceError::Invalid(e.to_string()))?;
    }
    Ok(())
}

/// `https://…`, or plain `http://` only on a loopback address (a local IdP in tests or a
/// sidecar): keys must not travel unprotected over a network.
fn valid_jwks_uri(uri: &str) -> ServiceResult<()> {
    let bad = || ServiceError::Invalid("jwks_uri must be an https:// URL (or http:// on a loopback address)".into());
    let url = url::Url::parse(uri).map_err(|_| bad())?;
    if uri.len() > 2048 || uri.chars().any(char::is_control) || !url.username().is_empty() || url.password().is_some() {
        return Err(bad());
    }
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" => match url.host() {
            Some(url::Host::Ipv4(ip)) if ip.is_loopback() => Ok(()),
            Some(url::Host::Ipv6(ip)) if ip.is_loopback() => Ok(()),
            Some(url::Host::Domain("localhost")) => Ok(()),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

fn bounded(value: &str, what: &str) -> ServiceResult<String> {
    let value = value.trim();
    if value.is_empty() || value.len() > 512 || value.chars().any(char::is_control) {
        return Err(ServiceError::Invalid(format!("{what} must be 1 to 512 characters without control characters")));
    }
    Ok(value.to_string())
}

impl Services {
    pub async fn create_oauth_client(
        &self,
        actor: &Actor,
        account: AccountId,
        new: NewOAuthClient,
    ) -> ServiceResult<(OAuthClient, SecretString)> {
        self.account(account).await?;
        let name = valid_name(&new.name, "name")?;
        valid_scopes(&new.scopes)?;
        let client = OAuthClient {
            client_id: ClientId::new(),
            account_id: account,
            name,
            scopes: new.scopes,
            created_at: Timestamp::now(),
            disabled_at: None,
        };
        let secret = token::generate(Prefix::ClientSecret);
        let audit = actor.audit(Some(account), "oauth_client.created", client.client_id);
        self.store
            .create_oauth_client(
                &client,
                Digest::of(secret.expose_secret().as_bytes()),
                &audit,
                self.config.max_oauth_clients_per_account,
            )
            .await
            .map_err(|e| not_found(e, "account"))?;
        self.refresh(Change::OAuthClients).await;
        Ok((client, secret))
    }

    pub async fn list_oauth_clients(&self, account: AccountId) -> ServiceResult<Vec<OAuthClient>> {
        self.account(account).await?;
        Ok(self.store.list_oauth_clients(account).await?)
    }

    /// Deletes the client; the access tokens it holds stop working at once.
    pub async fn delete_oauth_client(&self, actor: &Actor, account: AccountId, id: ClientId) -> ServiceResult<()> {
        let audit = actor.audit(Some(account), "oauth_client.deleted", id);
        self.store.delete_oauth_client(account, id, &audit).await.map_err(|e| not_found(e, "oauth client"))?;
        self.refresh(Change::OAuthClients).await;
        Ok(())
    }

    /// Creates the first signing key when the store has none (at start-up).
    pub async fn ensure_signing_key(&self) -> ServiceResult<()> {
        if self.state.oauth.has_signing_keys() {
            return Ok(());
        }
        let system = Actor { name: "system".into(), ip: None };
        self.rotate_signing_key(&system, SigningAlg::default()).await.map(|_| ())
    }

    /// A new signing key takes over; the previous ones stay in the JWKS until every
    /// token they signed has expired (lifetime plus leeway).
    pub async fn rotate_signing_key(&self, actor: &Actor, alg: SigningAlg) -> ServiceResult<RotatedSigningKey> {
        let now = Timestamp::now();
        let record = keys::generate(alg, &self.master_key, now)
            .map_err(|e| ServiceError::Invalid(format!("cannot create a signing key: {e}")))?;
        let lifetime = i64::try_from(self.config.access_token_lifetime_seconds).unwrap_or(86_400);
        let publish_until = now.plus_secs(lifetime + crate::oauth::jwt::LEEWAY_SECONDS as i64 + 1);
        let audit = actor.audit(None, "signing_key.rotated", &record.kid);
        self.store.add_signing_key(&record, publish_until, &audit).await?;
        self.refresh(Change::SigningKeys).await;
        Ok(RotatedSigningKey { kid: record.kid, alg: alg.as_str().into() })
    }

    pub async fn create_trusted_issuer(
        &self,
        actor: &Actor,
        account: AccountId,
        new: NewTrustedIssuer,
    ) -> ServiceResult<TrustedIssuer> {
        self.account(account).await?;
        let issuer = bounded(&new.issuer, "issuer")?;
        if issuer == self.state.oauth.issuer() {
            return Err(ServiceError::Invalid("tokengate's own issuer is always trusted".into()));
        }
        valid_jwks_uri(&new.jwks_uri)?;
        self.egress_allows_url(&new.jwks_uri, "jwks_uri")?;
        let scopes_claim = match new.scopes_claim.as_deref() {
            None => "scope".to_string(),
            Some(claim) => bounded(claim, "scopes_claim")?,
        };
        let record = TrustedIssuer {
            id: IssuerId::new(),
            account_id: account,
            issuer,
            jwks_uri: new.jwks_uri,
            audience: bounded(&new.audience, "audience")?,
            scopes_claim,
            created_at: Timestamp::now(),
        };
        let audit = actor.audit(Some(account), "trusted_issuer.created", record.id);
        self.store.create_trusted_issuer(&record, &audit).await.map_err(|e| not_found(e, "account"))?;
        self.refresh(Change::TrustedIssuers).await;
        Ok(record)
    }

    pub async fn list_trusted_issuers(&self, account: AccountId) -> ServiceResult<Vec<TrustedIssuer>> {
        self.account(account).await?;
        Ok(self.store.list_trusted_issuers(account).await?)
    }

    pub async fn delete_trusted_issuer(&self, actor: &Actor, account: AccountId, id: IssuerId) -> ServiceResult<()> {
        let audit = actor.audit(Some(account), "trusted_issuer.deleted", id);
        self.store.delete_trusted_issuer(account, id, &audit).await.map_err(|e| not_found(e, "trusted issuer"))?;
        self.refresh(Change::TrustedIssuers).await;
        Ok(())
    }

    /// The client-credentials grant: `scope` (space-separated) must be within the
    /// client's scopes; absent, the client gets all of them.
    pub fn grant_client_credentials(
        &self,
        client: &LiveClient,
        scope: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        let own = &client.client.scopes;
        let requested: Vec<String> =
            scope.map(|s| s.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect()).unwrap_or_default();
        let scopes = if requested.is_empty() {
            own.clone()
        } else {
            if let Some(bad) = requested.iter().find(|s| validate_scope(s).is_err() || !grants(own, s)) {
                return Err(OAuthError::InvalidScope(format!("scope {bad:?} is not granted to this client")));
            }
            requested
        };
        let lifetime = self.config.access_token_lifetime_seconds;
        let (token, _) = self.state.oauth.issue(&client.client, &scopes, lifetime, Timestamp::now()).map_err(|e| {
            tracing::error!(error = %e, "issuing an access token failed");
            OAuthError::ServerError
        })?;
        metrics::counter!("tokengate_oauth_tokens_issued_total").increment(1);
        Ok(TokenResponse {
            access_token: token,
            token_type: "Bearer".into(),
            expires_in: lifetime,
            scope: scopes.join(" "),
        })
    }

    /// RFC 7662: what the caller may know about a token of its account.
    pub fn introspect(&self, caller: &ProtocolCaller, presented: &str) -> Introspection {
        let presented = presented.trim().as_bytes();
        let now = Timestamp::now();
        if let Ok(jwt) = self.state.oauth.verify_access_token(presented, now, None) {
            if !caller.may_see(jwt.account_id) {
                return Introspection::default();
            }
            return Introspection {
                active: true,
                scope: Some(jwt.scopes.join(" ")),
                client_id: jwt.client_id.map(|c| c.to_string()),
                token_type: Some("Bearer".into()),
                kind: Some("access_token".into()),
                exp: Some(jwt.expires_at),
                iat: jwt.issued_at,
                sub: Some(jwt.subject.clone()),
                aud: Some(crate::oauth::audience(jwt.account_id)),
                iss: Some(self.state.oauth.issuer().to_string()),
                jti: jwt.jti.clone(),
                account_id: Some(jwt.account_id.to_string()),
            };
        }
        if let Some(prefix) = Prefix::of(presented).filter(|p| !matches!(p, Prefix::ApiKey | Prefix::Personal)) {
            return self.introspect_secret(caller, presented, prefix, now).unwrap_or_default();
        }
        let Some(live) = self.state.lookup_token(presented) else { return Introspection::default() };
        let c = &live.credential;
        if !caller.may_see(c.account_id) || c.check(now, None, None, None, &[]).is_err() {
            return Introspection::default();
        }
        Introspection {
            active: true,
            scope: Some(c.scopes.join(" ")),
            token_type: Some("Bearer".into()),
            kind: Some(c.kind.as_str().into()),
            exp: c.expires_at.map(|t| t.as_millis() / 1000),
            sub: Some(c.id.to_string()),
            account_id: Some(c.account_id.to_string()),
            ..Introspection::default()
        }
    }

    /// The kinds that are not bearer tokens: an account's `Client-Token` (current, or
    /// the previous one within its grace period), an instance token, an OAuth client
    /// secret, and (for the admin only) an admin token.
    fn introspect_secret(
        &self,
        caller: &ProtocolCaller,
        presented: &[u8],
        prefix: Prefix,
        now: Timestamp,
    ) -> Option<Introspection> {
        let digest = token::parse(presented, prefix).ok()?;
        let (kind, sub, account, exp, client_id) = match prefix {
            Prefix::ClientToken => {
                let (account, grace_end) = self.state.client_token_owner(&digest, now)?;
                ("client_token", account.to_string(), Some(account), grace_end, None)
            }
            Prefix::Instance => {
                let instance = self.state.instance_with_token(&digest)?;
                ("instance", instance.id.to_string(), Some(instance.account_id), None, None)
            }
            Prefix::ClientSecret => {
                let client = self.state.oauth.client_with_secret(&digest)?;
                let id = client.client.client_id.to_string();
                ("client_secret", id.clone(), Some(client.client.account_id), None, Some(id))
            }
            Prefix::Admin => ("admin", self.state.admin_token_id(&digest)?, None, None, None),
            Prefix::ApiKey | Prefix::Personal => return None,
        };
        let visible = match account {
            Some(account) => caller.may_see(account),
            None => matches!(caller, ProtocolCaller::Admin(_)),
        };
        visible.then(|| Introspection {
            active: true,
            client_id,
            kind: Some(kind.into()),
            exp: exp.map(|t| t.as_millis() / 1000),
            sub: Some(sub),
            account_id: account.map(|a| a.to_string()),
            ..Introspection::default()
        })
    }

    /// RFC 7009: revokes an access token, API key or personal token of the caller's
    /// account. Unknown, invalid or foreign tokens are ignored (the answer is the same).
    ///
    /// An OAuth client secret disables its client, as a leak report does (its access
    /// tokens stop working with it). Client-Tokens, instance tokens and admin tokens are
    /// not revoked here (they are rotated or deleted through the admin API, where their
    /// effect on every app that sends them is shown): `Unsupported`, decided by the
    /// prefix alone.
    pub async fn revoke(&self, caller: &ProtocolCaller, presented: &str) -> ServiceResult<Revocation> {
        let presented = presented.trim().as_bytes();
        match Prefix::of(presented) {
            Some(Prefix::ClientSecret) => self.revoke_client_secret(caller, presented).await.map(|()| Revocation::Done),
            Some(Prefix::ClientToken | Prefix::Instance | Prefix::Admin) => Ok(Revocation::Unsupported),
            _ => self.revoke_bearer(caller, presented).await.map(|()| Revocation::Done),
        }
    }

    async fn revoke_client_secret(&self, caller: &ProtocolCaller, presented: &[u8]) -> ServiceResult<()> {
        let Ok(digest) = token::parse(presented, Prefix::ClientSecret) else { return Ok(()) };
        let Some(live) = self.state.oauth.client_with_secret(&digest) else { return Ok(()) };
        let (account, id) = (live.client.account_id, live.client.client_id);
        if !caller.may_see(account) {
            return Ok(());
        }
        let audit = caller.actor().audit(Some(account), "oauth_client.disabled", id);
        match self.store.disable_oauth_client(account, id, Timestamp::now(), &audit).await {
            // Disabled or deleted meanwhile: nothing left to revoke.
            Ok(()) | Err(crate::store::StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        self.refresh(Change::OAuthClients).await;
        Ok(())
    }

    async fn revoke_bearer(&self, caller: &ProtocolCaller, presented: &[u8]) -> ServiceResult<()> {
        let now = Timestamp::now();
        if let Ok(jwt) = self.state.oauth.verify_access_token(presented, now, None) {
            let Some(jti) = jwt.jti.clone().filter(|_| caller.may_see(jwt.account_id)) else { return Ok(()) };
            let revoked = RevokedJti {
                jti: jti.clone(),
                account_id: jwt.account_id,
                expires_at: Timestamp::from_millis(jwt.expires_at.saturating_mul(1000)),
            };
            let audit = caller.actor().audit(Some(jwt.account_id), "access_token.revoked", &jti);
            self.store.revoke_jti(&revoked, now, &audit).await?;
            self.refresh(Change::RevokedJtis).await;
            return Ok(());
        }
        if let Some(live) = self.state.lookup_token(presented)
            && caller.may_see(live.credential.account_id)
            && live.credential.revoked_at.is_none_or(|at| at > now)
        {
            return self.revoke_token(&caller.actor(), live.credential.id).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_uris_must_be_protected() {
        assert!(valid_jwks_uri("https://idp.example/.well-known/jwks.json").is_ok());
        assert!(valid_jwks_uri("http://127.0.0.1:8080/jwks").is_ok());
        assert!(valid_jwks_uri("http://[::1]:8080/jwks").is_ok());
        assert!(valid_jwks_uri("http://localhost/jwks").is_ok());
        assert!(valid_jwks_uri("http://idp.example/jwks").is_err());
        assert!(valid_jwks_uri("http://10.0.0.1/jwks").is_err());
        assert!(valid_jwks_uri("https://user:pw@idp.example/jwks").is_err());
        assert!(valid_jwks_uri("file:///etc/passwd").is_err());
        assert!(valid_jwks_uri("not a url").is_err());
    }
}
