//! The egress policy (SPEC §11): which addresses tokengate connects to on a tenant's
//! behalf. Every outgoing connection a tenant can cause — upstreams, trusted issuers'
//! JWKS, webhooks — is made through [`EgressConnector`], so the policy is checked in
//! one place, on the addresses actually connected to: a host name that resolves into a
//! denied range is refused at connect time, which also closes DNS rebinding (the name
//! is resolved once per connection, and the addresses checked are the ones used).

use std::error::Error as StdError;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::rt::TokioIo;
use rustls_pki_types::CertificateDer;
use tokengate_core::IpAllowlist;
use tokengate_core::allowlist::BadCidr;
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tower::Service;

type BoxError = Box<dyn StdError + Send + Sync>;

/// The default `egress_deny`: unspecified, link-local, multicast, broadcast and the
/// cloud providers' metadata addresses.
pub const DEFAULT_DENY: &[&str] = &[
    "0.0.0.0/8",
    "169.254.0.0/16",
    "224.0.0.0/4",
    "255.255.255.255/32",
    "100.100.100.200/32",
    "::/128",
    "fe80::/10",
    "ff00::/8",
    "fd00:ec2::254/128",
];

/// Refused by the egress policy; the gateway answers it
/// `502 {"error": "upstream address not allowed"}`.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("upstream address not allowed")]
pub struct EgressDenied;

#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    deny: IpAllowlist,
    /// Wins over `deny`.
    allow: IpAllowlist,
}

impl EgressPolicy {
    pub fn new<S: AsRef<str>>(deny: &[S], allow: &[S]) -> Result<EgressPolicy, BadCidr> {
        Ok(EgressPolicy { deny: IpAllowlist::parse(deny)?, allow: IpAllowlist::parse(allow)? })
    }

    /// Whether tokengate may connect to `ip` (IPv4-mapped IPv6 is judged as IPv4).
    pub fn permits(&self, ip: IpAddr) -> bool {
        self.allow.contains(ip) || !self.deny.contains(ip)
    }

    /// Checks a URL's host when it is a literal address (names are checked when
    /// connecting). For instance and issuer validation: a denied literal → `Err`.
    pub fn check_literal_host(&self, host: &str) -> Result<(), EgressDenied> {
        match literal(host) {
            Some(ip) if !self.permits(ip) => Err(EgressDenied),
            _ => Ok(()),
        }
    }
}

/// A host that names an address without a lookup: the usual spellings, and the others
/// the system resolver also reads as one (`2852039166`, `0xA9FEA9FE`, `0251.0376.0251.0376`,
/// `169.254.169.254.`), as the WHATWG URL rules read them.
fn literal(host: &str) -> Option<IpAddr> {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if let Ok(ip) = bare.parse() {
        return Some(ip);
    }
    match url::Host::parse(host).ok()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

/// Whether an error, or one of its sources, is an egress refusal.
pub fn is_denied(error: &(dyn StdError + 'static)) -> bool {
    crate::error_chain::caused_by::<EgressDenied>(error)
}

/// Resolves names with the system resolver, keeping only the permitted addresses.
#[derive(Clone)]
pub struct PolicyResolver {
    gai: GaiResolver,
    policy: Arc<EgressPolicy>,
}

impl Service<Name> for PolicyResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.gai.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let resolving = self.gai.call(name);
        let policy = Arc::clone(&self.policy);
        Box::pin(async move {
            let allowed: Vec<SocketAddr> = resolving.await?.filter(|a| policy.permits(a.ip())).collect();
            if allowed.is_empty() {
                return Err(Box::new(EgressDenied) as BoxError);
            }
            Ok(allowed.into_iter())
        })
    }
}

/// A TCP connector that applies the egress policy to literal hosts and to every
/// resolved address; wrapped by hyper-rustls for https.
#[derive(Clone)]
pub struct EgressConnector {
    http: HttpConnector<PolicyResolver>,
    policy: Arc<EgressPolicy>,
}

impl EgressConnector {
    pub fn new(policy: Arc<EgressPolicy>, connect_timeout: Option<Duration>) -> EgressConnector {
        let mut http =
            HttpConnector::new_with_resolver(PolicyResolver { gai: GaiResolver::new(), policy: Arc::clone(&policy) });
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(connect_timeout);
        EgressConnector { http, policy }
    }
}

