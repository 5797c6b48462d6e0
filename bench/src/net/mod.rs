//! `warren-bench net`: the headline figures of a `warren devnet` on loopback and on shaped links
//! (`warren devnet --netns --latency … --rate …`), each next to its reference in the same run:
//! get throughput from 1 and from 3 holders as a fraction of the link rate, the same file sent
//! with iroh's `sendme` (whole processes timed), put at RF 3, DHT record lookups, 3-hop circuit
//! builds in round trips, and `get --anon` next to a direct get. Prints a table, writes
//! `net.csv` and plots the shaped-link sweep (`net_vs_rate.png`, `net_vs_latency.png`).
//!
//! Every figure is a whole `warren` (or `sendme`) process run on the node, inside its network
//! namespace on the shaped links, as a user would run it.

mod devnet;
mod figures;
mod report;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

pub(crate) use devnet::Shape;
use devnet::{Devnet, Node, timed};
use figures::Figures;

/// Nodes of each devnet: 0 bootstraps, 1..=3 hold, 4 fetches, 5 is one more place for RF 3.
const NODES: usize = 6;
const FETCHER: usize = 4;
/// Seconds of transfer at the link rate a shaped setting's file is sized for (at most
/// `--size-mib`), so that a slow link does not make the run long.
const SECS_PER_TRANSFER: u64 = 5;

/// What `warren-bench net` was asked to do.
pub(crate) struct NetBench {
    pub(crate) size_mib: u64,
    pub(crate) shapes: Vec<Shape>,
    pub(crate) loopback: bool,
    pub(crate) rounds: usize,
    pub(crate) lookups: usize,
    pub(crate) builds: usize,
    pub(crate) out: PathBuf,
    pub(crate) seed: u64,
}

/// Parses `20ms/100mbit`.
pub(crate) fn parse_shape(s: &str) -> Result<Shape, String> {
    let (lat, rate) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: want LATENCY/RATE, e.g. 20ms/100mbit"))?;
    Ok(Shape {
        latency: warren_node::cli::netns::parse_duration(lat)?,
        rate_bps: warren_node::cli::netns::parse_rate(rate)?,
    })
}

/// iroh's `sendme`: `given`, else on PATH, in ~/.cargo/bin or /work/target-sendme/release.
pub(crate) fn find_sendme(given: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(p) = given {
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("no sendme at {}", p.display()))
        };
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.push("/work/target-sendme/release".into());
    dirs.into_iter()
        .map(|d| d.join("sendme"))
        .find(|p| p.is_file())
        .ok_or_else(|| "sendme not found (cargo install sendme, or pass --sendme PATH)".into())
}

/// Runs every setting, prints the table, writes the CSV and the plots.
pub(crate) async fn net(
    exe: &Path,
    sendme: Result<PathBuf, String>,
    b: NetBench,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&b.out).with_context(|| format!("creating {}", b.out.display()))?;
    let tmp = std::env::temp_dir().join(format!("warren-bench-net-{}", std::process::id()));
    let mut all: Vec<Figures> = Vec::new();
    let mut settings: Vec<Option<Shape>> = Vec::new();
    if b.loopback {
        settings.push(None);
    }
    if !b.shapes.is_empty() {
        match devnet::netns_unavailable() {
            Some(why) => {
                println!("shaped links skipped: warren devnet --netns cannot run here: {why}")
            }
            None => settings.extend(b.shapes.iter().copied().map(Some)),
        }
    }
    if let Err(why) = &sendme {
        println!("sendme lines skipped: {why}");
    }
    for (i, shape) in settings.into_iter().enumerate() {
        let dir = tmp.join(format!("setting-{i}"));
        let label = figures::label(shape);
        let started = Instant::now();
        println!("== {label}");
        match setting(exe, sendme.as_ref().ok(), &b, &dir, shape).await {
            Ok(f) => {
                println!("   done in {:.0} s", started.elapsed().as_secs_f64());
                all.push(f);
            }
            Err(e) => println!(
                "   {label} failed after {:.0} s: {e:#}",
                started.elapsed().as_secs_f64()
            ),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = std::fs::remove_dir_all(&tmp);
    report::print_table(&all);
    let csv = b.out.join("net.csv");
    std::fs::write(&csv, report::csv(&all))
        .with_context(|| format!("writing {}", csv.display()))?;
    println!("wrote {}", csv.display());
    for png in report::plots(&b.out, &all)? {
        println!("wrote {}", png.display());
    }
    Ok(())
}

/// Bytes of the file of one setting: `size_mib`, or less on a slow link.
fn file_bytes(size_mib: u64, shape: Option<Shape>) -> u64 {
    let cap = match shape {
        Some(s) => (s.rate_bps / 8 * SECS_PER_TRANSFER) >> 20,
        None => size_mib,
    };
    size_mib.min(cap).max(1) << 20
}

/// Writes `bytes` of seeded random data (BLAKE3's output stream: incompressible, stored raw).
fn write_random(path: &Path, bytes: u64, seed: u64) -> anyhow::Result<()> {
    use std::io::Write;
    let mut h = blake3::Hasher::new();
    h.update(b"warren-bench net");
    h.update(&seed.to_le_bytes());
    let mut xof = h.finalize_xof();
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left.min(buf.len() as u64))?;
        xof.fill(&mut buf[..n]);
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(())
}

