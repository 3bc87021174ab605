//! The CLI commands for the rest of the admin API: members, webhooks, usage and audit
//! reports, leak reports, and the list of which command drives which route
//! ([`ROUTES`], checked against the OpenAPI document by the tests).

use std::io::BufRead;

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::Remote;
use tokengate_client::AdminClient;

/// Every admin route and the command that calls it (`tokengate <command> --help` works
/// for each). The OAuth protocol endpoints and GitHub's leak endpoint are for other
/// programs, not operators, and are left out.
pub const ROUTES: &[(&str, &str, &str)] = &[
    ("post", "/v1/accounts", "accounts create"),
    ("get", "/v1/accounts", "accounts list"),
    ("get", "/v1/accounts/{acc}", "accounts show"),
    ("put", "/v1/accounts/{acc}/ip-allowlist", "accounts set-ip-allowlist"),
    ("post", "/v1/accounts/{acc}/members", "members create"),
    ("get", "/v1/accounts/{acc}/members", "members list"),
    ("delete", "/v1/members/{id}", "members remove"),
    ("post", "/v1/accounts/{acc}/instances", "instances create"),
    ("get", "/v1/accounts/{acc}/instances", "instances list"),
    ("get", "/v1/instances/{id}", "instances show"),
    ("patch", "/v1/instances/{id}", "instances update"),
    ("delete", "/v1/instances/{id}", "instances delete"),
    ("post", "/v1/accounts/{acc}/security-token", "security-token generate"),
    ("get", "/v1/accounts/{acc}/security-token", "security-token status"),
    ("delete", "/v1/accounts/{acc}/security-token", "security-token delete"),
    ("post", "/v1/accounts/{acc}/security-token/activate", "security-token activate"),
    ("post", "/v1/accounts/{acc}/security-token/deactivate", "security-token deactivate"),
    ("post", "/v1/accounts/{acc}/security-token/rotate", "security-token rotate"),
    ("post", "/v1/accounts/{acc}/tokens", "tokens create"),
    ("get", "/v1/accounts/{acc}/tokens", "tokens list"),
    ("post", "/v1/accounts/{acc}/tokens/import", "tokens import"),
    ("get", "/v1/tokens/{id}", "tokens show"),
    ("delete", "/v1/tokens/{id}", "tokens revoke"),
    ("post", "/v1/tokens/{id}/rotate", "tokens rotate"),
    ("get", "/v1/tokens/{id}/usage", "tokens usage"),
    ("post", "/v1/verify", "tokens verify"),
    ("post", "/v1/accounts/{acc}/room-apps", "room-apps create"),
    ("get", "/v1/accounts/{acc}/room-apps", "room-apps list"),
    ("delete", "/v1/accounts/{acc}/room-apps/{app_id}", "room-apps delete"),
    ("post", "/v1/accounts/{acc}/room-apps/{app_id}/tokens", "room-tokens issue"),
    ("post", "/v1/room-tokens/verify", "room-tokens verify"),
    ("post", "/v1/accounts/{acc}/oauth-clients", "oauth-clients create"),
    ("get", "/v1/accounts/{acc}/oauth-clients", "oauth-clients list"),
    ("delete", "/v1/accounts/{acc}/oauth-clients/{client_id}", "oauth-clients delete"),
    ("post", "/v1/signing-keys/rotate", "signing-keys rotate"),
    ("post", "/v1/accounts/{acc}/trusted-issuers", "trusted-issuers create"),
    ("get", "/v1/accounts/{acc}/trusted-issuers", "trusted-issuers list"),
    ("delete", "/v1/accounts/{acc}/trusted-issuers/{id}", "trusted-issuers delete"),
    ("get", "/v1/accounts/{acc}/usage", "reports usage"),
    ("get", "/v1/accounts/{acc}/audit", "reports audit"),
    ("post", "/v1/accounts/{acc}/webhooks", "webhooks create"),
    ("get", "/v1/accounts/{acc}/webhooks", "webhooks list"),
    ("get", "/v1/webhooks/{id}", "webhooks show"),
    ("delete", "/v1/webhooks/{id}", "webhooks delete"),
    ("get", "/v1/webhooks/{id}/deliveries", "webhooks deliveries"),
    ("post", "/v1/leaks", "leaks report"),
];

