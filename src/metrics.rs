//! Every Prometheus metric authgate exports, in one registry served at the admin `/metrics`.
//!
//! Labels are bounded by configuration, never by traffic: route and upstream names, method names
//! from a fixed list, status codes, and fixed reason words. Raw paths, user ids, emails and tokens
//! never become labels, so random paths add no series.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_duration: HistogramVec,
    pub in_flight: IntGauge,
    pub auth_failures: IntCounterVec,
    pub rate_limited: IntCounterVec,
    pub logins: IntCounterVec,
    pub tokens_issued: IntCounterVec,
    pub refresh_reuse: IntCounter,
    pub refresh_reuse_in_grace: IntCounter,
    pub revoked_tokens: IntGauge,
    pub user_cutoffs: IntCounterVec,
    pub user_cutoffs_held: IntGauge,
    pub user_cutoffs_spooled: IntGauge,
    pub security_events: IntCounterVec,
    pub config_reloads: IntCounterVec,
    pub config_info: IntGaugeVec,
    pub provider_duration: HistogramVec,
    pub client_errors: IntCounterVec,
    pub open_connections: IntGauge,
    pub tls_handshakes: IntCounterVec,
    pub tls_cert_expiry: IntGaugeVec,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauges = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                labels,
            )
            .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let m = Metrics {
            requests: counter(
                "authgate_requests_total",
                "Requests answered, by route, method and status.",
                &["route", "method", "status"],
            ),
            request_duration: histogram(
                "authgate_request_duration_seconds",
                "Time from request to response, by route.",
                &["route"],
            ),
            upstream_duration: histogram(
                "authgate_upstream_duration_seconds",
                "Time from choosing a backend to its response header, by upstream.",
                &["upstream"],
            ),
            in_flight: gauge("authgate_requests_in_flight", "Requests being handled now."),
            auth_failures: counter(
                "authgate_auth_failures_total",
                "Refused credentials, by reason.",
                &["reason"],
            ),
            rate_limited: counter(
                "authgate_rate_limited_total",
                "Requests refused with 429, by limit scope.",
                &["scope"],
            ),
            logins: counter(
                "authgate_logins_total",
                "Login callbacks, by provider and result.",
                &["provider", "result"],
            ),
            tokens_issued: counter(
                "authgate_tokens_issued_total",
                "Tokens issued, by kind.",
                &["kind"],
            ),
            refresh_reuse: {
                let c = IntCounter::new(
                    "authgate_refresh_reuse_detected_total",
                    "Already-used refresh tokens presented (each revokes a token family).",
                )
                .expect("valid metric");
                registry
                    .register(Box::new(c.clone()))
                    .expect("unique metric");
                c
            },
            refresh_reuse_in_grace: {
                let c = IntCounter::new(
                    "authgate_refresh_reuse_in_grace_total",
                    "Refresh tokens presented again within the grace window (parallel loads, lost answers): a new pair, the family kept.",
                )
                .expect("valid metric");
                registry
                    .register(Box::new(c.clone()))
                    .expect("unique metric");
                c
            },
            revoked_tokens: gauge(
                "authgate_revoked_tokens",
                "Revoked access tokens held in memory until they expire.",
            ),
            user_cutoffs: counter(
                "authgate_user_cutoffs_total",
                "Users whose every session was ended, by reason (unlink, a Kakao event, operator), counted where it was asked for.",
                &["reason"],
            ),
            user_cutoffs_held: gauge(
                "authgate_user_cutoffs",
                "Per-user cut-offs held in memory until every token they refuse has expired.",
            ),
            user_cutoffs_spooled: gauge(
                "authgate_user_cutoffs_spooled",
                "User cut-offs waiting in store.spool_file for the store to take them.",
            ),
            security_events: counter(
                "authgate_security_events_total",
                "Kakao unlink calls and security event tokens received, by kind and result.",
                &["kind", "result"],
            ),
            config_reloads: counter(
                "authgate_config_reloads_total",
                "Configuration reloads, by result (ok, invalid, failed).",
                &["result"],
            ),
            config_info: gauges(
                "authgate_config_info",
                "1 for the configuration being served, by a digest of its file.",
                &["hash"],
            ),
            tls_handshakes: counter(
                "authgate_tls_handshakes_total",
                "TLS handshakes on server.tls_listen, by result (ok, failed, timeout).",
                &["result"],
            ),
            tls_cert_expiry: gauges(
                "authgate_tls_cert_expiry_timestamp_seconds",
                "When each served certificate expires (Unix time), by name: default, or an SNI certificate's first server_name.",
                &["name"],
            ),
            provider_duration: histogram(
                "authgate_provider_request_duration_seconds",
                "Calls to the identity provider, by provider and endpoint.",
                &["provider", "endpoint"],
            ),
            client_errors: counter(
                "authgate_client_errors_total",
                "Connections and requests ended by the client's fault, by kind: \
                 header_timeout, malformed, headers_too_large, disconnected, \
                 connection_limit, connection_limit_per_ip.",
                &["kind"],
            ),
            open_connections: gauge(
                "authgate_open_connections",
                "Client connections open on the public listener.",
            ),
            registry,
        };
        let build = IntGaugeVec::new(
            Opts::new("authgate_build_info", "Build information."),
            &["version"],
        )
        .expect("valid metric");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        m.registry.register(Box::new(build)).expect("unique metric");
        m
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Handles resolved once (histograms at start-up, request counters on first use), so the
/// per-request path does no label hashing or lookup.
pub struct Durations {
    /// By route index (`Router::routes()` order).
    pub routes: Vec<prometheus::Histogram>,
    pub auth: prometheus::Histogram,
    pub unmatched: prometheus::Histogram,
    /// By upstream index.
    pub upstreams: Vec<prometheus::Histogram>,
    pub requests: RequestCounters,
}

