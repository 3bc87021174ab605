//! Importing existing keys (SPEC §15): NDJSON lines `{"name", "key"? | "sha256"?,
//! "scopes"?, "expires_at"?, "external_id"?}`, checked one by one and stored in
//! batches, each batch one transaction. A bad line is reported by its number and
//! never stops the others; a line is written whole or not at all.

use serde::Deserialize;
use tokengate_core::rules::validate_scope;
use tokengate_core::{AccountId, Digest, Timestamp, TokenId, TokenKind};

use super::{Actor, ServiceError, ServiceResult, Services, valid_name};
use crate::store::{ApiToken, ImportOutcome, ImportStore, ImportedKey, TokenFormat};
pub use tokengate_proto::imports::{ImportSummary, LineError};

/// Lines per transaction.
pub const BATCH: usize = 5000;
/// The longest line read; longer ones are reported and skipped.
pub const MAX_LINE: usize = 16 * 1024;

/// One line of an import.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportLine {
    name: String,
    key: Option<String>,
    sha256: Option<String>,
    scopes: Option<Vec<String>>,
    expires_at: Option<serde_json::Value>,
    external_id: Option<String>,
}

/// Reads an import's lines as they arrive and stores them in batches.
pub struct Importer<'a> {
    services: &'a Services,
    actor: &'a Actor,
    account: AccountId,
    now: Timestamp,
    pending: Vec<(u64, ImportedKey)>,
    /// The account's live tokens after the last batch stored.
    live: Option<u64>,
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
    /// Lines seen so far (the number of the last one).
    lines: u64,
    /// Set while the rest of a line longer than [`MAX_LINE`] is dropped as it comes.
    skipping: bool,
    summary: ImportSummary,
}

/// Past this many reported errors, only the count (`failed`) goes on.
const MAX_REPORTED_ERRORS: usize = 1000;

fn parse_expiry(value: &serde_json::Value) -> Option<Timestamp> {
    match value {
        serde_json::Value::String(s) => Timestamp::parse(s),
        serde_json::Value::Number(n) => n.as_i64().and_then(Timestamp::from_unix_secs),
        _ => None,
    }
}

/// Checks one line; the key to insert, or why not.
fn check_line(text: &str, account: AccountId, now: Timestamp) -> Result<ImportedKey, String> {
    let line: ImportLine = serde_json::from_str(text).map_err(|e| format!("not a valid import line: {e}"))?;
    let name = valid_name(&line.name, "name").map_err(|e| e.to_string())?;
    let digest = match (line.key, line.sha256) {
        (Some(key), None) => {
            let bytes = key.as_bytes();
            if tokengate_core::token::Prefix::of(bytes).is_some() {
                return Err("key has a tokengate prefix: tokengate's own tokens are not imported".into());
            }
            if !crate::state::importable(bytes) {
                return Err("key must be 8 to 512 visible ASCII characters".into());
            }
            Digest::of(bytes)
        }
        (None, Some(hex_digest)) => {
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(hex_digest.trim(), &mut bytes)
                .map_err(|_| "sha256 must be 64 hexadecimal characters".to_string())?;
            Digest(bytes)
        }
        _ => return Err("give exactly one of key and sha256".into()),
    };
    let scopes = line.scopes.unwrap_or_else(|| vec!["*".to_string()]);
    if scopes.is_empty() || scopes.len() > 100 {
        return Err("scopes must list 1 to 100 scopes".into());
    }
    for scope in &scopes {
        validate_scope(scope).map_err(|e| e.to_string())?;
    }
    let expires_at = match &line.expires_at {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(parse_expiry(v).ok_or("expires_at must be RFC 3339 or unix seconds")?),
    };
    if expires_at.is_some_and(|at| at <= now) {
        return Err("expires_at is in the past".into());
    }
    if line.external_id.as_ref().is_some_and(|id| id.len() > 200 || id.chars().any(char::is_control)) {
        return Err("external_id must be at most 200 characters without control characters".into());
    }
    let token = ApiToken {
        id: TokenId::new(),
        account_id: account,
        kind: TokenKind::ApiKey,
        member_id: None,
        name,
        scopes,
        expires_at,
        ip_allowlist: Vec::new(),
        rate_limit: None,
        instance_ids: Vec::new(),
        created_at: now,
        revoked_at: None,
        last_used_at: None,
        format: TokenFormat::Imported,
        external_id: line.external_id.clone(),
        leaked_at: None,
    };
    Ok(ImportedKey { token, digest, external_id: line.external_id })
}