/// `warren put PATH --rf RF` on `node`; the CID.
async fn put(
    exe: &Path,
    node: &Node,
    path: &Path,
    rf: usize,
) -> anyhow::Result<(String, Value, Duration)> {
    let p = path.to_str().context("path not UTF-8")?;
    let started = Instant::now();
    let v = node.json(exe, &["put", p, "--rf", &rf.to_string()]).await?;
    let took = started.elapsed();
    let cid = v["cid"].as_str().context("put printed no cid")?.to_owned();
    Ok((cid, v, took))
}

/// Waits until `node` finds at least `k` holders (other than itself) of every block of `cid`.
async fn await_holders(exe: &Path, node: &Node, cid: &str, k: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let w = node.json(exe, &["where", cid]).await;
        let ok = w
            .as_ref()
            .ok()
            .and_then(|w| w["blocks"].as_array())
            .is_some_and(|bs| {
                !bs.is_empty()
                    && bs.iter().all(|b| {
                        b["holders"].as_array().is_some_and(|hs| {
                            hs.iter().filter(|h| h["this_node"] != true).count() >= k
                        })
                    })
            });
        if ok {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{cid}: fewer than {k} holders of some block found in 60 s");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A timed whole-process `warren get CID -o OUT [FLAG]` on `node`, checked byte-identical with
/// `original`, then the fetched copy dropped (`warren gc`); seconds.
async fn get(
    exe: &Path,
    node: &Node,
    cid: &str,
    out: &Path,
    original: &Path,
    flag: Option<&str>,
) -> anyhow::Result<f64> {
    let o = out.to_str().context("path not UTF-8")?;
    let mut args = vec!["get", cid, "-o", o];
    args.extend(flag);
    let (_, took) = timed(node.warren(exe, &args)).await?;
    anyhow::ensure!(
        std::fs::read(out)? == std::fs::read(original)?,
        "get {cid}: the bytes differ from the file put"
    );
    let _ = std::fs::remove_file(out);
    timed(node.warren(exe, &["gc"])).await?;
    Ok(took.as_secs_f64())
}

/// Bytes each peer has delivered to `node` so far (its credit ledger), by peer id.
async fn delivered(exe: &Path, node: &Node) -> anyhow::Result<Vec<(String, u64)>> {
    let v = node.json(exe, &["credits"]).await?;
    Ok(v["peers"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| {
                    Some((
                        p["peer"].as_str()?.to_owned(),
                        p["delivered_by_peer"]["bytes"].as_u64()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Sends `file` with `sendme` from `from` to `to` (`--relay disabled`, direct addresses); the
/// receiving process's seconds, checked byte-identical.
async fn sendme_copy(
    sendme: &Path,
    from: &Node,
    to: &Node,
    file: &Path,
    dir: &Path,
) -> anyhow::Result<f64> {
    let (send_dir, recv_dir) = (dir.join("send"), dir.join("recv"));
    std::fs::create_dir_all(&send_dir)?;
    std::fs::create_dir_all(&recv_dir)?;
    std::fs::copy(file, send_dir.join("f.bin"))?;
    let log = dir.join("send.out");
    let mut sender = from
        .command(sendme)
        .args([
            "send",
            "f.bin",
            "--relay",
            "disabled",
            "--ticket-type",
            "addresses",
            "--no-progress",
        ])
        .current_dir(&send_dir)
        .stdout(std::fs::File::create(&log)?)
        .stderr(std::fs::File::create(dir.join("send.err"))?)
        .spawn()
        .context("spawning sendme send")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let ticket = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(t) = text
            .split(|c: char| !c.is_ascii_alphanumeric())
            .find(|w| w.starts_with("blob") && w.len() > 20)
        {
            break t.to_owned();
        }
        if Instant::now() > deadline {
            let _ = sender.kill().await;
            bail!("sendme send printed no ticket in 30 s: {text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut recv = to.command(sendme);
    recv.args(["receive", &ticket, "--relay", "disabled", "--no-progress"])
        .current_dir(&recv_dir);
    let result = tokio::time::timeout(Duration::from_secs(300), timed(recv)).await;
    let _ = sender.kill().await;
    let (_, took) = result.map_err(|_| anyhow::anyhow!("sendme receive took over 300 s"))??;
    anyhow::ensure!(
        std::fs::read(recv_dir.join("f.bin"))? == std::fs::read(file)?,
        "sendme: the bytes differ"
    );
    let _ = std::fs::remove_dir_all(&send_dir);
    let _ = std::fs::remove_dir_all(&recv_dir);
    Ok(took.as_secs_f64())
}

/// Median of `v` (NaN when empty).
fn median(mut v: Vec<f64>) -> f64 {
    crate::nodes::spread(&mut v).1
}

/// The `q` quantile of `v` (nearest rank; NaN when empty).
fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

/// One setting: a devnet of [`NODES`] nodes, every figure measured on it.
async fn setting(
    exe: &Path,
    sendme: Option<&PathBuf>,
    b: &NetBench,
    dir: &Path,
    shape: Option<Shape>,
) -> anyhow::Result<Figures> {
    let bytes = file_bytes(b.size_mib, shape);
    let mib = bytes as f64 / f64::from(1 << 20);
    let files = dir.join("files");
    std::fs::create_dir_all(&files)?;
    let file = |name: &str, seed: u64| -> anyhow::Result<PathBuf> {
        let p = files.join(name);
        write_random(&p, bytes, b.seed * 1000 + seed)?;
        Ok(p)
    };
    // The reference on loopback: a plain TCP copy of the same bytes in this process.
    let link_mbit = match shape {
        Some(s) => s.rate_bps as f64 / 1e6,
        None => {
            let data = std::sync::Arc::new(std::fs::read(file("plain.bin", 0)?)?);
            crate::fetch::plain_tcp_copy(data, None).await? * figures::MBIT_PER_MIB
        }
    };
    let mbit = |secs: f64| mib * figures::MBIT_PER_MIB / secs;
    let started = Instant::now();
    let net = Devnet::start(exe, &dir.join("devnet"), NODES, shape).await?;
    let result = async {
        println!(
            "   devnet of {NODES} up after {:.1} s; files of {mib:.0} MiB",
            started.elapsed().as_secs_f64()
        );
        let n = &net.nodes;
        let fetcher = &n[FETCHER];
        let mut f = Figures::new(shape, mib, link_mbit);

        // Round trip: libp2p's ping from the fetcher to every other node, the median.
        let peers = fetcher.json(exe, &["peers"]).await?;
        let rtts: Vec<f64> = peers
            .as_array()
            .map(|ps| ps.iter().filter_map(|p| p["rtt_ms"].as_f64()).collect())
            .unwrap_or_default();
        f.rtt_ms = median(rtts);

        // DHT record lookups: the fetcher looks up every other node's record, timed inside the
        // node's namespace by this benchmark (no process start in the figure).
        let others: Vec<&str> = n
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != FETCHER)
            .map(|(_, x)| x.peer.as_str())
            .collect();
        let me = std::env::current_exe()?;
        let mut cmd = fetcher.command(&me);
        cmd.arg("lookups")
            .arg("--data-dir")
            .arg(&fetcher.dir)
            .args([
                "--peers",
                &others.join(","),
                "--count",
                &b.lookups.to_string(),
            ]);
        let (out, _) = timed(cmd).await?;
        let mut ms: Vec<f64> =
            serde_json::from_slice(&out.stdout).context("lookups printed no JSON")?;
        f.lookup_p50_ms = quantile(&mut ms, 0.5);
        f.lookup_p99_ms = quantile(&mut ms, 0.99);
        println!(
            "   rtt {:.1} ms, record lookup p50 {:.1} ms p99 {:.1} ms ({} lookups)",
            f.rtt_ms,
            f.lookup_p50_ms,
            f.lookup_p99_ms,
            ms.len()
        );

        // Get from 1 holder.
        let one = file("one.bin", 1)?;
        let (cid1, _, _) = put(exe, &n[1], &one, 0).await?;
        await_holders(exe, fetcher, &cid1, 1).await?;
        let out = files.join("out.bin");
        let mut secs = Vec::new();
        for _ in 0..b.rounds {
            secs.push(get(exe, fetcher, &cid1, &out, &one, None).await?);
        }
        f.get1_mbit = mbit(median(secs));
        // The same file with `--no-cache`: the fetcher keeps no copy (checked).
        let mut secs = Vec::new();
        for _ in 0..b.rounds {
            secs.push(get(exe, fetcher, &cid1, &out, &one, Some("--no-cache")).await?);
            let w = fetcher.json(exe, &["where", &cid1]).await?;
            let kept = w["blocks"].as_array().map_or(0, |bs| {
                bs.iter()
                    .filter(|b| {
                        b["holders"]
                            .as_array()
                            .is_some_and(|hs| hs.iter().any(|h| h["this_node"] == true))
                    })
                    .count()
            });
            // The manifests are stored to plan the fetch; no chunk may be.
            anyhow::ensure!(
                kept <= 1,
                "get --no-cache left {kept} blocks in the fetcher's store"
            );
        }
        f.get1_nocache_mbit = mbit(median(secs));
        println!(
            "   get from 1 holder: {:.1} Mbit/s, with --no-cache {:.1} Mbit/s",
            f.get1_mbit, f.get1_nocache_mbit
        );

        // Get from 3 holders: the same file put on nodes 1, 2 and 3 (equal CIDs), so every block
        // has exactly three holders and the fetcher none.
        let three = file("three.bin", 2)?;
        let (cid3, _, _) = put(exe, &n[1], &three, 0).await?;
        for h in &n[2..=3] {
            let (c, _, _) = put(exe, h, &three, 0).await?;
            anyhow::ensure!(c == cid3, "equal files gave different CIDs: {c} vs {cid3}");
        }
        await_holders(exe, fetcher, &cid3, 3).await?;
        let mut secs = Vec::new();
        let holders: Vec<&str> = n[1..=3].iter().map(|x| x.peer.as_str()).collect();
        let mut shares = [0u64; 3];
        for _ in 0..b.rounds {
            let before = delivered(exe, fetcher).await?;
            secs.push(get(exe, fetcher, &cid3, &out, &three, None).await?);
            let after = delivered(exe, fetcher).await?;
            for (i, h) in holders.iter().enumerate() {
                let get =
                    |v: &[(String, u64)]| v.iter().find(|(p, _)| p == h).map_or(0, |(_, b)| *b);
                shares[i] += get(&after).saturating_sub(get(&before));
            }
        }
        f.get3_mbit = mbit(median(secs));
        let total: u64 = shares.iter().sum::<u64>().max(1);
        f.get3_shares = shares.iter().map(|s| *s as f64 / total as f64).collect();
        println!(
            "   get from 3 holders: {:.1} Mbit/s, shares {:?}",
            f.get3_mbit, f.get3_shares
        );

        // sendme, the same 1-holder file between the same two nodes.
        if let Some(s) = sendme {
            let mut secs = Vec::new();
            for _ in 0..b.rounds {
                secs.push(sendme_copy(s, &n[1], fetcher, &one, &dir.join("sendme")).await?);
            }
            let rate = mbit(median(secs));
            f.sendme_mbit = Some(rate);
            println!("   sendme: {rate:.1} Mbit/s");
        }

        // Put at RF 3 from node 1: three copies leave its uplink.
        let rf3 = file("rf3.bin", 3)?;
        let (_, v, took) = put(exe, &n[1], &rf3, 3).await?;
        f.put_rf3_s = took.as_secs_f64();
        f.put_rf3_copies = v["replication"]["copies"].as_u64();
        println!(
            "   put at RF 3: {:.2} s ({:?} copies)",
            f.put_rf3_s, f.put_rf3_copies
        );

        // get --anon next to a direct get of the same file from the same holder.
        let anon = file("anon.bin", 4)?;
        let (cida, _, _) = put(exe, &n[2], &anon, 0).await?;
        await_holders(exe, fetcher, &cida, 1).await?;
        let direct = get(exe, fetcher, &cida, &out, &anon, None).await?;
        let through = get(exe, fetcher, &cida, &out, &anon, Some("--anon")).await?;
        f.direct_mbit = mbit(direct);
        f.anon_mbit = mbit(through);
        println!(
            "   direct get {:.1} Mbit/s, get --anon {:.1} Mbit/s",
            f.direct_mbit, f.anon_mbit
        );

        // 3-hop circuit builds: small anonymous gets of fresh files, build times as the
        // fetcher recorded them.
        for i in 0..b.builds {
            let small = files.join(format!("small-{i}.bin"));
            write_random(&small, 1024, b.seed * 1000 + 100 + i as u64)?;
            let (c, _, _) = put(exe, &n[1], &small, 0).await?;
            await_holders(exe, fetcher, &c, 1).await?;
            get(exe, fetcher, &c, &out, &small, Some("--anon")).await?;
        }
        let circuits = fetcher.json(exe, &["circuits"]).await?;
        let builds: Vec<f64> = circuits
            .as_array()
            .map(|cs| {
                cs.iter()
                    .filter(|c| c["role"] == "client")
                    .filter_map(|c| c["build_ms"].as_f64())
                    .collect()
            })
            .unwrap_or_default();
        f.circuit_builds = builds.len();
        f.circuit_ms = median(builds);
        println!(
            "   3-hop circuit build: {:.0} ms median of {}",
            f.circuit_ms, f.circuit_builds
        );
        anyhow::Ok(f)
    }
    .await;
    net.stop().await;
    result
}

/// The hidden `warren-bench lookups`: run inside a node's namespace, times `count` record
/// lookups through the node's API (round robin over `peers`) and prints their milliseconds as
/// a JSON array.
pub(crate) async fn lookups(data_dir: &Path, peers: &[String], count: usize) -> anyhow::Result<()> {
    let api = warren_node::cli::client::ApiClient::from_data_dir(data_dir)?;
    anyhow::ensure!(!peers.is_empty(), "no peers to look up");
    let mut ms = Vec::with_capacity(count);
    for i in 0..count {
        let peer = &peers[i % peers.len()];
        let started = Instant::now();
        let _: Value = api.get(&format!("/v1/record/{peer}")).await?;
        ms.push(started.elapsed().as_secs_f64() * 1e3);
    }
    println!("{}", serde_json::to_string(&ms)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse_and_size_files_for_slow_links() {
        let s = parse_shape("80ms/20mbit").unwrap();
        assert_eq!(s.latency, Duration::from_millis(80));
        assert_eq!(s.rate_bps, 20_000_000);
        assert!(parse_shape("80ms").is_err());
        // 20 Mbit/s for 5 s is 11.9 MiB: 11 MiB, not 32.
        assert_eq!(file_bytes(32, Some(s)), 11 << 20);
        assert_eq!(file_bytes(32, None), 32 << 20);
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).rev().collect();
        assert_eq!(quantile(&mut v, 0.5), 50.0);
        assert_eq!(quantile(&mut v, 0.99), 99.0);
        assert!(quantile(&mut [], 0.5).is_nan());
    }

    #[test]
    fn random_files_are_seeded() {
        let dir =
            std::env::temp_dir().join(format!("warren-bench-net-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b, c) = (dir.join("a"), dir.join("b"), dir.join("c"));
        write_random(&a, 3 << 20, 1).unwrap();
        write_random(&b, 3 << 20, 1).unwrap();
        write_random(&c, 3 << 20, 2).unwrap();
        let (a, b, c) = (
            std::fs::read(a).unwrap(),
            std::fs::read(b).unwrap(),
            std::fs::read(c).unwrap(),
        );
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(a.len(), 3 << 20);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
