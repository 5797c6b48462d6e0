//! The figures of one `warren-bench net` setting, and the rows they make: each figure with its
//! reference from the same run and their ratio.

use super::Shape;

/// Mbit per MiB.
pub(crate) const MBIT_PER_MIB: f64 = 8.388608;

/// What one setting measured.
#[derive(Debug, Clone)]
pub(crate) struct Figures {
    /// The links, or none on loopback.
    pub(crate) shape: Option<Shape>,
    /// MiB of each file moved.
    pub(crate) mib: f64,
    /// The link rate in Mbit/s (on loopback: a plain TCP copy in the same run).
    pub(crate) link_mbit: f64,
    /// Median round trip (libp2p ping) from the fetcher to the other nodes.
    pub(crate) rtt_ms: f64,
    pub(crate) lookup_p50_ms: f64,
    pub(crate) lookup_p99_ms: f64,
    pub(crate) get1_mbit: f64,
    /// The same get with `--no-cache`.
    pub(crate) get1_nocache_mbit: f64,
    pub(crate) get3_mbit: f64,
    /// Share of the 3-holder get's bytes each holder delivered.
    pub(crate) get3_shares: Vec<f64>,
    pub(crate) sendme_mbit: Option<f64>,
    pub(crate) put_rf3_s: f64,
    pub(crate) put_rf3_copies: Option<u64>,
    pub(crate) direct_mbit: f64,
    pub(crate) anon_mbit: f64,
    pub(crate) circuit_ms: f64,
    pub(crate) circuit_builds: usize,
}

/// One line of the table: a figure, its reference, their ratio.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub(crate) figure: String,
    pub(crate) value: f64,
    pub(crate) unit: &'static str,
    pub(crate) reference: String,
    pub(crate) reference_value: f64,
    pub(crate) ratio: f64,
    pub(crate) ratio_means: &'static str,
}

/// `loopback` or `20ms/100Mbit`.
pub(crate) fn label(shape: Option<Shape>) -> String {
    match shape {
        None => "loopback".into(),
        Some(s) => format!(
            "{}ms/{}Mbit",
            s.latency.as_millis(),
            s.rate_bps as f64 / 1e6
        ),
    }
}

impl Figures {
    /// Nothing measured yet.
    pub(crate) fn new(shape: Option<Shape>, mib: f64, link_mbit: f64) -> Figures {
        Figures {
            shape,
            mib,
            link_mbit,
            rtt_ms: f64::NAN,
            lookup_p50_ms: f64::NAN,
            lookup_p99_ms: f64::NAN,
            get1_mbit: f64::NAN,
            get1_nocache_mbit: f64::NAN,
            get3_mbit: f64::NAN,
            get3_shares: Vec::new(),
            sendme_mbit: None,
            put_rf3_s: f64::NAN,
            put_rf3_copies: None,
            direct_mbit: f64::NAN,
            anon_mbit: f64::NAN,
            circuit_ms: f64::NAN,
            circuit_builds: 0,
        }
    }

