//! The command line: `init` and `serve` (SPEC §3), and operator commands that talk to
//! a running server's admin API through [`crate::client::AdminClient`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::config::{Config, LogFormat};
use tokengate_client::AdminClient;
use tokengate_proto::model::ApiToken;
use tokengate_proto::{accounts, instances, oauth, rooms, security_token, tokens};

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
    /// Print a shell completion script (e.g. `tokengate completions bash >
    /// /etc/bash_completion.d/tokengate`).
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
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
    /// Log format: text or json.
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
        /// A name for people (1 to 200 characters).
        #[arg(long)]
        name: String,
    },
    /// List accounts.
    List,
    /// Show one account.
    Show {
        /// The id of the object.
        id: String,
    },
    /// Set the account's IP allowlist (no --cidr: turn it off).
    SetIpAllowlist {
        /// The id of the object.
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
        /// The account's id.
        #[arg(long)]
        account: String,
        /// A name for people (1 to 200 characters).
        #[arg(long)]
        name: String,
        /// The API this instance forwards to (http:// or https://).
        #[arg(long)]
        upstream_url: String,
    },
    /// List an account's instances.
    List {
        /// The account's id.
        #[arg(long)]
        account: String,
    },
    /// Show one instance.
    Show {
        /// The id of the object.
        id: String,
    },
    /// Change an instance's name, upstream or route rules.
    Update {
        /// The id of the object.
        id: String,
        /// A name for people (1 to 200 characters).
        #[arg(long)]
        name: Option<String>,
        /// The API this instance forwards to (http:// or https://).
        #[arg(long)]
        upstream_url: Option<String>,
        /// A JSON file with the route rules (`[{"methods", "path", "scopes"}]`).
        #[arg(long)]
        rules_file: Option<PathBuf>,
    },
    /// Delete an instance (its token stops working at once).
    Delete {
        /// The id of the object.
        id: String,
    },
}