#[derive(Subcommand)]
pub enum MembersCommand {
    /// Add a member; the password is read from TOKENGATE_MEMBER_PASSWORD or stdin.
    Create {
        /// The account's id.
        #[arg(long)]
        account: String,
        /// The member's email address (their login).
        #[arg(long)]
        email: String,
        /// `owner`, `admin`, `developer` or `viewer`.
        #[arg(long)]
        role: String,
    },
    /// List an account's members.
    List {
        /// The account's id.
        #[arg(long)]
        account: String,
    },
    /// Remove a member: its personal tokens are revoked and its sessions end.
    Remove {
        /// The id of the object.
        id: String,
    },
}

#[derive(Subcommand)]
pub enum WebhooksCommand {
    /// Add a webhook; its `whsec_` signing secret is printed once.
    Create {
        /// The account's id.
        #[arg(long)]
        account: String,
        /// The receiver's URL (`--url` is the server's).
        #[arg(long)]
        endpoint: String,
        /// An event (repeat for more): token.created, token.revoked, token.leaked,
        /// token.expiring, security_token.activated, security_token.rotated.
        #[arg(long = "event", required = true)]
        events: Vec<String>,
    },
    /// List an account's webhooks.
    List {
        /// The account's id.
        #[arg(long)]
        account: String,
    },
    /// Show one.
    Show {
        /// The id of the object.
        id: String,
    },
    /// Delete one.
    Delete {
        /// The id of the object.
        id: String,
    },
    /// The latest delivery attempts, newest first.
    Deliveries {
        /// The id of the object.
        id: String,
    },
}

#[derive(Subcommand)]
pub enum ReportsCommand {
    /// Allowed and rejected requests to the account's instances over time.
    Usage {
        /// The account's id.
        #[arg(long)]
        account: String,
        /// RFC 3339 time or Unix seconds (default: 24 hours ago).
        #[arg(long)]
        since: Option<String>,
        /// Width of each usage bucket, in seconds (60 to 86400).
        #[arg(long)]
        bucket_seconds: Option<u64>,
    },
    /// The account's audit log, newest first.
    Audit {
        /// The account's id.
        #[arg(long)]
        account: String,
        /// How many entries at most (1 to 1000).
        #[arg(long)]
        limit: Option<u32>,
    },
}

#[derive(Subcommand)]
pub enum LeaksCommand {
    /// Report tokens found in public, one per line on standard input (never as
    /// arguments: those show in process lists).
    Report {
        /// Where they were found (`--url` is the server's).
        #[arg(long)]
        found_at: Option<String>,
        /// Where the leak was found (free text, e.g. a scanner's name).
        #[arg(long)]
        source: Option<String>,
    },
}

