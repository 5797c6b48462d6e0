//! Prometheus metrics: libp2p's own (via `libp2p-metrics`) and warren's, in one registry.
//!
//! `GET /metrics` on the control API encodes the registry in the OpenMetrics text format. Every
//! warren metric is prefixed `warren_`; libp2p's are prefixed `libp2p_`. The counters are cheap
//! clones of shared atomics, so any task holding an `Arc<Metrics>` can count without a lock.
//!
//! | metric                                  | kind      | counted where                          |
//! |-----------------------------------------|-----------|----------------------------------------|
//! | `warren_blocks_stored_total`            | counter   | a replica accepted from a peer         |
//! | `warren_blocks_refused_total`           | counter   | a replica refused (offer full, …)      |
//! | `warren_blocks_served_total`            | counter   | a block sent to a peer                 |
//! | `warren_bytes_received_total`           | counter   | bytes of accepted replicas             |
//! | `warren_bytes_sent_total`               | counter   | bytes of blocks served                 |
//! | `warren_puts_total`, `warren_gets_total`| counter   | API `put` / `get` that succeeded       |
//! | `warren_put_bytes_total`, `warren_get_bytes_total` | counter | their sizes                  |
//! | `warren_audits_total{result}`           | counter   | proof-of-storage audits this node ran  |
//! | `warren_repairs_total`                  | counter   | replicas re-created by repair passes   |
//! | `warren_circuits_total`, `warren_jobs_total` | counter | onion circuits built, inference jobs run |
//! | `warren_put_seconds`, `warren_get_seconds`, `warren_audit_seconds` | histogram | latency |
//! | `warren_storage_used_bytes`, `warren_storage_offered_bytes` | gauge | set at each scrape |
//! | `warren_background_checks_total`        | counter   | blocks the background sweep checked    |
//! | `warren_background_dht_queries_total`, `warren_background_audits_total` | counter | background work done |
//! | `warren_background_deferred_total`      | counter   | background work left for later (budget) |
//! | `warren_background_cpu_permille`        | gauge     | the process's CPU share, last 10 s     |
//! | `warren_background_blocks`, `warren_background_urgent` | gauge | blocks in the sweep, urgent ones |
//! | `warren_background_period_seconds`      | gauge     | the period each block is checked in    |

use std::sync::atomic::AtomicU64;