    /// The table's rows for this setting.
    pub(crate) fn rows(&self) -> Vec<Row> {
        let link = if self.shape.is_some() {
            format!("link rate {:.0} Mbit/s", self.link_mbit)
        } else {
            format!("plain TCP copy {:.0} Mbit/s", self.link_mbit)
        };
        let rtt = format!("RTT {:.2} ms (ping)", self.rtt_ms);
        let shares = self
            .get3_shares
            .iter()
            .map(|s| format!("{:.0}%", s * 100.0))
            .collect::<Vec<_>>()
            .join("/");
        let mut rows = vec![
            Row {
                figure: format!("get {:.0} MiB, 1 holder", self.mib),
                value: self.get1_mbit,
                unit: "Mbit/s",
                reference: link.clone(),
                reference_value: self.link_mbit,
                ratio: self.get1_mbit / self.link_mbit,
                ratio_means: "of link",
            },
            Row {
                figure: "get, 1 holder, --no-cache".into(),
                value: self.get1_nocache_mbit,
                unit: "Mbit/s",
                reference: format!("get keeping a copy {:.1} Mbit/s", self.get1_mbit),
                reference_value: self.get1_mbit,
                ratio: self.get1_nocache_mbit / self.get1_mbit,
                ratio_means: "x cached",
            },
            Row {
                figure: format!("get, 3 holders (bytes {shares})"),
                value: self.get3_mbit,
                unit: "Mbit/s",
                reference: link.clone(),
                reference_value: self.link_mbit,
                ratio: self.get3_mbit / self.link_mbit,
                ratio_means: "of link",
            },
        ];
        if let Some(s) = self.sendme_mbit {
            rows.push(Row {
                figure: "sendme, same file, same nodes".into(),
                value: s,
                unit: "Mbit/s",
                reference: link.clone(),
                reference_value: self.link_mbit,
                ratio: s / self.link_mbit,
                ratio_means: "of link",
            });
            rows.push(Row {
                figure: "warren get (1 holder)".into(),
                value: self.get1_mbit,
                unit: "Mbit/s",
                reference: format!("sendme {s:.1} Mbit/s"),
                reference_value: s,
                ratio: self.get1_mbit / s,
                ratio_means: "x sendme",
            });
        }
        // Three copies leave the origin's uplink: the least time the link allows.
        let ideal = 3.0 * self.mib * MBIT_PER_MIB / self.link_mbit;
        rows.push(Row {
            figure: format!(
                "put at RF 3 ({} copies)",
                self.put_rf3_copies.map_or("?".into(), |c| c.to_string())
            ),
            value: self.put_rf3_s,
            unit: "s",
            reference: format!("3 copies at the link rate {ideal:.2} s"),
            reference_value: ideal,
            ratio: ideal / self.put_rf3_s,
            ratio_means: "of ideal",
        });
        for (what, v) in [
            ("DHT record lookup p50", self.lookup_p50_ms),
            ("DHT record lookup p99", self.lookup_p99_ms),
            (
                &*format!("3-hop circuit build ({} builds)", self.circuit_builds),
                self.circuit_ms,
            ),
        ] {
            rows.push(Row {
                figure: what.to_owned(),
                value: v,
                unit: "ms",
                reference: rtt.clone(),
                reference_value: self.rtt_ms,
                ratio: v / self.rtt_ms,
                ratio_means: "RTTs",
            });
        }
        rows.push(Row {
            figure: "get --anon".into(),
            value: self.anon_mbit,
            unit: "Mbit/s",
            reference: format!("direct get {:.1} Mbit/s", self.direct_mbit),
            reference_value: self.direct_mbit,
            ratio: self.anon_mbit / self.direct_mbit,
            ratio_means: "x direct",
        });
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rows_hold_each_figure_with_its_reference() {
        let shape = Shape {
            latency: Duration::from_millis(20),
            rate_bps: 100_000_000,
        };
        let mut f = Figures::new(Some(shape), 32.0, 100.0);
        f.get1_mbit = 80.0;
        f.sendme_mbit = Some(40.0);
        f.rtt_ms = 40.0;
        f.circuit_ms = 240.0;
        f.put_rf3_s = 16.0;
        f.direct_mbit = 80.0;
        f.anon_mbit = 40.0;
        let rows = f.rows();
        assert_eq!(label(Some(shape)), "20ms/100Mbit");
        assert_eq!(rows[0].ratio, 0.8);
        let vs = rows.iter().find(|r| r.ratio_means == "x sendme").unwrap();
        assert_eq!(vs.ratio, 2.0);
        let build = rows.iter().find(|r| r.figure.starts_with("3-hop")).unwrap();
        assert_eq!(build.ratio, 6.0);
        // 3 × 32 MiB at 100 Mbit/s: 8.05 s of 16.
        let put = rows.iter().find(|r| r.figure.starts_with("put")).unwrap();
        assert!((put.ratio - 0.503).abs() < 0.001, "{}", put.ratio);
        assert_eq!(rows.last().unwrap().ratio, 0.5);
    }
}
