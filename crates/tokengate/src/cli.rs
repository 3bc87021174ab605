//! The command line: `init` and `serve` (SPEC §3), and operator commands that talk to
//! a running server's admin API through [`crate::client::AdminClient`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::client::{AdminClient, ApiToken, SecurityToken};
use crate::config::{Config, LogFormat};

#[derive(Parser)]
#[command(name = "tokengate", version, about = "Self-hosted API-token gateway")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create the store and print the first admin token as JSON.
    Init(ServerArgs),
    /// Run the gateway, the admin API and the metrics endpoint.
    Serve(ServeArgs),
    /// Manage accounts.
    Accounts {
        #[command(subcommand)]
        command: AccountsCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// Manage instances.
    Instances {
        #[command(subcommand)]
        command: InstancesCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// Manage API keys and personal access tokens.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// Manage room apps (token04).
    RoomApps {
        #[command(subcommand)]
        command: RoomAppsCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// Issue and verify room tokens (token04).
    RoomTokens {
        #[command(subcommand)]
        command: RoomTokensCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// Manage OAuth clients (client-credentials grant).
    OauthClients {
        #[command(subcommand)]
        command: OAuthClientsCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// Rotate the key that signs JWT access tokens.
    SigningKeys {
        #[command(subcommand)]
        command: SigningKeysCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// Manage an account's trusted identity providers (SSO).
    TrustedIssuers {
        #[command(subcommand)]
        command: TrustedIssuersCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// Manage an account's security token (the Client-Token header).
    SecurityToken {
        #[command(subcommand)]
        command: SecurityTokenCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// Manage an account's members (dashboard users).
    Members {
        #[command(subcommand)]
        command: crate::admin_commands::MembersCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// Manage webhooks and see their deliveries.
    Webhooks {
        #[command(subcommand)]
        command: crate::admin_commands::WebhooksCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// An account's usage counts and audit log.
    Reports {
        #[command(subcommand)]
        command: crate::admin_commands::ReportsCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// Report leaked tokens (read one per line from standard input).
    Leaks {
        #[command(subcommand)]
        command: crate::admin_commands::LeaksCommand,
        #[command(flatten)]
        remote: Remote,
    },
}

/// Where the store is. Flags override `TOKENGATE_*` variables, which override the file.
#[derive(Args, Serialize, Default)]
pub struct ServerArgs {
    /// TOML configuration file (also `TOKENGATE_CONFIG`).
    #[arg(long, env = "TOKENGATE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Directory of the embedded store [default: ./tokengate-data].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// postgres://user:pass@host/db to use PostgreSQL instead of the embedded store.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
}

#[derive(Args, Serialize, Default)]
pub struct ServeArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub server: ServerArgs,
    /// Listen address [default: 127.0.0.1:8080].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<std::net::SocketAddr>,
    /// Public URL of this server.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    /// Log filter, e.g. `info` or `tokengate=debug`.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    /// PEM certificate chain to serve TLS with (also `TOKENGATE_TLS_CERT`); re-read on SIGHUP.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the certificate (also `TOKENGATE_TLS_KEY`).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Print the effective configuration (secrets redacted) and exit.
    #[arg(long)]
    #[serde(skip)]
    pub print_config: bool,
}

impl ServerArgs {
    pub fn load(&self) -> anyhow::Result<Config> {
        Ok(Config::load(self.config.as_deref(), self)?)
    }
}

impl ServeArgs {
    pub fn load(&self) -> anyhow::Result<Config> {
        Ok(Config::load(self.server.config.as_deref(), self)?)
    }
}

/// How to reach a running server.
#[derive(Args)]
pub struct Remote {
    /// Base URL of the server.
    #[arg(long, global = true, env = "TOKENGATE_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Admin token (prefer the environment variable: flags show up in process lists).
    #[arg(long, global = true, env = "TOKENGATE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum AccountsCommand {
    /// Create an account.
    Create {
        #[arg(long)]
        name: String,
    },
    /// List accounts.
    List,
    /// Show one account.
    Show { id: String },
    /// Set the account's IP allowlist (no --cidr: turn it off).
    SetIpAllowlist {
        id: String,
        /// A CIDR (repeat for more).
        #[arg(long = "cidr")]
        cidrs: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum InstancesCommand {
    /// Create an instance; prints its token once.
    Create {
        #[arg(long)]
        account: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        upstream_url: String,
    },
    /// List an account's instances.
    List {
        #[arg(long)]
        account: String,
    },
    /// Show one instance.
    Show { id: String },
    /// Change an instance's name, upstream or route rules.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        upstream_url: Option<String>,
        /// A JSON file with the route rules (`[{"methods", "path", "scopes"}]`).
        #[arg(long)]
        rules_file: Option<PathBuf>,
    },
    /// Delete an instance (its token stops working at once).
    Delete { id: String },
}

#[derive(Subcommand)]
pub enum TokensCommand {
    /// Issue a token; prints it once.
    Create {
        #[arg(long)]
        account: String,
        #[arg(long)]
        name: String,
        /// `api-key` or `personal`.
        #[arg(long, value_enum, default_value = "api-key")]
        kind: KindArg,
        /// The member a personal token belongs to.
        #[arg(long)]
        member: Option<String>,
        /// A scope (repeat for more), e.g. `messages:send` or `messages:*`.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        #[arg(long)]
        expires_in_seconds: Option<u64>,
        /// A CIDR the token may be used from (repeat for more).
        #[arg(long = "allow-ip")]
        ip_allowlist: Vec<String>,
        /// Rate limit as LIMIT/WINDOW_SECONDS, e.g. 100/60.
        #[arg(long)]
        rate_limit: Option<String>,
        /// An instance the token is limited to (repeat for more).
        #[arg(long = "instance")]
        instance_ids: Vec<String>,
    },
    /// List an account's tokens (never their secrets).
    List {
        #[arg(long)]
        account: String,
    },
    /// Show one token.
    Show { id: String },
    /// A new token with the same settings; the old one works for the grace period.
    Rotate {
        id: String,
        #[arg(long, default_value_t = 0)]
        grace_seconds: u64,
    },
    /// Revoke at once.
    Revoke { id: String },
    /// Import existing keys (their text, or only their SHA-256) from another system's
    /// export; a progress bar on a terminal, plain counts otherwise.
    Import {
        #[arg(long)]
        account: String,
        /// `kong` (key-auth export, `GET /key-auths` JSON pages) or `csv`
        /// (`name,key,scopes,expires_at` or `name,sha256,scopes,expires_at`).
        #[arg(long, value_enum)]
        from: ImportFormat,
        /// Scopes for every key that does not name its own (repeat for more; default `*`).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// The export; `-` reads standard input.
        file: PathBuf,
    },
    /// Ask whether a token is valid (reads it from TOKENGATE_VERIFY_TOKEN or stdin, so it
    /// does not show up in the process list).
    Verify {
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
    /// A token's allowed and rejected requests over time.
    Usage {
        id: String,
        /// RFC 3339 time or Unix seconds (default: 24 hours ago).
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        bucket_seconds: Option<u64>,
    },
}

#[derive(Subcommand)]
pub enum OAuthClientsCommand {
    /// Create a client; its secret (`tgs_…`) is printed once.
    Create {
        #[arg(long)]
        account: String,
        #[arg(long)]
        name: String,
        /// A scope the client may ask for (repeat the flag for more).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
    },
    List {
        #[arg(long)]
        account: String,
    },
    /// Delete a client; its access tokens stop working at once.
    Delete {
        #[arg(long)]
        account: String,
        #[arg(long)]
        client_id: String,
    },
}

#[derive(Subcommand)]
pub enum SigningKeysCommand {
    /// Make a new key the signing key; the old one keeps verifying until its tokens expire.
    Rotate {
        /// EdDSA (default), ES256 or RS256.
        #[arg(long)]
        alg: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum TrustedIssuersCommand {
    Create {
        #[arg(long)]
        account: String,
        /// The exact `iss` of the IdP's tokens.
        #[arg(long)]
        issuer: String,
        /// The IdP's JWKS (https, or http on a loopback address).
        #[arg(long)]
        jwks_uri: String,
        /// The `aud` the tokens must carry.
        #[arg(long)]
        audience: String,
        /// The claim holding scopes [default: scope].
        #[arg(long)]
        scopes_claim: Option<String>,
    },
    List {
        #[arg(long)]
        account: String,
    },
    Delete {
        #[arg(long)]
        account: String,
        #[arg(long)]
        id: String,
    },
}

#[derive(Subcommand)]
pub enum RoomAppsCommand {
    /// Register an app; the 32-character server secret is read from
    /// TOKENGATE_ROOM_SECRET or stdin (never from the command line).
    Create {
        #[arg(long)]
        account: String,
        #[arg(long)]
        app_id: u32,
    },
    /// List an account's room apps (never their secrets).
    List {
        #[arg(long)]
        account: String,
    },
    /// Delete a room app: its room tokens stop verifying.
    Delete {
        #[arg(long)]
        account: String,
        #[arg(long)]
        app_id: u32,
    },
}

#[derive(Subcommand)]
pub enum RoomTokensCommand {
    /// Issue a room token.
    Issue {
        #[arg(long)]
        account: String,
        #[arg(long)]
        app_id: u32,
        #[arg(long)]
        user_id: String,
        /// Empty or absent: any room.
        #[arg(long)]
        room_id: Option<String>,
        #[arg(long)]
        login_room: bool,
        #[arg(long)]
        publish_stream: bool,
        #[arg(long, default_value_t = 3600)]
        ttl_seconds: u64,
        /// `gcm` (default) or `cbc` (legacy layout).
        #[arg(long, default_value = "gcm")]
        mode: String,
    },
    /// Verify a room token read from TOKENGATE_ROOM_TOKEN or stdin.
    Verify {
        #[arg(long)]
        app_id: u32,
        #[arg(long)]
        room_id: Option<String>,
        /// `login_room` or `publish_stream`.
        #[arg(long)]
        privilege: Option<String>,
    },
}

/// A secret from an environment variable, else the first line of stdin.
fn secret_input(var: &str) -> anyhow::Result<String> {
    if let Ok(v) = std::env::var(var) {
        return Ok(v.trim().to_string());
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim().to_string())
}

pub async fn room_apps(command: RoomAppsCommand, remote: Remote) -> anyhow::Result<()> {
    let client = remote.client()?;
    match command {
        RoomAppsCommand::Create { account, app_id } => {
            let secret = secret_input("TOKENGATE_ROOM_SECRET")?;
            let app = client.create_room_app(&account, app_id, &secret).await?;
            remote.print(&app, || format!("room app {app_id} created"))
        }
        RoomAppsCommand::List { account } => {
            let path = format!("/v1/accounts/{account}/room-apps");
            crate::admin_commands::show(&client, &remote, reqwest::Method::GET, &path, None).await
        }
        RoomAppsCommand::Delete { account, app_id } => {
            let path = format!("/v1/accounts/{account}/room-apps/{app_id}");
            crate::admin_commands::show(&client, &remote, reqwest::Method::DELETE, &path, None).await
        }
    }
}

/// A string field of an API answer, or empty.
fn field<'a>(value: &'a serde_json::Value, name: &str) -> &'a str {
    value.get(name).and_then(serde_json::Value::as_str).unwrap_or_default()
}

pub async fn oauth_clients(command: OAuthClientsCommand, remote: Remote) -> anyhow::Result<()> {
    let client = remote.client()?;
    match command {
        OAuthClientsCommand::Create { account, name, scopes } => {
            let created =
                client.create_oauth_client(&account, serde_json::json!({ "name": name, "scopes": scopes })).await?;
            remote.print(&created, || {
                format!(
                    "client_id {}\nclient_secret {} (shown once: store it now)",
                    field(&created, "client_id"),
                    field(&created, "client_secret")
                )
            })
        }
        OAuthClientsCommand::List { account } => {
            let clients = client.list_oauth_clients(&account).await?;
            remote.print(&clients, || {
                clients
                    .iter()
                    .map(|c| {
                        format!(
                            "{}  {}  {}",
                            field(c, "client_id"),
                            field(c, "name"),
                            c.get("scopes").unwrap_or(&serde_json::Value::Null)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        OAuthClientsCommand::Delete { account, client_id } => {
            client.delete_oauth_client(&account, &client_id).await?;
            remote.print(&serde_json::json!({ "deleted": client_id }), || format!("client {client_id} deleted"))
        }
    }
}

pub async fn signing_keys(command: SigningKeysCommand, remote: Remote) -> anyhow::Result<()> {
    let client = remote.client()?;
    match command {
        SigningKeysCommand::Rotate { alg } => {
            let key = client.rotate_signing_key(alg.as_deref()).await?;
            remote.print(&key, || format!("signing key {} ({})", field(&key, "kid"), field(&key, "alg")))
        }
    }
}

pub async fn trusted_issuers(command: TrustedIssuersCommand, remote: Remote) -> anyhow::Result<()> {
    let client = remote.client()?;
    match command {
        TrustedIssuersCommand::Create { account, issuer, jwks_uri, audience, scopes_claim } => {
            let body = serde_json::json!({
                "issuer": issuer, "jwks_uri": jwks_uri, "audience": audience, "scopes_claim": scopes_claim,
            });
            let created = client.create_trusted_issuer(&account, body).await?;
            remote.print(&created, || format!("trusted issuer {} created", field(&created, "id")))
        }
        TrustedIssuersCommand::List { account } => {
            let issuers = client.list_trusted_issuers(&account).await?;
            remote.print(&issuers, || {
                issuers
                    .iter()
                    .map(|i| format!("{}  {}  aud={}", field(i, "id"), field(i, "issuer"), field(i, "audience")))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        TrustedIssuersCommand::Delete { account, id } => {
            client.delete_trusted_issuer(&account, &id).await?;
            remote.print(&serde_json::json!({ "deleted": id }), || format!("trusted issuer {id} deleted"))
        }
    }
}

pub async fn room_tokens(command: RoomTokensCommand, remote: Remote) -> anyhow::Result<()> {
    let client = remote.client()?;
    match command {
        RoomTokensCommand::Issue {
            account,
            app_id,
            user_id,
            room_id,
            login_room,
            publish_stream,
            ttl_seconds,
            mode,
        } => {
            let body = serde_json::json!({
                "user_id": user_id, "room_id": room_id, "ttl_seconds": ttl_seconds, "mode": mode,
                "privileges": { "login_room": login_room, "publish_stream": publish_stream },
            });
            let issued = client.issue_room_token(&account, app_id, body).await?;
            remote.print(&issued, || {
                format!(
                    "{}\nexpires at {}",
                    issued.get("token").and_then(|v| v.as_str()).unwrap_or_default(),
                    issued.get("expires_at").and_then(|v| v.as_str()).unwrap_or_default()
                )
            })
        }
        RoomTokensCommand::Verify { app_id, room_id, privilege } => {
            let token = secret_input("TOKENGATE_ROOM_TOKEN")?;
            let body =
                serde_json::json!({ "app_id": app_id, "token": token, "room_id": room_id, "privilege": privilege });
            let v = client.verify_room_token(body).await?;
            let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
            remote.print(&v, || match field("reason") {
                Some(reason) => format!("invalid: {reason}"),
                None => format!("valid: user {}", field("user_id").unwrap_or_default()),
            })
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum KindArg {
    ApiKey,
    Personal,
}

#[derive(Subcommand)]
pub enum SecurityTokenCommand {
    /// "Configure now": a new token, disabled; prints it once.
    Generate {
        #[arg(long)]
        account: String,
    },
    /// Status and readiness.
    Status {
        #[arg(long)]
        account: String,
    },
    /// Enforce the token on every instance of the account.
    Activate {
        #[arg(long)]
        account: String,
    },
    /// Stop enforcing (requests pass and are counted for readiness).
    Deactivate {
        #[arg(long)]
        account: String,
    },
    /// A new token; the old one keeps working for the grace period.
    Rotate {
        #[arg(long)]
        account: String,
        #[arg(long, default_value_t = 0)]
        grace_seconds: u64,
    },
    /// Delete the account's security token (it is no longer required).
    Delete {
        #[arg(long)]
        account: String,
    },
}

impl Remote {
    pub(crate) fn client(&self) -> anyhow::Result<AdminClient> {
        let token = self.admin_token.clone().ok_or_else(|| {
            anyhow::anyhow!("an admin token is needed: set TOKENGATE_ADMIN_TOKEN or pass --admin-token")
        })?;
        Ok(AdminClient::new(&self.url, SecretString::from(token))?)
    }

    pub(crate) fn print<T: Serialize>(&self, value: &T, text: impl FnOnce() -> String) -> anyhow::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(value)?);
        } else {
            println!("{}", text());
        }
        Ok(())
    }
}

pub async fn accounts(command: AccountsCommand, remote: Remote) -> anyhow::Result<()> {
    let client = remote.client()?;
    match command {
        AccountsCommand::Create { name } => {
            let a = client.create_account(&name).await?;
            remote.print(&a, || format!("account {} created ({})", a.id, a.name))
        }
        AccountsCommand::List => {
            let list = client.list_accounts().await?;
            remote.print(&list, || list.iter().map(|a| format!("{}  {}", a.id, a.name)).collect::<Vec<_>>().join("\n"))
        }
        AccountsCommand::Show { id } => {
            crate::admin_commands::show(&client, &remote, reqwest::Method::GET, &format!("/v1/accounts/{id}"), None)
                .await
        }
        AccountsCommand::SetIpAllowlist { id, cidrs } => {
            let body = Some(serde_json::json!({ "cidrs": cidrs }));
            let path = format!("/v1/accounts/{id}/ip-allowlist");
            crate::admin_commands::show(&client, &remote, reqwest::Method::PUT, &path, body).await
        }
    }
}

pub async fn instances(command: InstancesCommand, remote: Remote) -> anyhow::Result<()> {
    let client = remote.client()?;
    match command {
        InstancesCommand::Create { account, name, upstream_url } => {
            let i = client.create_instance(&account, &name, &upstream_url).await?;
            remote.print(&i, || {
                format!(
                    "instance {} created ({} -> {})\ninstance token: {}\nStore it now: it will not be shown again.",
                    i.id,
                    i.name,
                    i.upstream_url,
                    i.token.as_deref().unwrap_or("")
                )
            })
        }
        InstancesCommand::List { account } => {
            let list = client.list_instances(&account).await?;
            remote.print(&list, || {
                list.iter().map(|i| format!("{}  {}  {}", i.id, i.name, i.upstream_url)).collect::<Vec<_>>().join("\n")
            })
        }
        InstancesCommand::Show { id } => {
            crate::admin_commands::show(&client, &remote, reqwest::Method::GET, &format!("/v1/instances/{id}"), None)
                .await
        }
        InstancesCommand::Update { id, name, upstream_url, rules_file } => {
            let mut patch = serde_json::Map::new();
            if let Some(n) = name {
                patch.insert("name".into(), n.into());
            }
            if let Some(u) = upstream_url {
                patch.insert("upstream_url".into(), u.into());
            }
            if let Some(file) = rules_file {
                let text = std::fs::read_to_string(&file)?;
                patch.insert("rules".into(), serde_json::from_str(&text)?);
            }
            let body = Some(serde_json::Value::Object(patch));
            crate::admin_commands::show(&client, &remote, reqwest::Method::PATCH, &format!("/v1/instances/{id}"), body)
                .await
        }
        InstancesCommand::Delete { id } => {
            crate::admin_commands::show(&client, &remote, reqwest::Method::DELETE, &format!("/v1/instances/{id}"), None)
                .await
        }
    }
}

fn describe_token(t: &ApiToken) -> String {
    let mut out = format!("{}  {}  {}  scopes: {}", t.id, t.kind, t.name, t.scopes.join(" "));
    for (label, value) in [("expires", &t.expires_at), ("last used", &t.last_used_at), ("revoked", &t.revoked_at)] {
        if let Some(v) = value {
            out.push_str(&format!("  {label}: {v}"));
        }
    }
    if let Some(secret) = &t.token {
        out.push_str(&format!("\ntoken: {secret}\nStore it now: it will not be shown again."));
    }
    out
}

/// The formats `tokens import` reads.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ImportFormat {
    Kong,
    Csv,
}

/// Lines sent per import request: memory stays bounded whatever the file's size.
const IMPORT_CHUNK: usize = 10_000;

async fn import_tokens(
    client: &crate::client::AdminClient,
    remote: &Remote,
    account: &str,
    from: ImportFormat,
    scopes: &[String],
    file: &std::path::Path,
) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let reader: Box<dyn std::io::Read + Send> = if file.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(anyhow::Context::with_context(std::fs::File::open(file), || format!("opening {}", file.display()))?)
    };
    let reader = std::io::BufReader::new(reader);
    let lines: Box<dyn Iterator<Item = crate::import_file::SourceLine>> = match from {
        ImportFormat::Kong => Box::new(crate::import_file::kong(reader, scopes)),
        ImportFormat::Csv => Box::new(crate::import_file::csv(reader).map_err(|e| anyhow::anyhow!(e))?),
    };
    let bar = if std::io::stderr().is_terminal() && !remote.json {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {pos} keys read, {msg} [{elapsed}]")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        Some(bar)
    } else {
        None
    };
    let (mut imported, mut skipped, mut errors) = (0u64, 0u64, Vec::<serde_json::Value>::new());
    let mut lines = lines.peekable();
    while lines.peek().is_some() {
        let chunk: Vec<_> = lines.by_ref().take(IMPORT_CHUNK).collect();
        // The server numbers the chunk's lines from 1; map them back to the source.
        let mut numbers: Vec<u64> = Vec::with_capacity(chunk.len());
        let mut body = String::new();
        for line in chunk {
            match line.json {
                Ok(text) => {
                    numbers.push(line.number);
                    body.push_str(&text);
                    body.push('\n');
                }
                Err(e) => errors.push(serde_json::json!({ "line": line.number, "error": e })),
            }
        }
        if numbers.is_empty() {
            continue;
        }
        let summary = client.import_tokens(account, body).await?;
        let count = |key: &str| summary.get(key).and_then(serde_json::Value::as_u64).unwrap_or(0);
        imported += count("imported");
        skipped += count("skipped");
        for e in summary.get("errors").and_then(serde_json::Value::as_array).into_iter().flatten() {
            let at: Option<u64> = e
                .get("line")
                .and_then(serde_json::Value::as_u64)
                .and_then(|n| numbers.get(usize::try_from(n).ok()?.checked_sub(1)?).copied());
            errors.push(serde_json::json!({ "line": at, "error": e.get("error") }));
        }
        if let Some(bar) = &bar {
            bar.inc(u64::try_from(numbers.len()).unwrap_or(0));
            bar.set_message(format!("{imported} imported, {skipped} already there, {} refused", errors.len()));
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let summary = serde_json::json!({ "imported": imported, "skipped": skipped, "errors": errors });
    remote.print(&summary, || {
        let mut out = format!("{imported} imported, {skipped} already there, {} refused", errors.len());
        for e in &errors {
            let field = |k: &str| e.get(k).cloned().unwrap_or_default();
            out.push_str(&format!("\nline {}: {}", field("line"), field("error").as_str().unwrap_or_default()));
        }
        out
    })
}

pub async fn tokens(command: TokensCommand, remote: Remote) -> anyhow::Result<()> {
    let client = remote.client()?;
    match command {
        TokensCommand::Import { account, from, scopes, file } => {
            import_tokens(&client, &remote, &account, from, &scopes, &file).await
        }
        TokensCommand::Create {
            account,
            name,
            kind,
            member,
            scopes,
            expires_in_seconds,
            ip_allowlist,
            rate_limit,
            instance_ids,
        } => {
            let rate_limit = match rate_limit {
                None => None,
                Some(spec) => {
                    let (limit, window) = spec
                        .split_once('/')
                        .and_then(|(l, w)| Some((l.parse::<u32>().ok()?, w.parse::<u32>().ok()?)))
                        .ok_or_else(|| anyhow::anyhow!("--rate-limit must look like 100/60 (requests/seconds)"))?;
                    Some(serde_json::json!({ "limit": limit, "window_seconds": window }))
                }
            };
            let body = serde_json::json!({
                "name": name,
                "kind": match kind { KindArg::ApiKey => "api_key", KindArg::Personal => "personal" },
                "member_id": member,
                "scopes": scopes,
                "expires_in_seconds": expires_in_seconds,
                "ip_allowlist": ip_allowlist,
                "rate_limit": rate_limit,
                "instance_ids": instance_ids,
            });
            let t = client.create_token(&account, body).await?;
            remote.print(&t, || describe_token(&t))
        }
        TokensCommand::List { account } => {
            let list = client.list_tokens(&account).await?;
            remote.print(&list, || list.iter().map(describe_token).collect::<Vec<_>>().join("\n"))
        }
        TokensCommand::Show { id } => {
            let t = client.token(&id).await?;
            remote.print(&t, || describe_token(&t))
        }
        TokensCommand::Rotate { id, grace_seconds } => {
            let t = client.rotate_token(&id, grace_seconds).await?;
            remote.print(&t, || describe_token(&t))
        }
        TokensCommand::Revoke { id } => {
            client.revoke_token(&id).await?;
            remote.print(&serde_json::json!({ "revoked": id }), || format!("token {id} revoked"))
        }
        TokensCommand::Usage { id, since, bucket_seconds } => {
            let path = crate::admin_commands::with_query(&format!("/v1/tokens/{id}/usage"), since, bucket_seconds);
            crate::admin_commands::show(&client, &remote, reqwest::Method::GET, &path, None).await
        }
        TokensCommand::Verify { scopes } => {
            let token = secret_input("TOKENGATE_VERIFY_TOKEN")?;
            let v = client.verify(&token, &scopes).await?;
            remote.print(&v, || match (&v.reason, &v.token_id) {
                (Some(reason), _) => format!("invalid: {reason}"),
                (None, Some(id)) => {
                    format!("valid: token {id}, scopes {}", v.scopes.clone().unwrap_or_default().join(" "))
                }
                (None, None) => "valid".to_string(),
            })
        }
    }
}

fn describe(t: &SecurityToken) -> String {
    let mut out = format!("status: {}", t.status);
    if let Some(token) = &t.token {
        out.push_str(&format!("\nClient-Token: {token}\nStore it now: it will not be shown again."));
    }
    if let Some(until) = &t.previous_valid_until {
        out.push_str(&format!("\nprevious token valid until: {until}"));
    }
    if let Some(r) = &t.readiness {
        out.push_str(&format!(
            "\nreadiness (last {}s): {} with the valid token, {} missing, {} invalid{}",
            r.window_seconds,
            r.with_valid_token,
            r.missing,
            r.invalid,
            if r.safe_to_activate { " - safe to activate" } else { "" }
        ));
    }
    out
}

pub async fn security_token(command: SecurityTokenCommand, remote: Remote) -> anyhow::Result<()> {
    let client = remote.client()?;
    let result = match command {
        SecurityTokenCommand::Delete { account } => {
            let path = format!("/v1/accounts/{account}/security-token");
            return crate::admin_commands::show(&client, &remote, reqwest::Method::DELETE, &path, None).await;
        }
        SecurityTokenCommand::Generate { account } => client.generate_security_token(&account).await?,
        SecurityTokenCommand::Status { account } => client.security_token(&account).await?,
        SecurityTokenCommand::Activate { account } => client.activate_security_token(&account).await?,
        SecurityTokenCommand::Deactivate { account } => client.deactivate_security_token(&account).await?,
        SecurityTokenCommand::Rotate { account, grace_seconds } => {
            client.rotate_security_token(&account, grace_seconds).await?
        }
    };
    remote.print(&result, || describe(&result))
}

/// `tokengate init`: prints `{"admin_token": …}`; fails on an initialized store.
pub async fn init(args: ServerArgs) -> anyhow::Result<()> {
    let config = args.load()?;
    let store = crate::server::open_store(&config).await?;
    let created = crate::server::initialize(&store).await?;
    store.close().await;
    match created {
        Some(secret) => {
            println!("{}", serde_json::json!({ "admin_token": secret.expose_secret() }));
            Ok(())
        }
        None => anyhow::bail!("the store is already initialized; the admin token is not shown again"),
    }
}
