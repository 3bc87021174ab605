//! Room apps and their token04 room tokens: the server secret is sealed under the master
//! key, tokens are issued with a CSPRNG nonce/IV and verified in either layout.

use rand::RngExt;
use tokengate_core::{AccountId, Timestamp};

use super::accounts::not_found;
use super::{Actor, ServiceError, ServiceResult, Services};
use crate::room::{self, Mode, RoomClaims};
use crate::store::{RoomApp, RoomAppStore};
pub use tokengate_proto::rooms::{IssueRoomToken, IssuedRoomToken, NewRoomApp, RoomVerification, VerifyRoomToken};

fn context(account: AccountId, app_id: u32) -> String {
    format!("room-app:{account}:{app_id}")
}

fn valid_app_id(app_id: u64) -> ServiceResult<u32> {
    u32::try_from(app_id)
        .ok()
        .filter(|id| *id != 0)
        .ok_or_else(|| ServiceError::Invalid("app_id must be a whole number from 1 to 4294967295".into()))
}

impl Services {
    pub async fn create_room_app(&self, actor: &Actor, account: AccountId, new: NewRoomApp) -> ServiceResult<RoomApp> {
        use secrecy::ExposeSecret;
        self.account(account).await?;
        let app_id = valid_app_id(new.app_id)?;
        let secret = new.server_secret.expose_secret();
        if secret.chars().count() != 32 || secret.len() != 32 {
            return Err(ServiceError::Invalid("server_secret must be exactly 32 (ASCII) characters".into()));
        }
        let app = RoomApp { account_id: account, app_id, created_at: Timestamp::now() };
        let sealed = self.master_key.seal(secret.as_bytes(), &context(account, app_id));
        let audit = actor.audit(Some(account), "room_app.created", app_id);
        self.store.create_room_app(&app, &sealed, &audit).await?;
        Ok(app)
    }

    pub async fn list_room_apps(&self, account: AccountId) -> ServiceResult<Vec<RoomApp>> {
        self.account(account).await?;
        Ok(self.store.list_room_apps(account).await?)
    }

    pub async fn delete_room_app(&self, actor: &Actor, account: AccountId, app_id: u32) -> ServiceResult<()> {
        self.account(account).await?;
        let audit = actor.audit(Some(account), "room_app.deleted", app_id);
        self.store.delete_room_app(account, app_id, &audit).await.map_err(|e| not_found(e, "room app"))
    }

    fn open_secret(
        &self,
        account: AccountId,
        app_id: u32,
        sealed: &[u8],
    ) -> ServiceResult<zeroize::Zeroizing<Vec<u8>>> {
        self.master_key.open(sealed, &context(account, app_id)).map_err(|e| {
            tracing::error!(%account, app_id, error = %e, "room app secret cannot be opened");
            ServiceError::Store(crate::store::StoreError::Corrupt("sealed room secret".into()))
        })
    }

    pub async fn issue_room_token(
        &self,
        actor: &Actor,
        account: AccountId,
        app_id: u32,
        req: IssueRoomToken,
    ) -> ServiceResult<IssuedRoomToken> {
        self.account(account).await?;
        let sealed = self.store.room_app_secret(account, app_id).await.map_err(|e| not_found(e, "room app"))?;
        let n = req.user_id.chars().count();
        if n == 0 || n > 64 {
            return Err(ServiceError::Invalid("user_id must be 1 to 64 characters".into()));
        }
        let room_id = req.room_id.unwrap_or_default();
        if room_id.chars().count() > 128 {
            return Err(ServiceError::Invalid("room_id must be at most 128 characters".into()));
        }
        let max = self.store.max_room_token_ttl_seconds(account).await?;
        if req.ttl_seconds == 0 || req.ttl_seconds > max {
            return Err(ServiceError::Invalid(format!("ttl_seconds must be a whole number from 1 to {max}")));
        }
        let secret = self.open_secret(account, app_id, &sealed)?;
        let now = Timestamp::now().as_secs();
        let claims = RoomClaims {
            app_id,
            user_id: req.user_id,
            nonce: rand::rng().random(),
            ctime: now,
            expire: now.saturating_add(i64::try_from(req.ttl_seconds).unwrap_or(0)),
            payload: room::payload(&room_id, req.privileges),
        };
        let mode = req.mode.unwrap_or(Mode::Gcm);
        let iv: Vec<u8> = match mode {
            Mode::Gcm => rand::rng().random::<[u8; 12]>().to_vec(),
            Mode::Cbc => rand::rng().random::<[u8; 16]>().to_vec(),
        };
        let token = room::encode(&secret, &claims, mode, &iv)
            .map_err(|_| ServiceError::Invalid("the token could not be built".into()))?;
        self.store.record_audit(&actor.audit(Some(account), "room_token.issued", app_id)).await?;
        Ok(IssuedRoomToken { token, expires_at: Timestamp::from_millis(claims.expire.saturating_mul(1000)) })
    }

    /// Checks a token against every account's app with this id (app ids are unique per
    /// account, not across accounts); the first whose secret opens it decides.
    pub async fn verify_room_token(&self, req: VerifyRoomToken) -> ServiceResult<RoomVerification> {
        let refused = |reason: room::Refusal| RoomVerification {
            valid: false,
            reason: Some(reason.reason().into()),
            ..Default::default()
        };
        let Ok(app_id) = valid_app_id(u64::from(req.app_id)) else { return Ok(refused(room::Refusal::WrongApp)) };
        let now = Timestamp::now().as_secs();
        let mut best = room::Refusal::Malformed;
        let owners = self.store.room_apps_by_id(app_id).await?;
        for (account, sealed) in &owners {
            let (account, sealed) = (*account, sealed.as_slice());
            let secret = self.open_secret(account, app_id, sealed)?;
            match room::verify(&secret, app_id, req.token.trim(), now, req.room_id.as_deref(), req.privilege) {
                Ok(claims) => {
                    let (room_id, privileges) = room::parse_payload(&claims.payload).unwrap_or_default();
                    return Ok(RoomVerification {
                        valid: true,
                        reason: None,
                        user_id: Some(claims.user_id),
                        room_id: Some(room_id),
                        privileges: Some(privileges),
                        expires_at: Some(Timestamp::from_millis(claims.expire.saturating_mul(1000))),
                    });
                }
                Err(room::Refusal::Malformed) => {}
                Err(other) => best = other,
            }
        }
        // A token04 no app with this id opens is `wrong_app` when it is another app's: no
        // app has this id here, or another app of the same account opens it. One that
        // nothing opens although the app exists was tampered with: `malformed`.
        let token = req.token.trim();
        if best == room::Refusal::Malformed
            && room::is_well_formed(token)
            && (owners.is_empty() || self.another_app_opens(&owners, app_id, token).await?)
        {
            best = room::Refusal::WrongApp;
        }
        Ok(refused(best))
    }

    /// Whether an app other than `app_id` of the accounts in `owners` opens `token`.
    async fn another_app_opens(
        &self,
        owners: &[(AccountId, Vec<u8>)],
        app_id: u32,
        token: &str,
    ) -> ServiceResult<bool> {
        for (account, _) in owners {
            for other in self.store.list_room_apps(*account).await? {
                if other.app_id == app_id {
                    continue;
                }
                let sealed = self.store.room_app_secret(*account, other.app_id).await?;
                let secret = self.open_secret(*account, other.app_id, &sealed)?;
                if room::decode(&secret, token).is_ok() {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}
