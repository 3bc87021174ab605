//! Configuration, in layers: built-in defaults, then a TOML file (`--config` or
//! `TOKENGATE_CONFIG`), then `TOKENGATE_*` environment variables, then command-line flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory of the embedded SQLite store and the generated admin token file.
    pub data_dir: PathBuf,
    /// `postgres://…` to share one PostgreSQL store between gateway nodes; unset = SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// Address the gateway, admin API and metrics listen on.
    pub listen: SocketAddr,
    /// The URL clients reach this server at (used in generated links and OAuth metadata).
    pub public_url: Option<String>,
    pub log_format: LogFormat,
    /// A tracing filter such as `info` or `tokengate=debug,info`.
    pub log_level: String,
    /// Time allowed for an upstream to send its response headers (then 504).
    pub upstream_timeout_seconds: u64,
    /// Largest request body the gateway forwards (then 413).
    pub max_body_bytes: u64,
    /// Largest total size of a request's header names and values (then 431).
    pub max_header_bytes: usize,
    /// Proxies (CIDRs) whose `X-Forwarded-For` is believed for the client address.
    pub trusted_proxies: Vec<String>,
    /// How far back the Client-Token readiness counts look.
    pub readiness_window_seconds: u64,
    /// How often usage and readiness counts are written to the store.
    pub usage_flush_millis: u64,
    /// How long a shutdown waits for in-flight requests.
    pub shutdown_grace_seconds: u64,
    /// Full reload of the gateway's in-memory state from the store, as a safety net
    /// beside change notices.
    pub resync_interval_seconds: u64,
    /// 64 hex characters sealing stored secrets; unset = `DATA_DIR/master-key`. Never
    /// printed (it is left out when serialized).
    #[serde(skip_serializing)]
    pub master_key: Option<secrecy::SecretString>,
    /// Lifetime of the JWT access tokens `/oauth/token` issues (at most 24 h).
    pub access_token_lifetime_seconds: u64,
    /// How often trusted issuers' JWKS are fetched again (besides on an unknown `kid`).
    pub jwks_refresh_seconds: u64,
    /// Least time between two JWKS fetches caused by tokens naming an unknown `kid`.
    pub jwks_kid_refresh_seconds: u64,
    /// Mark dashboard cookies `Secure` (always so when `public_url` is https), for a
    /// TLS-terminating proxy in front of a plain-http `public_url`.
    pub cookie_secure: bool,
    /// CIDRs tokengate never connects to for a tenant (upstreams, JWKS, webhooks).
    pub egress_deny: Vec<String>,
    /// CIDRs allowed even when `egress_deny` lists them.
    pub egress_allow: Vec<String>,
    /// Time a client has to send a request's headers.
    pub header_read_timeout_seconds: u64,
    /// A request body that makes no progress for this long is ended (408) and its
    /// connection closed.
    pub body_read_timeout_seconds: u64,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout_seconds: u64,
    /// Open client connections past which new ones are closed at once.
    pub max_connections: usize,
    /// Live API keys and personal tokens an account may hold (each lives in every
    /// node's memory).
    pub max_tokens_per_account: u64,
    pub max_instances_per_account: u64,
    pub max_oauth_clients_per_account: u64,
    /// Accept loops, each a single-threaded runtime on its own thread with its own
    /// listener and upstream pool; unset = the CPUs the process may use.
    pub workers: Option<usize>,
    /// Usage counts older than this are deleted.
    pub usage_retention_days: u64,
    /// How often expired dashboard sessions, old usage rows and stale login throttles
    /// are pruned.
    pub housekeeping_interval_seconds: u64,
    /// PEM certificate chain: with `tls_key`, the listener speaks TLS 1.2/1.3 itself
    /// (both files re-read on SIGHUP).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// PEM certificates trusted for `https://` upstreams besides the Web PKI roots (an
    /// internal CA); read at start-up.
    pub upstream_ca_file: Option<PathBuf>,
    /// Carry plain HTTP/1.1 gateway requests on the lean lane (see `gateway::lane`);
    /// off: hyper serves every request.
    pub plain_lane: bool,
    /// Where GitHub publishes its secret-scanning signing keys (`POST /v1/leaks/github`).
    pub leak_github_keys_url: String,
    /// Seconds between a failed webhook delivery and the next attempt, one entry per
    /// retry; after the last, the event is given up (and stays in the delivery log).
    pub webhook_retry_seconds: Vec<u64>,
    /// Usage rows kept in memory while the store does not take them (one per account or
    /// token, minute, outcome and reason); requests past it are counted in
    /// `tokengate_usage_dropped_total` instead.
    pub usage_buffer_rows: usize,
    /// How often tokens expiring within 7 days are looked for (`token.expiring`).
    pub webhook_expiring_check_seconds: u64,
    /// How often a node on PostgreSQL reconciles its rate-limit grants with the others.
    pub rate_limit_sync_millis: u64,
    /// An admin request (JSON API or dashboard) still waiting after this long — the
    /// store unreachable or stalled — answers `503 store_unavailable`.
    pub store_timeout_millis: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./tokengate-data"),
            database_url: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            log_format: LogFormat::Text,
            log_level: "info".into(),
            upstream_timeout_seconds: 30,
            max_body_bytes: 32 * 1024 * 1024,
            max_header_bytes: 16 * 1024,
            trusted_proxies: Vec::new(),
            readiness_window_seconds: 24 * 3600,
            usage_flush_millis: 1000,
            shutdown_grace_seconds: 30,
            resync_interval_seconds: 300,
            master_key: None,
            access_token_lifetime_seconds: 15 * 60,
            jwks_refresh_seconds: 600,
            jwks_kid_refresh_seconds: 30,
            cookie_secure: false,
            egress_deny: crate::egress::DEFAULT_DENY.iter().map(|s| s.to_string()).collect(),
            egress_allow: Vec::new(),
            header_read_timeout_seconds: 30,
            body_read_timeout_seconds: 30,
            idle_timeout_seconds: 60,
            max_connections: 10_000,
            max_tokens_per_account: 10_000,
            max_instances_per_account: 1_000,
            max_oauth_clients_per_account: 100,
            workers: None,
            usage_retention_days: 90,
            housekeeping_interval_seconds: 3600,
            tls_cert: None,
            tls_key: None,
            upstream_ca_file: None,
            plain_lane: true,
            leak_github_keys_url: "https://api.github.com/meta/public_keys/secret_scanning".into(),
            webhook_retry_seconds: vec![5, 300, 1800, 7200, 18000],
            usage_buffer_rows: crate::usage::DEFAULT_MAX_ROWS,
            webhook_expiring_check_seconds: 60,
            rate_limit_sync_millis: 100,
            store_timeout_millis: 1000,
        }
    }
}

