//! Requests tokengate itself makes to addresses tenants or operators name (webhook
//! receivers, GitHub's key list): HTTP or HTTPS, through the egress policy, with a
//! deadline and a cap on what is read back.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::egress::{EgressConnector, EgressPolicy};

/// An HTTP client under the egress policy.
#[derive(Clone)]
pub struct Outbound {
    client: Client<HttpsConnector<EgressConnector>, Full<Bytes>>,
    timeout: Duration,
}

/// A response, its body read up to the cap.
pub struct Fetched {
    pub status: u16,
    pub body: Bytes,
}

impl Outbound {
    pub fn new(egress: Arc<EgressPolicy>, timeout: Duration) -> Outbound {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(crate::egress::https_connector(egress, Some(timeout)));
        Outbound { client, timeout }
    }

    /// Sends one request; errors are described for logs and delivery records (never
    /// with a secret: URLs named by tenants carry none of ours).
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Bytes,
        max_response: usize,
    ) -> Result<Fetched, String> {
        let uri: http::Uri = url.parse().map_err(|_| "not a URL".to_string())?;
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::USER_AGENT, concat!("tokengate/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(body))
            .map_err(|_| "not a URL".to_string())?;
        request.headers_mut().extend(headers);
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                if crate::egress::is_denied(&e) {
                    crate::egress::EgressDenied.to_string()
                } else {
                    format!("{}", crate::gateway::ErrorChain(&e))
                }
            })?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), max_response)
                .collect()
                .await
                .map_err(|e| format!("reading the response: {e}"))?
                .to_bytes();
            Ok(Fetched { status, body })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {} s", self.timeout.as_secs())),
        }
    }
}
