//! Logs (tracing, text or JSON) and Prometheus metrics.
//!
//! Log lines name accounts, instances and token ids, never a secret: gateway paths carry
//! the instance token, so request logging here never prints a gateway URI.

use std::sync::OnceLock;

use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::gateway::Rejection;

/// Installs the global tracing subscriber (once; later calls are ignored).
pub fn init_tracing(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder (installed on first use).
pub fn metrics_handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("_seconds".into()),
                &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
            )
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (e.g. by an embedding program);
        // then our handle still renders what we record through it.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// The metrics an operator alerts on (see `deploy/alerts.yml`).
fn describe_operator_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!("tokengate_store_up", "1 when the store answered its last ping (every 2 s), else 0");
    describe_gauge!("tokengate_change_listener_up", "1 while the PostgreSQL change listener is connected");
    describe_counter!("tokengate_resyncs_total", "Full reloads of the gateway state, by result");
    describe_histogram!("tokengate_resync_duration_seconds", Unit::Seconds, "Duration of full reloads");
    describe_histogram!(
        "tokengate_change_notice_lag_seconds",
        Unit::Seconds,
        "From a change's commit on any node to its enforcement on this one"
    );
    describe_gauge!("tokengate_usage_buffered_rows", "Usage rows held in memory, not yet in the store");
    describe_counter!("tokengate_usage_dropped_total", "Requests not counted in usage: the buffer was full");
    describe_gauge!(
        "tokengate_rate_limit_reconcile_age_seconds",
        Unit::Seconds,
        "Time since this node last reconciled its rate-limit grants with the others"
    );
}

const REASONS: [&str; 18] = [
    "instance_not_found",
    "bad_path",
    "ip_not_allowed",
    "client_token_missing",
    "client_token_invalid",
    "no_matching_rule",
    "invalid_token",
    "insufficient_scope",
    "rate_limited",
    "token_ip_not_allowed",
    "token_expired",
    "token_revoked",
    "body_too_large",
    "body_timeout",
    "bad_request",
    "upstream_unavailable",
    "upstream_timeout",
    "upstream_address_not_allowed",
];

/// Metric handles of the gateway, resolved once so the hot path only bumps atomics.
pub struct GatewayMetrics {
    pub forwarded: Counter,
    rejected: Vec<(&'static str, Counter)>,
    pub latency: Histogram,
    pub upstream_errors_unavailable: Counter,
    pub upstream_errors_timeout: Counter,
    pub upstream_errors_denied: Counter,
}

impl GatewayMetrics {
    pub fn new() -> GatewayMetrics {
        metrics_handle();
        metrics::describe_counter!("tokengate_gateway_requests_total", "Gateway requests by outcome and reason");
        metrics::describe_histogram!(
            "tokengate_gateway_request_duration_seconds",
            metrics::Unit::Seconds,
            "Gateway request latency until response headers"
        );
        metrics::describe_counter!("tokengate_upstream_errors_total", "Upstream failures by kind");
        describe_operator_metrics();
        GatewayMetrics {
            forwarded: metrics::counter!("tokengate_gateway_requests_total", "outcome" => "forwarded", "reason" => "ok"),
            rejected: REASONS
                .iter()
                .map(|r| {
                    (*r, metrics::counter!("tokengate_gateway_requests_total", "outcome" => "rejected", "reason" => *r))
                })
                .collect(),
            latency: metrics::histogram!("tokengate_gateway_request_duration_seconds"),
            upstream_errors_unavailable: metrics::counter!("tokengate_upstream_errors_total", "kind" => "unavailable"),
            upstream_errors_timeout: metrics::counter!("tokengate_upstream_errors_total", "kind" => "timeout"),
            upstream_errors_denied: metrics::counter!("tokengate_upstream_errors_total", "kind" => "egress_denied"),
        }
    }

    pub fn rejected(&self, rejection: &Rejection) {
        let reason = rejection.reason();
        if let Some((_, c)) = self.rejected.iter().find(|(r, _)| *r == reason) {
            c.increment(1);
        }
    }
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    /// Every metric `deploy/alerts.yml` alerts on is one this crate records (a renamed
    /// metric would leave an alert that never fires).
    #[test]
    fn the_example_alerts_name_real_metrics() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let alerts = std::fs::read_to_string(root.join("../../deploy/alerts.yml")).unwrap_or_default();
        let mut source = String::new();
        let mut dirs = vec![root.join("src")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    source.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
                }
            }
        }
        let names: std::collections::BTreeSet<&str> = alerts
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("tokengate_"))
            .map(|w| w.strip_suffix("_bucket").unwrap_or(w))
            .collect();
        assert!(names.len() >= 8, "{names:?}");
        for name in names {
            assert!(source.contains(&format!("\"{name}\"")), "{name} is not recorded anywhere");
        }
    }
}