/// The keys read from `TOKENGATE_*` (so that `TOKENGATE_URL`, used by the CLI, or any
/// other variable with the prefix is not mistaken for a server setting).
const ENV_KEYS: &[&str] = &[
    "data_dir",
    "database_url",
    "listen",
    "public_url",
    "log_format",
    "log_level",
    "upstream_timeout_seconds",
    "max_body_bytes",
    "max_header_bytes",
    "trusted_proxies",
    "readiness_window_seconds",
    "usage_flush_millis",
    "shutdown_grace_seconds",
    "resync_interval_seconds",
    "master_key",
    "access_token_lifetime_seconds",
    "jwks_refresh_seconds",
    "jwks_kid_refresh_seconds",
    "cookie_secure",
    "egress_deny",
    "egress_allow",
    "header_read_timeout_seconds",
    "body_read_timeout_seconds",
    "idle_timeout_seconds",
    "max_connections",
    "max_tokens_per_account",
    "max_instances_per_account",
    "max_oauth_clients_per_account",
    "usage_retention_days",
    "housekeeping_interval_seconds",
    "workers",
    "tls_cert",
    "tls_key",
    "upstream_ca_file",
    "plain_lane",
    "leak_github_keys_url",
    "webhook_retry_seconds",
    "usage_buffer_rows",
    "webhook_expiring_check_seconds",
    "rate_limit_sync_millis",
    "store_timeout_millis",
];

/// The settings whose values are text: read from the environment exactly as written
/// (figment's environment parser would read `TOKENGATE_DATA_DIR=2024`, or an all-digit
/// master key, as a number).
const STRING_ENV_KEYS: &[&str] = &[
    "data_dir",
    "database_url",
    "public_url",
    "log_level",
    "master_key",
    "tls_cert",
    "tls_key",
    "upstream_ca_file",
    "leak_github_keys_url",
];

/// List settings: from the environment either a TOML array (`["10.0.0.0/8"]`) or a
/// plain comma-separated list (`10.0.0.0/8, 192.168.0.0/16`).
const LIST_ENV_KEYS: &[&str] = &["trusted_proxies", "egress_deny", "egress_allow", "webhook_retry_seconds"];

