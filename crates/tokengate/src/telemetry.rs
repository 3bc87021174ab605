//! Logs (tracing, text or JSON) and Prometheus metrics.
//!
//! Log lines name accounts, instances and token ids, never a secret: gateway paths carry
//! the instance token, so request logging here never prints a gateway URI.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

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
        describe_operator_metrics();
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