#[derive(Subcommand)]
pub enum TokensCommand {
    /// Issue a token; prints it once.
    Create {
        /// The account's id.
        #[arg(long)]
        account: String,
        /// A name for people (1 to 200 characters).
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
        /// Lifetime in seconds (no expiry when left out).
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
        /// The account's id.
        #[arg(long)]
        account: String,
    },
    /// Show one token.
    Show {
        /// The id of the object.
        id: String,
    },
    /// A new token with the same settings; the old one works for the grace period.
    Rotate {
        /// The id of the object.
        id: String,
        /// How long the previous secret keeps working, in seconds.
        #[arg(long, default_value_t = 0)]
        grace_seconds: u64,
    },
    /// Revoke at once.
    Revoke {
        /// The id of the object.
        id: String,
    },
    /// Import existing keys (their text, or only their SHA-256) from another system's
    /// export; a progress bar on a terminal, plain counts otherwise.
    Import {
        /// The account's id.
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
        /// Scopes to require (repeat the flag for several).
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
    /// A token's allowed and rejected requests over time.
    Usage {
        /// The id of the object.
        id: String,
        /// RFC 3339 time or Unix seconds (default: 24 hours ago).
        #[arg(long)]
        since: Option<String>,
        /// Width of each usage bucket, in seconds (60 to 86400).
        #[arg(long)]
        bucket_seconds: Option<u64>,
    },
}

#[derive(Subcommand)]
pub enum OAuthClientsCommand {
    /// Create a client; its secret (`tgs_…`) is printed once.
    Create {
        /// The account's id.
        #[arg(long)]
        account: String,
        /// A name for people (1 to 200 characters).
        #[arg(long)]
        name: String,
        /// A scope the client may ask for (repeat the flag for more).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
    },
    /// List them.
    List {
        /// The account's id.
        #[arg(long)]
        account: String,
    },
    /// Delete a client; its access tokens stop working at once.
    Delete {
        /// The account's id.
        #[arg(long)]
        account: String,
        /// The OAuth client's id.
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
    /// Create one.
    Create {
        /// The account's id.
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
    /// List them.
    List {
        /// The account's id.
        #[arg(long)]
        account: String,
    },
    /// Delete one.
    Delete {
        /// The account's id.
        #[arg(long)]
        account: String,
        /// The id of the object.
        #[arg(long)]
        id: String,
    },
}

#[derive(Subcommand)]
pub enum RoomAppsCommand {
    /// Register an app; the 32-character server secret is read from
    /// TOKENGATE_ROOM_SECRET or stdin (never from the command line).
    Create {
        /// The account's id.
        #[arg(long)]
        account: String,
        /// The room app's numeric id.
        #[arg(long)]
        app_id: u32,
    },
    /// List an account's room apps (never their secrets).
    List {
        /// The account's id.
        #[arg(long)]
        account: String,
    },
    /// Delete a room app: its room tokens stop verifying.
    Delete {
        /// The account's id.
        #[arg(long)]
        account: String,
        /// The room app's numeric id.
        #[arg(long)]
        app_id: u32,
    },
}

#[derive(Subcommand)]
pub enum RoomTokensCommand {
    /// Issue a room token.
    Issue {
        /// The account's id.
        #[arg(long)]
        account: String,
        /// The room app's numeric id.
        #[arg(long)]
        app_id: u32,
        /// The user the room token is for.
        #[arg(long)]
        user_id: String,
        /// Empty or absent: any room.
        #[arg(long)]
        room_id: Option<String>,
        /// Grant the login-room privilege.
        #[arg(long)]
        login_room: bool,
        /// Grant the publish-stream privilege.
        #[arg(long)]
        publish_stream: bool,
        /// Lifetime of the room token, in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl_seconds: u64,
        /// `gcm` (default) or `cbc` (legacy layout).
        #[arg(long, default_value = "gcm")]
        mode: String,
    },
    /// Verify a room token read from TOKENGATE_ROOM_TOKEN or stdin.
    Verify {
        /// The room app's numeric id.
        #[arg(long)]
        app_id: u32,
        /// The room the token must be for (any room when left out).
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
            let body =
                rooms::NewRoomApp { app_id: u64::from(app_id), server_secret: tokengate_proto::Secret::new(secret) };
            let app = client.create_room_app(&account, &body).await?;
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

/// A command-line word read as the API's enum of that name (`gcm`, `login_room`…).
fn word<T: serde::de::DeserializeOwned>(value: &str, flag: &str) -> anyhow::Result<T> {
    serde_json::from_value(serde_json::Value::String(value.to_string()))
        .map_err(|_| anyhow::anyhow!("{flag}: {value:?} is not one of the accepted values"))
}

/// An id given on the command line.
fn id<T: std::str::FromStr>(value: &str, what: &str) -> anyhow::Result<T> {
    value.parse().map_err(|_| anyhow::anyhow!("{value:?} is not a valid {what} id"))
}

pub async fn oauth_clients(command: OAuthClientsCommand, remote: Remote) -> anyhow::Result<()> {
    let client = remote.client()?;
    match command {
        OAuthClientsCommand::Create { account, name, scopes } => {
            let created = client.create_oauth_client(&account, &oauth::NewOAuthClient { name, scopes }).await?;
            remote.print(&created, || {
                format!(
                    "client_id {}\nclient_secret {} (shown once: store it now)",
                    created.client_id, created.client_secret
                )
            })
        }
        OAuthClientsCommand::List { account } => {
            let clients = client.list_oauth_clients(&account).await?;
            remote.print(&clients, || {
                clients
                    .iter()
                    .map(|c| format!("{}  {}  {}", c.client_id, c.name, c.scopes.join(" ")))
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
            remote.print(&key, || format!("signing key {} ({})", key.kid, key.alg))
        }
    }
}

pub async fn trusted_issuers(command: TrustedIssuersCommand, remote: Remote) -> anyhow::Result<()> {
    let client = remote.client()?;
    match command {
        TrustedIssuersCommand::Create { account, issuer, jwks_uri, audience, scopes_claim } => {
            let body = oauth::NewTrustedIssuer { issuer, jwks_uri, audience, scopes_claim };
            let created = client.create_trusted_issuer(&account, &body).await?;
            remote.print(&created, || format!("trusted issuer {} created", created.id))
        }
        TrustedIssuersCommand::List { account } => {
            let issuers = client.list_trusted_issuers(&account).await?;
            remote.print(&issuers, || {
                issuers
                    .iter()
                    .map(|i| format!("{}  {}  aud={}", i.id, i.issuer, i.audience))
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
            let body = rooms::IssueRoomToken {
                user_id,
                room_id,
                privileges: rooms::Privileges { login_room, publish_stream },
                ttl_seconds,
                mode: Some(word(&mode, "--mode")?),
            };
            let issued = client.issue_room_token(&account, app_id, &body).await?;
            remote.print(&issued, || format!("{}\nexpires at {}", issued.token, issued.expires_at.to_rfc3339()))
        }
        RoomTokensCommand::Verify { app_id, room_id, privilege } => {
            let token = secret_input("TOKENGATE_ROOM_TOKEN")?;
            let privilege = privilege.map(|p| word(&p, "--privilege")).transpose()?;
            let body = rooms::VerifyRoomToken { app_id, token, room_id, privilege };
            let v = client.verify_room_token(&body).await?;
            remote.print(&v, || match &v.reason {
                Some(reason) => format!("invalid: {reason}"),
                None => format!("valid: user {}", v.user_id.as_deref().unwrap_or_default()),
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
        /// The account's id.
        #[arg(long)]
        account: String,
    },
    /// Status and readiness.
    Status {
        /// The account's id.
        #[arg(long)]
        account: String,
    },
    /// Enforce the token on every instance of the account.
    Activate {
        /// The account's id.
        #[arg(long)]
        account: String,
    },
    /// Stop enforcing (requests pass and are counted for readiness).
    Deactivate {
        /// The account's id.
        #[arg(long)]
        account: String,
    },
    /// A new token; the old one keeps working for the grace period.
    Rotate {
        /// The account's id.
        #[arg(long)]
        account: String,
        /// How long the previous secret keeps working, in seconds.
        #[arg(long, default_value_t = 0)]
        grace_seconds: u64,
    },
    /// Delete the account's security token (it is no longer required).
    Delete {
        /// The account's id.
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
            let a = client.create_account(&accounts::CreateAccount { name }).await?;
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
            let body = serde_json::to_value(accounts::IpAllowlistBody { cidrs })?;
            let path = format!("/v1/accounts/{id}/ip-allowlist");
            crate::admin_commands::show(&client, &remote, reqwest::Method::PUT, &path, Some(body)).await
        }
    }
}

pub async fn instances(command: InstancesCommand, remote: Remote) -> anyhow::Result<()> {
    let client = remote.client()?;
    match command {
        InstancesCommand::Create { account, name, upstream_url } => {
            let created = client
                .create_instance(&account, &instances::NewInstance { name, upstream_url, rules: Vec::new() })
                .await?;
            remote.print(&created, || {
                let i = &created.instance;
                format!(
                    "instance {} created ({} -> {})\ninstance token: {}\nStore it now: it will not be shown again.",
                    i.id, i.name, i.upstream_url, created.token
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
            let rules = match rules_file {
                Some(file) => Some(serde_json::from_str(&std::fs::read_to_string(&file)?)?),
                None => None,
            };
            let i = client.update_instance(&id, &instances::InstancePatch { name, upstream_url, rules }).await?;
            remote.print(&i, || format!("instance {} updated ({} -> {})", i.id, i.name, i.upstream_url))
        }
        InstancesCommand::Delete { id } => {
            crate::admin_commands::show(&client, &remote, reqwest::Method::DELETE, &format!("/v1/instances/{id}"), None)
                .await
        }
    }
}

fn describe_token(t: &ApiToken, secret: Option<&str>) -> String {
    let mut out = format!("{}  {}  {}  scopes: {}", t.id, t.kind.as_str(), t.name, t.scopes.join(" "));
    for (label, value) in [("expires", &t.expires_at), ("last used", &t.last_used_at), ("revoked", &t.revoked_at)] {
        if let Some(v) = value {
            out.push_str(&format!("  {label}: {}", v.to_rfc3339()));
        }
    }
    if let Some(secret) = secret {
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
    client: &AdminClient,
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
        ImportFormat::Csv => Box::new(crate::import_file::csv(reader, scopes).map_err(|e| anyhow::anyhow!(e))?),
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
    let (mut imported, mut skipped, mut failed, mut errors) = (0u64, 0u64, 0u64, Vec::<serde_json::Value>::new());
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
                Err(e) => {
                    failed += 1;
                    errors.push(serde_json::json!({ "line": line.number, "error": e }));
                }
            }
        }
        if numbers.is_empty() {
            continue;
        }
        let summary = client.import_tokens(account, body).await?;
        imported += summary.imported;
        skipped += summary.skipped;
        failed += summary.failed;
        for e in summary.errors {
            let at = usize::try_from(e.line).ok().and_then(|n| numbers.get(n.checked_sub(1)?).copied());
            errors.push(serde_json::json!({ "line": at, "error": e.error }));
        }
        if let Some(bar) = &bar {
            bar.inc(u64::try_from(numbers.len()).unwrap_or(0));
            bar.set_message(format!("{imported} imported, {skipped} already there, {failed} refused"));
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let summary = serde_json::json!({ "imported": imported, "skipped": skipped, "failed": failed, "errors": errors });
    remote.print(&summary, || {
        let mut out = format!("{imported} imported, {skipped} already there, {failed} refused");
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
                    Some(tokengate_proto::model::RateLimit { limit, window_seconds: window })
                }
            };
            let body = tokens::NewToken {
                name,
                kind: match kind {
                    KindArg::ApiKey => tokengate_core::TokenKind::ApiKey,
                    KindArg::Personal => tokengate_core::TokenKind::Personal,
                },
                member_id: member.map(|m| id(&m, "member")).transpose()?,
                scopes,
                expires_in_seconds,
                ip_allowlist,
                rate_limit,
                instance_ids: instance_ids.iter().map(|i| id(i, "instance")).collect::<anyhow::Result<_>>()?,
            };
            let t = client.create_token(&account, &body).await?;
            remote.print(&t, || describe_token(&t.token, Some(&t.secret)))
        }
        TokensCommand::List { account } => {
            let list = client.list_tokens(&account).await?;
            remote.print(&list, || list.iter().map(|t| describe_token(t, None)).collect::<Vec<_>>().join("\n"))
        }
        TokensCommand::Show { id } => {
            let t = client.token(&id).await?;
            remote.print(&t, || describe_token(&t, None))
        }
        TokensCommand::Rotate { id, grace_seconds } => {
            let t = client.rotate_token(&id, grace_seconds).await?;
            remote.print(&t, || describe_token(&t.token, Some(&t.secret)))
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

fn describe_readiness(r: &tokengate_proto::reports::Readiness) -> String {
    format!(
        "\nreadiness (last {}s): {} with the valid token, {} missing, {} invalid{}",
        r.window_seconds,
        r.with_valid_token,
        r.missing,
        r.invalid,
        if r.safe_to_activate { " - safe to activate" } else { "" }
    )
}

fn shown_once(token: &str) -> String {
    format!("\nClient-Token: {token}\nStore it now: it will not be shown again.")
}

pub async fn security_token(command: SecurityTokenCommand, remote: Remote) -> anyhow::Result<()> {
    use security_token::SecurityTokenView;
    let client = remote.client()?;
    let status = |s: tokengate_core::SecurityTokenStatus| format!("status: {}", s.as_str());
    match command {
        SecurityTokenCommand::Delete { account } => {
            let path = format!("/v1/accounts/{account}/security-token");
            crate::admin_commands::show(&client, &remote, reqwest::Method::DELETE, &path, None).await
        }
        SecurityTokenCommand::Generate { account } => {
            let t = client.generate_security_token(&account).await?;
            remote.print(&t, || status(t.status) + &shown_once(&t.token))
        }
        SecurityTokenCommand::Status { account } => {
            let t: SecurityTokenView = client.security_token(&account).await?;
            remote.print(&t, || {
                let mut out = status(t.status);
                if let Some(until) = t.previous_valid_until {
                    out.push_str(&format!("\nprevious token valid until: {}", until.to_rfc3339()));
                }
                out + &describe_readiness(&t.readiness)
            })
        }
        SecurityTokenCommand::Activate { account } => {
            let t = client.activate_security_token(&account).await?;
            remote.print(&t, || status(t.status) + &describe_readiness(&t.readiness))
        }
        SecurityTokenCommand::Deactivate { account } => {
            let t = client.deactivate_security_token(&account).await?;
            remote.print(&t, || status(t.status))
        }
        SecurityTokenCommand::Rotate { account, grace_seconds } => {
            let t = client.rotate_security_token(&account, grace_seconds).await?;
            remote.print(&t, || {
                let mut out = status(t.status) + &shown_once(&t.token);
                if let Some(until) = t.previous_valid_until {
                    out.push_str(&format!("\nprevious token valid until: {}", until.to_rfc3339()));
                }
                out
            })
        }
    }
}

/// `tokengate completions SHELL`: the completion script on standard output.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut command = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut command, "tokengate", &mut std::io::stdout());
    Ok(())
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every command and every flag explains itself in `--help`.
    #[test]
    fn every_command_and_flag_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id != "help" && id != "version" && arg.get_help().is_none() {
                    missing.push(format!("{path} --{id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                let name = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() {
                    missing.push(name.clone());
                }
                walk(sub, &name, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "tokengate", &mut missing);
        assert!(missing.is_empty(), "without help text: {missing:#?}");
    }
}