/// Calls a route and prints its answer (JSON with `--json`, else indented JSON too: these
/// answers have no shorter text form worth keeping apart).
pub async fn show(
    client: &AdminClient,
    remote: &Remote,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<()> {
    let deleting = method == Method::DELETE;
    let answer = client.call_json(method, path, body.as_ref()).await?;
    if deleting && answer.is_null() {
        return remote.print(&json!({ "deleted": path }), || format!("deleted: {path}"));
    }
    remote.print(&answer, || serde_json::to_string_pretty(&answer).unwrap_or_default())
}

/// A path with the usage reports' `since` and `bucket_seconds`.
pub fn with_query(path: &str, since: Option<String>, bucket_seconds: Option<u64>) -> String {
    let mut pairs = url::form_urlencoded::Serializer::new(String::new());
    if let Some(s) = since {
        pairs.append_pair("since", &s);
    }
    if let Some(b) = bucket_seconds {
        pairs.append_pair("bucket_seconds", &b.to_string());
    }
    let query = pairs.finish();
    if query.is_empty() { path.to_string() } else { format!("{path}?{query}") }
}

pub async fn members(command: MembersCommand, remote: Remote) -> anyhow::Result<()> {
    let client = remote.client()?;
    match command {
        MembersCommand::Create { account, email, role } => {
            let password = tokengate_proto::Secret::new(read_secret("TOKENGATE_MEMBER_PASSWORD")?);
            let role = serde_json::from_value(Value::String(role.clone()))
                .map_err(|_| anyhow::anyhow!("--role: {role:?} is not owner, admin, developer or viewer"))?;
            let body = serde_json::to_value(tokengate_proto::accounts::CreateMember { email, password, role })?;
            show(&client, &remote, Method::POST, &format!("/v1/accounts/{account}/members"), Some(body)).await
        }
        MembersCommand::List { account } => {
            show(&client, &remote, Method::GET, &format!("/v1/accounts/{account}/members"), None).await
        }
        MembersCommand::Remove { id } => {
            show(&client, &remote, Method::DELETE, &format!("/v1/members/{id}"), None).await
        }
    }
}

pub async fn webhooks(command: WebhooksCommand, remote: Remote) -> anyhow::Result<()> {
    let client = remote.client()?;
    match command {
        WebhooksCommand::Create { account, endpoint, events } => {
            let body = serde_json::to_value(tokengate_proto::webhooks::NewWebhook { url: endpoint, events })?;
            show(&client, &remote, Method::POST, &format!("/v1/accounts/{account}/webhooks"), Some(body)).await
        }
        WebhooksCommand::List { account } => {
            show(&client, &remote, Method::GET, &format!("/v1/accounts/{account}/webhooks"), None).await
        }
        WebhooksCommand::Show { id } => show(&client, &remote, Method::GET, &format!("/v1/webhooks/{id}"), None).await,
        WebhooksCommand::Delete { id } => {
            show(&client, &remote, Method::DELETE, &format!("/v1/webhooks/{id}"), None).await
        }
        WebhooksCommand::Deliveries { id } => {
            show(&client, &remote, Method::GET, &format!("/v1/webhooks/{id}/deliveries"), None).await
        }
    }
}

pub async fn reports(command: ReportsCommand, remote: Remote) -> anyhow::Result<()> {
    let client = remote.client()?;
    match command {
        ReportsCommand::Usage { account, since, bucket_seconds } => {
            let path = with_query(&format!("/v1/accounts/{account}/usage"), since, bucket_seconds);
            show(&client, &remote, Method::GET, &path, None).await
        }
        ReportsCommand::Audit { account, limit } => {
            let path = match limit {
                Some(n) => format!("/v1/accounts/{account}/audit?limit={n}"),
                None => format!("/v1/accounts/{account}/audit"),
            };
            show(&client, &remote, Method::GET, &path, None).await
        }
    }
}

/// Leak reports need no admin token (anyone may send one).
pub async fn leaks(command: LeaksCommand, remote: Remote) -> anyhow::Result<()> {
    let LeaksCommand::Report { found_at: url, source } = command;
    let tokens: Vec<String> = std::io::stdin()
        .lock()
        .lines()
        .map_while(Result::ok)
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    anyhow::ensure!(!tokens.is_empty(), "no token on standard input");
    let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build()?;
    let mut received = 0u64;
    for chunk in tokens.chunks(100) {
        let body =
            tokengate_proto::leaks::LeakReport { tokens: chunk.to_vec(), url: url.clone(), source: source.clone() };
        let res = http.post(format!("{}/v1/leaks", remote.url.trim_end_matches('/'))).json(&body).send().await?;
        anyhow::ensure!(res.status().is_success(), "the server answered {}", res.status());
        let answer: tokengate_proto::leaks::LeakReceived = res.json().await?;
        received += answer.received as u64;
    }
    remote.print(&json!({ "received": received }), || format!("{received} reported"))
}

fn read_secret(var: &str) -> anyhow::Result<String> {
    if let Ok(v) = std::env::var(var) {
        return Ok(v);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
