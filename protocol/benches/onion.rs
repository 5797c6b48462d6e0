//! 3-hop onion circuit build time on the sans-I/O machines in memory (every cell encoded and
//! decoded on each link, as on the wire), and the per-cell overhead.
//!
//! `cargo bench -p warren-protocol --bench onion [-- --builds 200]`
//!
//! The same figures on real loopback nodes, and `get --anon` throughput: `warren-bench onion`.
//! Under `cargo test` it builds a few circuits as a smoke test.

use std::{
    collections::VecDeque,
    error::Error,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use warren_protocol::{
    OnionSecret,
    onion::{CELL_LEN, Cell, Client, Direction, Hop, HopEvent, HopTarget, MAX_DATA, ReplayCache},
};

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench = args.iter().any(|a| a == "--bench");
    let mut builds = 200usize;
    if bench {
        let mut it = args.iter().filter(|a| *a != "--bench");
        while let Some(arg) = it.next() {
            let value = match arg.strip_prefix("--builds") {
                Some("") => it.next().ok_or("--builds needs a value")?.as_str(),
                Some(v) if v.starts_with('=') => &v[1..],
                _ => return Err(format!("unknown argument {arg}; flags: --builds N").into()),
            };
            builds = value.parse()?;
        }
    } else {
        // `cargo test`: a few builds.
        builds = 3;
    }

    let secrets: Vec<OnionSecret> = (0..3u8)
        .map(|i| OnionSecret::from_bytes([i + 7; 32]))
        .collect();
    let mut mem: Vec<f64> = Vec::new();
    for r in 0..builds.max(1) as u64 {
        mem.push(build_in_memory(&secrets, r)?.as_secs_f64() * 1e3);
    }
    let (m, p) = median_p90(&mut mem);
    println!(
        "3-hop circuit build, sans-I/O machines in memory ({builds} builds): median {m:.3} ms, p90 {p:.3} ms"
    );
    let overhead = (CELL_LEN - MAX_DATA) as f64 / CELL_LEN as f64;
    println!(
        "per-cell overhead: {} of {CELL_LEN} bytes = {:.2} % (1 command byte, 16-byte tag, 5-byte relay header)",
        CELL_LEN - MAX_DATA,
        overhead * 100.0
    );
    Ok(())
}

/// Builds one 3-hop circuit between the sans-I/O machines in memory (every cell encoded and
/// decoded on each link, as on the wire); returns the time it took.
fn build_in_memory(secrets: &[OnionSecret], round: u64) -> Result<Duration, Box<dyn Error>> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Distinct ephemeral seeds per build (snow's RNG derives the keys from them).
    let seed = |i: u64| -> [u8; 32] {
        let mut s = [0x5a; 32];
        s[..8].copy_from_slice(&(round * 16 + i).to_le_bytes());
        s
    };
    let started = Instant::now();
    let path = secrets
        .iter()
        .enumerate()
        .map(|(i, s)| HopTarget {
            peer: vec![i as u8 + 1],
            onion_key: s.public(),
        })
        .collect();
    let mut client = Client::new(path, (0..3).map(seed).collect(), now)?;
    let mut hops: Vec<Hop> = Vec::new();
    let mut replay: Vec<ReplayCache> = (0..3).map(|_| ReplayCache::new()).collect();
    let wire = |c: Cell| -> Result<Cell, Box<dyn Error>> { Ok(Cell::decode(&c.encode()?)?) };
    // (to node, from-side prev?, cell): node 0 = client, i = hop i.
    let mut queue: VecDeque<(usize, bool, Cell)> = VecDeque::new();
    while let Some(c) = client.poll_transmit() {
        queue.push_back((1, true, c));
    }
    while !client.is_built() {
        let (to, from_prev, cell) = queue
            .pop_front()
            .ok_or("the circuit stalled before it was built")?;
        let cell = wire(cell)?;
        if to == 0 {
            client.handle_cell(now, cell)?;
            while let Some(c) = client.poll_transmit() {
                queue.push_back((1, true, c));
            }
            continue;
        }
        let i = to - 1;
        if i == hops.len() {
            hops.push(Hop::accept(
                now,
                &secrets[i],
                &cell,
                seed(8 + i as u64),
                &mut replay[i],
                true,
                &[to as u8 - 1],
            )?);
        } else if from_prev {
            hops[i].handle_prev(cell)?;
        } else {
            hops[i].handle_next(cell)?;
        }
        while let Some(ev) = hops[i].poll_event() {
            if let HopEvent::Extend { create, .. } = ev {
                queue.push_back((to + 1, true, create));
            }
        }
        while let Some((dir, c)) = hops[i].poll_transmit() {
            match dir {
                Direction::Prev => queue.push_back((to - 1, false, c)),
                Direction::Next => queue.push_back((to + 1, true, c)),
            }
        }
    }
    Ok(started.elapsed())
}

/// Median and 90th percentile of `v` (sorted here).
fn median_p90(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.9))
}