use libp2p::metrics::{Metrics as Libp2pMetrics, Recorder};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The `result` label of `warren_audits_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuditLabels {
    /// `passed`, `failed` or `unanswered` (no answer within the deadline: not a failed proof).
    pub result: &'static str,
}

/// warren's own counters; clones share the same values.
#[derive(Clone, Debug)]
pub struct Counters {
    /// Replicas accepted from peers.
    pub blocks_stored: Counter,
    /// Replicas refused (storage offer exhausted or bad data).
    pub blocks_refused: Counter,
    /// Blocks served to peers.
    pub blocks_served: Counter,
    /// Bytes of accepted replicas.
    pub bytes_received: Counter,
    /// Bytes of served blocks.
    pub bytes_sent: Counter,
    /// Successful `put`s through the API.
    pub puts: Counter,
    /// Successful `get`s through the API.
    pub gets: Counter,
    /// Bytes put through the API.
    pub put_bytes: Counter,
    /// Bytes got through the API.
    pub get_bytes: Counter,
    /// Audits run by this node, by result.
    pub audits: Family<AuditLabels, Counter>,
    /// Replicas re-created by repair.
    pub repairs: Counter,
    /// Onion circuits built by this node.
    pub circuits: Counter,
    /// Inference jobs run or requested by this node.
    pub jobs: Counter,
    /// Latency of API `put`s (seconds).
    pub put_seconds: Histogram,
    /// Latency of API `get`s (seconds).
    pub get_seconds: Histogram,
    /// Latency of audits (seconds).
    pub audit_seconds: Histogram,
    /// Bytes in the block store.
    pub storage_used: Gauge<u64, AtomicU64>,
    /// Bytes offered.
    pub storage_offered: Gauge<u64, AtomicU64>,
    /// The background work (`warren_background_*`).
    pub background: Background,
    /// Credits (`warren_credits_*`).
    pub credits: CreditMetrics,
}

/// Credits (`warren_credits_*`, spec/credits.md).
#[derive(Clone, Debug, Default)]
pub struct CreditMetrics {
    /// Receipts accepted from peers.
    pub receipts_accepted: Counter,
    /// Receipts refused (forged, replayed, rolled back, conflicting, malformed).
    pub receipts_refused: Counter,
    /// Block requests refused for credit.
    pub requests_refused: Counter,
    /// Sum of the balances with every peer, nano-credits.
    pub balance: Gauge,
    /// Peers with an account.
    pub peers: Gauge,
}

impl CreditMetrics {
    fn register(&self, w: &mut Registry) {
        let c = w.sub_registry_with_prefix("credits");
        c.register(
            "receipts_accepted",
            "Credit receipts accepted from peers",
            self.receipts_accepted.clone(),
        );
        c.register(
            "receipts_refused",
            "Credit receipts refused (forged, replayed, rolled back, conflicting)",
            self.receipts_refused.clone(),
        );
        c.register(
            "requests_refused",
            "Block requests refused for credit",
            self.requests_refused.clone(),
        );
        c.register(
            "balance_nanocredits",
            "Sum of the balances with every peer",
            self.balance.clone(),
        );
        c.register("peers", "Peers with a credit account", self.peers.clone());
    }
}

/// The storage mesh's background work, against its budget (`warren_background_*`).
#[derive(Clone, Debug, Default)]
pub struct Background {
    /// Blocks checked by the sweep.
    pub checks: Counter,
    /// DHT queries spent.
    pub dht_queries: Counter,
    /// Audits spent.
    pub audits: Counter,
    /// Work refused by the budget and left for later.
    pub deferred: Counter,
    /// CPU share of the process over the last window, per mille of one core.
    pub cpu_permille: Gauge<u64, AtomicU64>,
    /// Blocks the sweep checks.
    pub blocks: Gauge<u64, AtomicU64>,
    /// Blocks waiting for an urgent check.
    pub urgent: Gauge<u64, AtomicU64>,
    /// The period in which every block is checked, seconds (the configured one, or longer where
    /// the budget cannot keep it).
    pub period_seconds: Gauge<u64, AtomicU64>,
}

impl Background {
    fn register(&self, w: &mut Registry) {
        let b = w.sub_registry_with_prefix("background");
        b.register(
            "checks",
            "Blocks checked by the background sweep",
            self.checks.clone(),
        );
        b.register(
            "dht_queries",
            "Background DHT queries",
            self.dht_queries.clone(),
        );
        b.register("audits", "Background audits", self.audits.clone());
        b.register(
            "deferred",
            "Background work refused by the budget and left for later",
            self.deferred.clone(),
        );
        b.register(
            "cpu_permille",
            "CPU share of the process over the last 10 s, per mille of one core",
            self.cpu_permille.clone(),
        );
        b.register(
            "blocks",
            "Blocks the background sweep checks",
            self.blocks.clone(),
        );
        b.register(
            "urgent",
            "Blocks waiting for an urgent check",
            self.urgent.clone(),
        );
        b.register_with_unit(
            "period",
            "The period in which every block is checked",
            Unit::Seconds,
            self.period_seconds.clone(),
        );
    }
}

fn latency() -> Histogram {
    // 1 ms to ~65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            blocks_stored: Counter::default(),
            blocks_refused: Counter::default(),
            blocks_served: Counter::default(),
            bytes_received: Counter::default(),
            bytes_sent: Counter::default(),
            puts: Counter::default(),
            gets: Counter::default(),
            put_bytes: Counter::default(),
            get_bytes: Counter::default(),
            audits: Family::default(),
            repairs: Counter::default(),
            circuits: Counter::default(),
            jobs: Counter::default(),
            put_seconds: latency(),
            get_seconds: latency(),
            audit_seconds: latency(),
            storage_used: Gauge::default(),
            storage_offered: Gauge::default(),
            background: Background::default(),
            credits: CreditMetrics::default(),
        }
    }
}

impl Counters {
    fn register(&self, r: &mut Registry) {
        let w = r.sub_registry_with_prefix("warren");
        w.register(
            "blocks_stored",
            "Replicas accepted from peers",
            self.blocks_stored.clone(),
        );
        w.register(
            "blocks_refused",
            "Replicas refused (offer exhausted or bad data)",
            self.blocks_refused.clone(),
        );
        w.register(
            "blocks_served",
            "Blocks served to peers",
            self.blocks_served.clone(),
        );
        w.register_with_unit(
            "received",
            "Bytes of replicas accepted from peers",
            Unit::Bytes,
            self.bytes_received.clone(),
        );
        w.register_with_unit(
            "sent",
            "Bytes of blocks served to peers",
            Unit::Bytes,
            self.bytes_sent.clone(),
        );
        w.register("puts", "Files stored through the API", self.puts.clone());
        w.register("gets", "Files read through the API", self.gets.clone());
        w.register_with_unit(
            "put",
            "Bytes stored through the API",
            Unit::Bytes,
            self.put_bytes.clone(),
        );
        w.register_with_unit(
            "get",
            "Bytes read through the API",
            Unit::Bytes,
            self.get_bytes.clone(),
        );
        w.register(
            "audits",
            "Proof-of-storage audits run, by result",
            self.audits.clone(),
        );
        w.register(
            "repairs",
            "Replicas re-created by repair passes",
            self.repairs.clone(),
        );
        w.register(
            "circuits",
            "Onion circuits built by this node",
            self.circuits.clone(),
        );
        w.register("jobs", "Inference jobs run or requested", self.jobs.clone());
        w.register_with_unit(
            "put",
            "Latency of API puts",
            Unit::Seconds,
            self.put_seconds.clone(),
        );
        w.register_with_unit(
            "get",
            "Latency of API gets",
            Unit::Seconds,
            self.get_seconds.clone(),
        );
        w.register_with_unit(
            "audit",
            "Latency of proof-of-storage audits",
            Unit::Seconds,
            self.audit_seconds.clone(),
        );
        w.register_with_unit(
            "storage_used",
            "Bytes in the block store",
            Unit::Bytes,
            self.storage_used.clone(),
        );
        w.register_with_unit(
            "storage_offered",
            "Bytes offered to the mesh",
            Unit::Bytes,
            self.storage_offered.clone(),
        );
        self.background.register(w);
        self.credits.register(w);
    }

    /// Counts one audit: `passed`, `failed`, or `unanswered` when it got no answer in time (not
    /// a failed proof).
    pub fn audit(&self, passed: bool, seconds: f64) {
        self.audit_result(if passed { "passed" } else { "failed" }, seconds);
    }

    /// Counts one audit that got no answer within the deadline.
    pub fn audit_unanswered(&self, seconds: f64) {
        self.audit_result("unanswered", seconds);
    }

    fn audit_result(&self, result: &'static str, seconds: f64) {
        self.audits.get_or_create(&AuditLabels { result }).inc();
        self.audit_seconds.observe(seconds);
    }
}

/// The registry, libp2p's recorders and warren's counters of one node, and the dashboard's feed.
pub struct Metrics {
    registry: Registry,
    libp2p: Libp2pMetrics,
    /// warren's counters.
    pub counters: Counters,
    /// What the dashboard lists besides the counters: jobs, circuits, storage refusals.
    pub activity: crate::view::Activity,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let libp2p = Libp2pMetrics::new(&mut registry);
        let counters = Counters::default();
        counters.register(&mut registry);
        Self {
            registry,
            libp2p,
            counters,
            activity: crate::view::Activity::default(),
        }
    }

    /// Records a libp2p event (swarm, kad, identify, ping, gossipsub, relay, dcutr).
    pub fn record<E>(&self, event: &E)
    where
        Libp2pMetrics: Recorder<E>,
    {
        self.libp2p.record(event);
    }

    /// The registry in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_warren_and_libp2p_metrics() {
        let m = Metrics::new();
        m.counters.puts.inc();
        m.counters.put_bytes.inc_by(1234);
        m.counters.audit(true, 0.01);
        m.counters.audit(false, 0.02);
        m.counters.put_seconds.observe(0.5);
        let text = m.encode();
        assert!(text.contains("warren_puts_total 1"), "{text}");
        assert!(text.contains("warren_put_bytes_total 1234"), "{text}");
        assert!(
            text.contains("warren_audits_total{result=\"passed\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("warren_audits_total{result=\"failed\"} 1"),
            "{text}"
        );
        assert!(text.contains("warren_put_seconds_bucket"), "{text}");
        assert!(text.contains("libp2p_"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    /// Every metric the shipped Grafana dashboard queries exists in the registry.
    #[test]
    fn grafana_dashboard_queries_existing_metrics() {
        use std::num::NonZeroU32;

        use libp2p::core::{ConnectedPoint, Endpoint, transport::PortUse};
        use libp2p::swarm::{ConnectionId, SwarmEvent};
        use libp2p::{Multiaddr, PeerId, dcutr, kad, ping, relay};

        let json = include_str!("../../deploy/grafana/warren-node.json");
        let m = Metrics::new();
        // Label families appear once they hold a sample: one event of each kind queried.
        let peer = PeerId::random();
        let id = ConnectionId::new_unchecked(1);
        let endpoint = ConnectedPoint::Dialer {
            address: Multiaddr::empty(),
            role_override: Endpoint::Dialer,
            port_use: PortUse::Reuse,
        };
        m.record(&SwarmEvent::<()>::ConnectionEstablished {
            peer_id: peer,
            connection_id: id,
            endpoint: endpoint.clone(),
            num_established: NonZeroU32::MIN,
            concurrent_dial_errors: None,
            established_in: std::time::Duration::from_millis(5),
        });
        m.record(&SwarmEvent::<()>::ConnectionClosed {
            peer_id: peer,
            connection_id: id,
            endpoint,
            num_established: 0,
            cause: None,
        });
        m.record(&kad::Event::InboundRequest {
            request: kad::InboundRequest::FindNode {
                num_closer_peers: 1,
            },
        });
        m.record(&relay::Event::ReservationReqAccepted {
            src_peer_id: peer,
            renewed: false,
        });
        m.record(&dcutr::Event {
            remote_peer_id: peer,
            result: Ok(id),
        });
        m.record(&ping::Event {
            peer,
            connection: id,
            result: Ok(std::time::Duration::from_millis(3)),
        });
        m.counters.audit(false, 0.1);
        let text = m.encode();
        let mut names: Vec<&str> = Vec::new();
        let bytes = json.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let rest = &json[i..];
            if (rest.starts_with("warren_") || rest.starts_with("libp2p_"))
                && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric())
            {
                let end = rest
                    .find(|c: char| !(c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit()))
                    .unwrap_or(rest.len());
                names.push(&rest[..end]);
                i += end;
            } else {
                i += 1;
            }
        }
        assert!(names.len() > 10, "{names:?}");
        for name in names {
            let base = ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            assert!(
                text.contains(&format!("# TYPE {base} ")),
                "the Grafana dashboard queries {name}, which the node does not export"
            );
        }
    }
}
