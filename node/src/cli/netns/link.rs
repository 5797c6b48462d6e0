//! The emulated links of `warren devnet --netns`, sans I/O: each node has an access link to one
//! switch; a frame from node A to node B waits on A's uplink (serialisation at the rate, half the
//! delay) and then on B's downlink (the same), so A to B takes the whole `--latency` one way and
//! each node's link carries `--rate` each way, as `tc netem delay … rate …` on both ends would.
//!
//! Queues are tail-dropped past a backlog of one round trip (at least 100 ms), as a router's
//! buffer; `--loss` drops frames at random on the uplink; `--jitter` adds up to that much delay
//! per frame without reordering. Times are passed in, so the unit tests below drive it with a
//! made-up clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What every access link does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkShape {
    /// One-way delay between two nodes (half on each access link).
    pub delay: Duration,
    /// Extra delay per frame, uniform in `[0, jitter)`, order kept.
    pub jitter: Duration,
    /// Bits per second of each access link, each way; `None`: no limit.
    pub rate_bps: Option<u64>,
    /// Frames lost per million on each uplink.
    pub loss_ppm: u32,
}

impl LinkShape {
    /// Longest a frame may wait in a queue before it is dropped instead.
    pub fn max_backlog(&self) -> Duration {
        (self.delay * 2).max(Duration::from_millis(100))
    }

    fn serialise(&self, len: usize) -> Duration {
        match self.rate_bps {
            Some(bps) if bps > 0 => {
                Duration::from_nanos((len as u64 * 8).saturating_mul(1_000_000_000) / bps)
            }
            _ => Duration::ZERO,
        }
    }
}

/// Most MAC addresses the switch remembers (frames carry any source address a node writes).
const MAX_MACS: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Port {
    up_free: Instant,
    down_free: Instant,
    last_delivery: Instant,
}

/// A learning switch with one shaped access link per port.
#[derive(Debug)]
pub(super) struct Switch {
    shape: LinkShape,
    ports: Vec<Port>,
    macs: HashMap<[u8; 6], usize>,
    rng: u64,
    /// Frames dropped: lost at random, or past a full queue.
    pub(super) dropped: u64,
}

/// Where a frame goes and when it is written out there.
pub(super) type Deliveries = Vec<(usize, Instant)>;