/// `authgate_requests_total` by (route slot, method, status), each series created when first
/// counted, as `with_label_values` would, but found by index afterwards. Route slots are the
/// route indexes, then `auth`, then `unmatched`.
pub struct RequestCounters {
    family: IntCounterVec,
    names: Vec<String>,
    cells: Vec<std::sync::OnceLock<IntCounter>>,
}

impl RequestCounters {
    fn new(family: IntCounterVec, mut names: Vec<String>) -> RequestCounters {
        names.extend(["auth".to_string(), "unmatched".to_string()]);
        let cells = (0..names.len() * METHOD_LABELS.len() * STATUS_LABELS.len())
            .map(|_| std::sync::OnceLock::new())
            .collect();
        RequestCounters {
            family,
            names,
            cells,
        }
    }

    pub fn auth_slot(&self) -> usize {
        self.names.len() - 2
    }

    pub fn unmatched_slot(&self) -> usize {
        self.names.len() - 1
    }

    pub fn inc(&self, slot: usize, method: &http::Method, status: u16) {
        let (m, s) = (method_index(method), status_index(status));
        self.cells[(slot * METHOD_LABELS.len() + m) * STATUS_LABELS.len() + s]
            .get_or_init(|| {
                self.family.with_label_values(&[
                    self.names[slot].as_str(),
                    METHOD_LABELS[m],
                    STATUS_LABELS[s],
                ])
            })
            .inc();
    }
}

impl Metrics {
    pub fn durations<'a>(
        &self,
        routes: impl Iterator<Item = &'a str>,
        upstreams: impl Iterator<Item = &'a str>,
    ) -> Durations {
        let names: Vec<String> = routes.map(str::to_string).collect();
        Durations {
            routes: names
                .iter()
                .map(|r| self.request_duration.with_label_values(&[r]))
                .collect(),
            auth: self.request_duration.with_label_values(&["auth"]),
            unmatched: self.request_duration.with_label_values(&["unmatched"]),
            upstreams: upstreams
                .map(|u| self.upstream_duration.with_label_values(&[u]))
                .collect(),
            requests: RequestCounters::new(self.requests.clone(), names),
        }
    }
}

/// Method labels: the standard methods by name, anything else as `OTHER` (a client may invent
/// any number of methods).
const METHOD_LABELS: [&str; 10] = [
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE", "OTHER",
];

fn method_index(m: &http::Method) -> usize {
    match *m {
        http::Method::GET => 0,
        http::Method::POST => 1,
        http::Method::PUT => 2,
        http::Method::DELETE => 3,
        http::Method::HEAD => 4,
        http::Method::OPTIONS => 5,
        http::Method::PATCH => 6,
        http::Method::CONNECT => 7,
        http::Method::TRACE => 8,
        _ => 9,
    }
}

pub fn method_label(m: &http::Method) -> &'static str {
    METHOD_LABELS[method_index(m)]
}

/// Status labels: the common codes by number, anything else by class (`0`: no response).
const STATUS_LABELS: [&str; 25] = [
    "200", "201", "204", "206", "101", "301", "302", "304", "400", "401", "403", "404", "405",
    "413", "429", "500", "502", "503", "504", "0", "1xx", "2xx", "3xx", "4xx", "5xx",
];

