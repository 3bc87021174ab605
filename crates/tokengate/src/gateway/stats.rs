//! The gateway's metric handles, resolved once so that a request only bumps atomics.
//! The rejection reasons are [`Reason::ALL`]: the refusals themselves name them.

use metrics::{Counter, Histogram};

use super::reject::Reason;

pub struct GatewayMetrics {
    forwarded: Counter,
    /// Indexed by `Reason as usize`.
    rejected: [Counter; Reason::ALL.len()],
    /// Indexed like `rejected`; `None` for reasons that are not upstream failures.
    upstream_errors: [Option<Counter>; Reason::ALL.len()],
    latency: Histogram,
}

impl GatewayMetrics {
    pub fn new() -> GatewayMetrics {
        crate::telemetry::metrics_handle();
        metrics::describe_counter!("tokengate_gateway_requests_total", "Gateway requests by outcome and reason");
        metrics::describe_histogram!(
            "tokengate_gateway_request_duration_seconds",
            metrics::Unit::Seconds,
            "Gateway request latency until response headers"
        );
        metrics::describe_counter!("tokengate_upstream_errors_total", "Upstream failures by kind");
        metrics::describe_counter!(
            "tokengate_upstream_connections_opened_total",
            "Connections opened to upstreams (kept alive and reused between requests)"
        );
        GatewayMetrics {
            forwarded: metrics::counter!("tokengate_gateway_requests_total", "outcome" => "forwarded", "reason" => "ok"),
            rejected: Reason::ALL.map(|r| {
                metrics::counter!("tokengate_gateway_requests_total", "outcome" => "rejected", "reason" => r.as_str())
            }),
            upstream_errors: Reason::ALL
                .map(|r| r.upstream_error().map(|kind| metrics::counter!("tokengate_upstream_errors_total", "kind" => kind))),
            latency: metrics::histogram!("tokengate_gateway_request_duration_seconds"),
        }
    }

    /// Counts one request by how it ended, and its latency until the response head.
    pub fn record(&self, outcome: Result<(), Reason>, elapsed: std::time::Duration) {
        match outcome {
            Ok(()) => self.forwarded.increment(1),
            Err(reason) => {
                if let Some(c) = self.rejected.get(reason as usize) {
                    c.increment(1);
                }
                if let Some(Some(c)) = self.upstream_errors.get(reason as usize) {
                    c.increment(1);
                }
            }
        }
        self.latency.record(elapsed.as_secs_f64());
    }
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        Self::new()
    }
}