impl Switch {
    /// A switch of `ports` ports; `seed` drives loss and jitter.
    pub(super) fn new(shape: LinkShape, ports: usize, seed: u64, now: Instant) -> Switch {
        Switch {
            shape,
            ports: vec![
                Port {
                    up_free: now,
                    down_free: now,
                    last_delivery: now,
                };
                ports
            ],
            macs: HashMap::new(),
            rng: seed | 1,
            dropped: 0,
        }
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64*: loss and jitter need no more than this.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// An Ethernet frame read from port `from` at `now`: the ports it goes to and when each
    /// should write it; empty when it is dropped or not for anyone.
    pub(super) fn forward(&mut self, from: usize, frame: &[u8], now: Instant) -> Deliveries {
        if frame.len() < 14 || from >= self.ports.len() {
            return Vec::new();
        }
        let mut dst = [0u8; 6];
        let mut src = [0u8; 6];
        dst.copy_from_slice(&frame[..6]);
        src.copy_from_slice(&frame[6..12]);
        if src[0] & 1 == 0 {
            if self.macs.len() >= MAX_MACS && !self.macs.contains_key(&src) {
                self.macs.clear();
            }
            self.macs.insert(src, from);
        }
        let targets: Vec<usize> = match self.macs.get(&dst) {
            Some(&to) if dst[0] & 1 == 0 => {
                if to == from {
                    return Vec::new();
                }
                vec![to]
            }
            _ => (0..self.ports.len()).filter(|&p| p != from).collect(),
        };
        if self.shape.loss_ppm > 0 && self.next_rand() % 1_000_000 < u64::from(self.shape.loss_ppm)
        {
            self.dropped += 1;
            return Vec::new();
        }
        let len = frame.len();
        let ser = self.shape.serialise(len);
        let backlog = self.shape.max_backlog();
        let half = self.shape.delay / 2;
        let up = &mut self.ports[from];
        let start = up.up_free.max(now);
        if start.duration_since(now) > backlog {
            self.dropped += 1;
            return Vec::new();
        }
        up.up_free = start + ser;
        let at_switch = up.up_free + half;
        let mut out = Vec::with_capacity(targets.len());
        for to in targets {
            let jitter = if self.shape.jitter.is_zero() {
                Duration::ZERO
            } else {
                let nanos = self.shape.jitter.as_nanos().max(1) as u64;
                Duration::from_nanos(self.next_rand() % nanos)
            };
            let down = &mut self.ports[to];
            let start = down.down_free.max(at_switch);
            if start.duration_since(at_switch) > backlog {
                self.dropped += 1;
                continue;
            }
            down.down_free = start + ser;
            let at = (down.down_free + half + jitter).max(down.last_delivery);
            down.last_delivery = at;
            out.push((to, at));
        }
        out
    }
}

/// `40ms`, `1.5s`, `250us`, `0`: a duration for the link flags.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = split_unit(t);
    let scale = match unit {
        "" if num == "0" => 0.0,
        "s" => 1.0,
        "ms" => 1e-3,
        "us" => 1e-6,
        _ => {
            return Err(format!(
                "{text:?} is not a duration: write e.g. 40ms, 1s or 250us"
            ));
        }
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration: write e.g. 40ms, 1s or 250us"))?;
    if !(0.0..=60.0).contains(&(v * scale)) {
        return Err(format!("{text:?}: a link delay is between 0 and 60 s"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

/// `50mbit`, `1gbit`, `500kbit`, `2000000bit`: bits per second, as tc writes rates.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let (num, unit) = split_unit(&t);
    let scale = match unit {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        _ => {
            return Err(format!(
                "{text:?} is not a rate: write e.g. 50mbit, 1gbit or 500kbit"
            ));
        }
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a rate: write e.g. 50mbit, 1gbit or 500kbit"))?;
    let bps = v * scale;
    if !(8_000.0..=100e9).contains(&bps) {
        return Err(format!(
            "{text:?}: a link rate is between 8kbit and 100gbit"
        ));
    }
    Ok(bps as u64)
}

/// `0.1%`: frames lost per million.
pub fn parse_loss(text: &str) -> Result<u32, String> {
    let bad = || format!("{text:?} is not a loss rate: write e.g. 0.1% (0% to 50%)");
    let num = text.trim().strip_suffix('%').ok_or_else(bad)?;
    let v: f64 = num.trim().parse().map_err(|_| bad())?;
    if !(0.0..=50.0).contains(&v) {
        return Err(bad());
    }
    Ok((v * 10_000.0).round() as u32)
}

fn split_unit(t: &str) -> (&str, &str) {
    let at = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    (&t[..at], t[at..].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(dst: u8, src: u8, len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, dst]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, src]);
        f
    }

    #[test]
    fn flags_parse_as_tc_writes_them() {
        assert_eq!(parse_duration("40ms"), Ok(Duration::from_millis(40)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("40").is_err());
        assert!(parse_duration("2h").is_err());
        assert_eq!(parse_rate("50mbit"), Ok(50_000_000));
        assert_eq!(parse_rate("1Gbit"), Ok(1_000_000_000));
        assert!(parse_rate("50mb").is_err());
        assert!(parse_rate("1bit").is_err());
        assert_eq!(parse_loss("0.1%"), Ok(1000));
        assert_eq!(parse_loss("0%"), Ok(0));
        assert!(parse_loss("0.1").is_err());
        assert!(parse_loss("80%").is_err());
    }

    #[test]
    fn a_frame_takes_the_delay_and_both_serialisations() {
        let t0 = Instant::now();
        let shape = LinkShape {
            delay: Duration::from_millis(40),
            rate_bps: Some(8_000_000), // 1 byte per µs
            ..LinkShape::default()
        };
        let mut sw = Switch::new(shape, 3, 7, t0);
        // Unknown destination: flooded to both other ports.
        let d = sw.forward(0, &frame(2, 1, 1000), t0);
        assert_eq!(d.len(), 2);
        let want = t0 + Duration::from_millis(40) + Duration::from_micros(2000);
        assert!(d.iter().all(|&(_, at)| at == want), "{d:?}");
        // Port 1 answers port 0, whose address the switch learnt: to port 0 only.
        let d = sw.forward(1, &frame(1, 2, 1000), t0);
        assert_eq!(d, vec![(0, want)]);
    }

    #[test]
    fn the_rate_spaces_frames_and_a_full_queue_drops() {
        let t0 = Instant::now();
        let shape = LinkShape {
            delay: Duration::from_millis(10),
            rate_bps: Some(8_000_000),
            ..LinkShape::default()
        };
        let mut sw = Switch::new(shape, 2, 7, t0);
        sw.forward(1, &frame(1, 2, 64), t0); // learn port 1
        let mut last = t0;
        let mut sent = 0;
        for _ in 0..200 {
            let d = sw.forward(0, &frame(2, 1, 1000), t0);
            if let Some(&(to, at)) = d.first() {
                assert_eq!(to, 1);
                assert!(
                    at >= last + Duration::from_micros(1000),
                    "spaced by the rate"
                );
                last = at;
                sent += 1;
            }
        }
        // 100 ms of backlog at 1 byte/µs: about 100 frames of 1000 bytes get in, the rest drop.
        assert!((100..=102).contains(&sent), "{sent}");
        assert_eq!(sw.dropped, 200 - sent);
    }

    #[test]
    fn loss_and_jitter_keep_order_and_are_near_their_rates() {
        let t0 = Instant::now();
        let shape = LinkShape {
            delay: Duration::from_millis(20),
            jitter: Duration::from_millis(5),
            loss_ppm: 100_000, // 10 %
            rate_bps: None,
        };
        let mut sw = Switch::new(shape, 2, 42, t0);
        sw.forward(1, &frame(1, 2, 64), t0);
        let mut last = t0;
        let mut got = 0;
        for i in 0..10_000u64 {
            let now = t0 + Duration::from_micros(i * 10);
            for (_, at) in sw.forward(0, &frame(2, 1, 100), now) {
                assert!(at >= last);
                assert!(at >= now + Duration::from_millis(20));
                assert!(at < now + Duration::from_millis(25) || at == last);
                last = at;
                got += 1;
            }
        }
        assert!((8_700..9_300).contains(&got), "{got}");
    }
}