impl<'a> Importer<'a> {
    pub async fn start(services: &'a Services, actor: &'a Actor, account: AccountId) -> ServiceResult<Importer<'a>> {
        services.account(account).await?;
        Ok(Importer {
            services,
            actor,
            account,
            now: Timestamp::now(),
            pending: Vec::with_capacity(BATCH),
            live: None,
            partial: Vec::new(),
            lines: 0,
            skipping: false,
            summary: ImportSummary::default(),
        })
    }

    fn error(&mut self, line: u64, error: String) {
        self.summary.failed += 1;
        if self.summary.errors.len() < MAX_REPORTED_ERRORS {
            self.summary.errors.push(LineError { line, error });
        }
    }

    /// The next bytes of the body: every line they complete is checked (and a batch
    /// stored when one is full).
    pub async fn feed(&mut self, mut bytes: &[u8]) -> ServiceResult<()> {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            let (head, rest) = bytes.split_at(end);
            bytes = rest.get(1..).unwrap_or_default();
            if self.skipping || self.partial.len() + head.len() > MAX_LINE {
                self.partial.clear();
                self.skipping = false;
                self.lines += 1;
                self.error(self.lines, format!("line longer than {MAX_LINE} bytes"));
                continue;
            }
            let line = if self.partial.is_empty() {
                head.to_vec()
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(head);
                line
            };
            self.line(&line).await?;
        }
        if !self.skipping {
            self.partial.extend_from_slice(bytes);
            if self.partial.len() > MAX_LINE {
                self.partial.clear();
                self.skipping = true;
            }
        }
        Ok(())
    }

    /// The end of the body: its last line (when it has no newline) and the last batch.
    pub async fn end(mut self) -> ServiceResult<ImportSummary> {
        if self.skipping || !self.partial.is_empty() {
            self.feed(b"\n").await?;
        }
        self.flush().await?;
        Ok(self.summary)
    }

    /// One whole line, numbered from 1; blank lines count but are skipped.
    async fn line(&mut self, line: &[u8]) -> ServiceResult<()> {
        self.lines += 1;
        let number = self.lines;
        let Ok(text) = std::str::from_utf8(line) else {
            self.error(number, "the line is not UTF-8".into());
            return Ok(());
        };
        let text = text.trim_end_matches('\r');
        if text.trim().is_empty() {
            return Ok(());
        }
        match check_line(text, self.account, self.now) {
            Ok(key) => self.pending.push((number, key)),
            Err(e) => self.error(number, e),
        }
        if self.pending.len() >= BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    /// Stores what is pending. A store failure ends the import (what was stored stays).
    async fn flush(&mut self) -> ServiceResult<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending);
        let keys: Vec<ImportedKey> = batch.iter().map(|(_, k)| k.clone()).collect();
        let mut audit = self.actor.audit(Some(self.account), "tokens.imported", self.account);
        audit.detail = Some(serde_json::json!({ "lines": keys.len() }));
        let max = self.services.config.max_tokens_per_account;
        match self.services.store.import_tokens(self.account, &keys, &audit, max, self.live).await {
            Ok((outcomes, live)) => {
                self.live = Some(live);
                for ((line, _), outcome) in batch.into_iter().zip(&outcomes) {
                    match outcome {
                        ImportOutcome::Inserted => self.summary.imported += 1,
                        ImportOutcome::Known => self.summary.skipped += 1,
                        ImportOutcome::OverQuota => {
                            self.error(line, "this account has reached its quota of live tokens".to_string())
                        }
                    }
                }
                // This node has them in hand; the others load them on the batch's notice.
                let stored = keys
                    .into_iter()
                    .zip(&outcomes)
                    .filter(|(_, o)| **o == ImportOutcome::Inserted)
                    .map(|(k, _)| (k.token, k.digest));
                self.services.state.load_tokens(stored);
            }
            Err(e) => return Err(ServiceError::from(e)),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_checked_whole() {
        let account = AccountId::new();
        let now = Timestamp::now();
        let ok = check_line(
            r#"{"name":"k","key":"kong-abcdef-123","scopes":["messages:send"],"external_id":"c1"}"#,
            account,
            now,
        )
        .unwrap();
        assert_eq!(ok.digest, Digest::of(b"kong-abcdef-123"));
        assert_eq!(ok.token.scopes, ["messages:send"]);
        assert_eq!(ok.token.format, TokenFormat::Imported);
        let hashed = check_line(&format!(r#"{{"name":"h","sha256":"{}"}}"#, "ab".repeat(32)), account, now).unwrap();
        assert_eq!(hashed.digest.0, [0xab; 32]);
        assert_eq!(hashed.token.scopes, ["*"]);
        let in_a_year = now.as_millis() / 1000 + 365 * 86_400;
        let unix =
            check_line(&format!(r#"{{"name":"u","key":"abcdefgh1","expires_at":{in_a_year}}}"#), account, now).unwrap();
        assert_eq!(unix.token.expires_at, Some(Timestamp::from_millis(in_a_year * 1000)));
        for bad in [
            r#"{"name":"x"}"#,
            r#"{"name":"x","key":"abcdefgh","sha256":"00"}"#,
            r#"{"name":"x","key":"short"}"#,
            r#"{"name":"x","key":"with space inside"}"#,
            r#"{"name":"x","sha256":"xyz"}"#,
            r#"{"name":"x","key":"abcdefgh","expires_at":"yesterday"}"#,
            r#"{"name":"x","key":"abcdefgh","expires_at":1}"#,
            r#"{"name":"x","key":"abcdefgh","scopes":[]}"#,
            r#"{"name":"x","key":"abcdefgh","extra":1}"#,
            r#"{"name":"x","key":"tgk_abcdefghijklmnopqrstuvwxyz0123456789AB"}"#,
            "not json",
        ] {
            assert!(check_line(bad, account, now).is_err(), "{bad}");
        }
    }
}