/// A list setting's environment value as figment should read it.
fn env_list(value: &str) -> figment::value::Value {
    use figment::value::Value;
    let items = value.split(',').map(str::trim).filter(|item| !item.is_empty());
    let items = items.map(|item| match item.parse::<u64>() {
        Ok(n) => Value::from(n),
        Err(_) => Value::from(item.to_string()),
    });
    Value::from(items.collect::<Vec<_>>())
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Builds the effective configuration; `flags` holds only what was given on the
    /// command line (unset fields are skipped when serialized).
    pub fn load<F: Serialize>(file: Option<&std::path::Path>, flags: &F) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError(format!("config file {} does not exist", file.display())));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        let typed: Vec<&str> = ENV_KEYS.iter().copied().filter(|k| !STRING_ENV_KEYS.contains(k)).collect();
        figment = figment.merge(Env::prefixed("TOKENGATE_").only(&typed));
        for key in LIST_ENV_KEYS {
            if let Ok(value) = std::env::var(format!("TOKENGATE_{}", key.to_ascii_uppercase()))
                && !value.trim_start().starts_with('[')
            {
                figment = figment.merge((*key, env_list(&value)));
            }
        }
        for key in STRING_ENV_KEYS {
            if let Ok(value) = std::env::var(format!("TOKENGATE_{}", key.to_ascii_uppercase())) {
                figment = figment.merge((*key, value));
            }
        }
        figment = figment.merge(Serialized::defaults(flags));
        let config: Config = figment.extract().map_err(|e| ConfigError(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// The configuration a TOML text gives over the defaults, validated (no environment,
    /// no flags): what `--config` files go through, for tests and fuzzing.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(text))
            .extract()
            .map_err(|e| ConfigError(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// The OAuth issuer identifier: `public_url`, or this server's own address.
    pub fn issuer(&self, bound: SocketAddr) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None if self.tls_cert.is_some() => format!("https://{bound}"),
            None => format!("http://{bound}"),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError("tls_cert and tls_key go together: set both or neither".into()));
        }
        if !(1..=24 * 3600).contains(&self.access_token_lifetime_seconds) {
            return Err(ConfigError("access_token_lifetime_seconds must be 1 to 86400".into()));
        }
        tokengate_core::IpAllowlist::parse(&self.trusted_proxies)
            .map_err(|e| ConfigError(format!("trusted_proxies: {e}")))?;
        if let Some(url) = &self.database_url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://") || url.starts_with("sqlite:"))
        {
            return Err(ConfigError("database_url must be a postgres:// (or sqlite:) URL".into()));
        }
        if self.usage_flush_millis == 0 || self.upstream_timeout_seconds == 0 {
            return Err(ConfigError("usage_flush_millis and upstream_timeout_seconds must be at least 1".into()));
        }
        crate::egress::EgressPolicy::new(&self.egress_deny, &self.egress_allow)
            .map_err(|e| ConfigError(format!("egress_deny / egress_allow: {e}")))?;
        for (name, value) in [
            ("header_read_timeout_seconds", self.header_read_timeout_seconds),
            ("body_read_timeout_seconds", self.body_read_timeout_seconds),
            ("idle_timeout_seconds", self.idle_timeout_seconds),
        ] {
            if !(1..=24 * 3600).contains(&value) {
                return Err(ConfigError(format!("{name} must be 1 to 86400")));
            }
        }
        if self.usage_retention_days == 0 || self.housekeeping_interval_seconds == 0 {
            return Err(ConfigError(
                "usage_retention_days and housekeeping_interval_seconds must be at least 1".into(),
            ));
        }
        if self.workers.is_some_and(|w| !(1..=256).contains(&w)) {
            return Err(ConfigError("workers must be 1 to 256".into()));
        }
        if self.max_connections == 0 {
            return Err(ConfigError("max_connections must be at least 1".into()));
        }
        Ok(())
    }

    /// The number of workers: `workers`, or the CPUs this process may use.
    pub fn effective_workers(&self) -> usize {
        self.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from)).max(1)
    }

    /// The egress policy (validated at load, so never an error here).
    pub fn egress_policy(&self) -> crate::egress::EgressPolicy {
        crate::egress::EgressPolicy::new(&self.egress_deny, &self.egress_allow).unwrap_or_default()
    }

    /// The configuration as TOML with secrets (a database password) redacted.
    pub fn redacted_toml(&self) -> String {
        let mut shown = self.clone();
        shown.database_url = self.database_url.as_deref().map(redact_url);
        let mut text = toml::to_string_pretty(&shown).unwrap_or_default();
        if self.master_key.is_some() {
            text.push_str("master_key = \"REDACTED\"\n");
        }
        text
    }
}

/// Replaces the password of a URL, if any, by `REDACTED`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("REDACTED"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(unparseable URL)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Default)]
    struct Flags {
        #[serde(skip_serializing_if = "Option::is_none")]
        listen: Option<SocketAddr>,
    }

    #[test]
    fn layers_apply_in_order_and_secrets_are_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokengate.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\nlog_level = \"debug\"\ndatabase_url = \"postgres://u:hunter2@db/tg\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&file), &Flags::default()).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.log_level, "debug");
        let c = Config::load(Some(&file), &Flags { listen: Some("127.0.0.1:9100".parse().unwrap()) }).unwrap();
        assert_eq!(c.listen.port(), 9100, "flags win over the file");
        let shown = c.redacted_toml();
        assert!(!shown.contains("hunter2"));
        assert!(shown.contains("REDACTED"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(&file, "lisen = \"127.0.0.1:9000\"\n").unwrap();
        assert!(Config::load(Some(&file), &Flags::default()).is_err());
        std::fs::write(&file, "trusted_proxies = [\"not-a-cidr\"]\n").unwrap();
        assert!(Config::load(Some(&file), &Flags::default()).is_err());
    }
}
