//! TLS termination (SPEC §14): TLS 1.2 and 1.3 with rustls, HTTP/2 and HTTP/1.1 by
//! ALPN. The certificate and key are read at start and again on SIGHUP; a new
//! configuration applies to new connections, open ones keep theirs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, ServerConfig};

/// The listener's TLS configuration and where it comes from.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: ArcSwap<ServerConfig>,
}

impl Tls {
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Tls> {
        let config = server_config(cert, key)?;
        Ok(Tls { cert: cert.to_path_buf(), key: key.to_path_buf(), current: ArcSwap::from_pointee(config) })
    }

    /// Reads both files again; on any error the configuration in use stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let config = server_config(&self.cert, &self.key)?;
        self.current.store(Arc::new(config));
        Ok(())
    }

    /// An acceptor with the configuration in use now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }
}

fn server_config(cert: &Path, key: &Path) -> anyhow::Result<ServerConfig> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the TLS certificate {}", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "no certificate in {}", cert.display());
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading the TLS key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the TLS certificate and key do not go together")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Reloads on every SIGHUP until `stop`.
pub async fn reload_on_sighup(tls: Arc<Tls>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; the TLS certificate will not be reloaded");
        return;
    };
    loop {
        tokio::select! {
            _ = hangup.recv() => match tls.reload() {
                Ok(()) => tracing::info!(cert = %tls.cert.display(), "TLS certificate reloaded"),
                Err(e) => tracing::error!(error = format!("{e:#}"), "TLS reload failed; keeping the certificate in use"),
            },
            _ = stop.changed() => return,
        }
    }
}