fn status_index(status: u16) -> usize {
    match status {
        200 => 0,
        201 => 1,
        204 => 2,
        206 => 3,
        101 => 4,
        301 => 5,
        302 => 6,
        304 => 7,
        400 => 8,
        401 => 9,
        403 => 10,
        404 => 11,
        405 => 12,
        413 => 13,
        429 => 14,
        500 => 15,
        502 => 16,
        503 => 17,
        504 => 18,
        s => 19 + (s / 100).min(5) as usize,
    }
}

pub fn status_label(status: u16) -> &'static str {
    STATUS_LABELS[status_index(status)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_counters_find_the_series_their_labels_name() {
        let m = Metrics::new();
        let d = m.durations(["api", "web"].into_iter(), ["app"].into_iter());
        let r = &d.requests;
        r.inc(1, &http::Method::GET, 200);
        r.inc(1, &http::Method::GET, 200);
        r.inc(
            r.auth_slot(),
            &http::Method::from_bytes(b"BREW").unwrap(),
            418,
        );
        r.inc(r.unmatched_slot(), &http::Method::POST, 0);
        r.inc(0, &http::Method::DELETE, 599);
        let get = |labels: &[&str]| m.requests.with_label_values(labels).get();
        assert_eq!(get(&["web", "GET", "200"]), 2);
        assert_eq!(get(&["auth", "OTHER", "4xx"]), 1);
        assert_eq!(get(&["unmatched", "POST", "0"]), 1);
        assert_eq!(get(&["api", "DELETE", "5xx"]), 1);
        assert_eq!(get(&["api", "GET", "200"]), 0);
        assert_eq!(status_label(404), "404");
        assert_eq!(status_label(103), "1xx");
    }

    /// Metrics with one sample in every labelled family (empty families are not rendered).
    fn populated() -> Metrics {
        let m = Metrics::new();
        m.requests.with_label_values(&["api", "GET", "200"]).inc();
        m.request_duration.with_label_values(&["api"]).observe(0.01);
        m.upstream_duration
            .with_label_values(&["app"])
            .observe(0.01);
        m.auth_failures.with_label_values(&["invalid_token"]).inc();
        m.rate_limited.with_label_values(&["ip"]).inc();
        m.logins.with_label_values(&["kakao", "success"]).inc();
        m.tokens_issued.with_label_values(&["access"]).inc();
        m.provider_duration
            .with_label_values(&["kakao", "token"])
            .observe(0.1);
        m.client_errors.with_label_values(&["header_timeout"]).inc();
        m.tls_handshakes.with_label_values(&["ok"]).inc();
        m.tls_cert_expiry
            .with_label_values(&["default"])
            .set(1_800_000_000);
        m.user_cutoffs.with_label_values(&["unlink"]).inc();
        m.security_events
            .with_label_values(&["unlink", "cut_off"])
            .inc();
        m
    }

    #[test]
    fn every_documented_metric_is_exported() {
        let text = populated().render();
        for name in [
            "authgate_requests_total{method=\"GET\",route=\"api\",status=\"200\"} 1",
            "authgate_request_duration_seconds_bucket",
            "authgate_upstream_duration_seconds_bucket",
            "authgate_requests_in_flight 0",
            "authgate_auth_failures_total{reason=\"invalid_token\"} 1",
            "authgate_rate_limited_total{scope=\"ip\"} 1",
            "authgate_logins_total{provider=\"kakao\",result=\"success\"} 1",
            "authgate_tokens_issued_total{kind=\"access\"} 1",
            "authgate_refresh_reuse_detected_total 0",
            "authgate_refresh_reuse_in_grace_total 0",
            "authgate_revoked_tokens 0",
            "authgate_provider_request_duration_seconds_bucket",
            "authgate_build_info{version=",
            "authgate_client_errors_total{kind=\"header_timeout\"} 1",
            "authgate_open_connections 0",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
        assert_eq!(
            method_label(&http::Method::from_bytes(b"BREW").unwrap()),
            "OTHER"
        );
    }

    /// Every metric the shipped Grafana dashboard queries is one authgate exports.
    #[test]
    fn the_dashboard_only_uses_exported_metrics() {
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../deploy/grafana/authgate.json"))
                .expect("valid JSON");
        let exported = populated().render();
        let mut used = 0;
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    if let Some(name) = word.strip_prefix("authgate_") {
                        let base = ["_bucket", "_count", "_sum"]
                            .iter()
                            .fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
                        assert!(
                            exported.contains(&format!("# TYPE authgate_{base} ")),
                            "{word} is not exported"
                        );
                        used += 1;
                    }
                }
            }
        }
        assert!(used >= 12);
    }
}