impl Service<Uri> for EgressConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        // Literal addresses never reach the resolver: check them here.
        if let Some(host) = uri.host()
            && self.policy.check_literal_host(host).is_err()
        {
            return Box::pin(std::future::ready(Err(Box::new(EgressDenied) as BoxError)));
        }
        let connecting = self.http.call(uri);
        Box::pin(async move { connecting.await.map_err(Into::into) })
    }
}

/// The connector for http and https (rustls, webpki roots) under the policy.
pub fn https_connector(
    policy: Arc<EgressPolicy>,
    connect_timeout: Option<Duration>,
) -> hyper_rustls::HttpsConnector<EgressConnector> {
    https_connector_with(policy, connect_timeout, upstream_tls(&[]))
}

/// The connector for http and https under the policy, with its own TLS configuration.
pub fn https_connector_with(
    policy: Arc<EgressPolicy>,
    connect_timeout: Option<Duration>,
    tls: rustls::ClientConfig,
) -> hyper_rustls::HttpsConnector<EgressConnector> {
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(EgressConnector::new(policy, connect_timeout))
}

/// TLS towards upstreams: TLS 1.2 and 1.3 (aws-lc-rs), the Web PKI roots, and `extra`
/// roots (`upstream_ca_file`).
pub fn upstream_tls(extra: &[CertificateDer<'static>]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let (added, ignored) = roots.add_parsable_certificates(extra.iter().cloned());
    if ignored > 0 {
        tracing::warn!(added, ignored, "some upstream CA certificates could not be used");
    }
    // The process's provider (aws-lc-rs, the only one built in), as hyper-rustls's own
    // `with_webpki_roots` does.
    rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth()
}

/// Reads `upstream_ca_file`: one or more PEM certificates.
pub fn read_ca_file(path: &std::path::Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    use anyhow::Context;
    use rustls_pki_types::pem::PemObject;
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading upstream_ca_file {}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "upstream_ca_file {} holds no certificate", path.display());
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_deny_list_and_allow_wins() {
        let policy = EgressPolicy::new(DEFAULT_DENY, &[]).unwrap();
        for denied in ["169.254.169.254", "0.0.0.0", "224.0.0.1", "255.255.255.255", "100.100.100.200", "::", "fe80::1"]
        {
            assert!(!policy.permits(denied.parse().unwrap()), "{denied}");
        }
        assert!(!policy.permits("::ffff:169.254.169.254".parse().unwrap()), "mapped v4 is judged as v4");
        for allowed in ["127.0.0.1", "10.0.0.1", "203.0.113.9", "::1", "2001:db8::1"] {
            assert!(policy.permits(allowed.parse().unwrap()), "{allowed}");
        }
        let policy = EgressPolicy::new(&["127.0.0.0/8"], &["127.0.0.2/32"]).unwrap();
        assert!(!policy.permits("127.0.0.1".parse().unwrap()));
        assert!(policy.permits("127.0.0.2".parse().unwrap()));
        assert!(policy.check_literal_host("[::1]").is_ok());
        assert!(policy.check_literal_host("127.0.0.9").is_err());
        assert!(policy.check_literal_host("localhost").is_ok(), "names are checked at connect time");
        assert!(policy.check_literal_host("2130706441").is_err(), "127.0.0.9 as one number");
        assert!(policy.check_literal_host("0x7f.9").is_err());
        assert!(policy.check_literal_host("127.0.0.9.").is_err());
        assert!(policy.check_literal_host("1.example").is_ok());
    }

    #[tokio::test]
    async fn names_resolving_into_denied_ranges_are_refused_at_connect() {
        let policy = Arc::new(EgressPolicy::new(&["127.0.0.0/8", "::1/128"], &[]).unwrap());
        let mut connector = EgressConnector::new(policy, None);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        for uri in [format!("http://localhost:{port}/"), format!("http://127.0.0.1:{port}/")] {
            let err = connector.call(uri.parse().unwrap()).await.expect_err("refused");
            assert!(is_denied(err.as_ref()), "{uri}: {err}");
        }
    }
}
