//! The hostile-peer soak (issue 19): a devnet of honest `warren` processes on loopback and one
//! hostile node (in this process, built from warren's own stack) running attacks in a loop for
//! `--minutes`. Honest nodes put RF-3 files first; at the end every block of every file must have
//! at least 3 copies on honest peers other than its origin that pass a proof-of-storage audit run
//! by the origin, and the honest nodes' peak RSS is reported. Two honest holders (never an
//! origin) are stopped for good, at a third and at two thirds of the run, so that repair has to
//! make new copies while the attacks run (RF poisoning shows only when repair is needed). Not part of CI: run it with
//! `bash scripts/soak.sh` (or `cargo run -p warren-tests --bin warren-soak -- --minutes 20`).
//!
//! Attacks (issue 19's numbers): 1 an outsourcing holder (a second hostile identity, a bare
//! swarm offering storage, that claims every block of the honest files as a provider, accepts
//! every push and keeps nothing, and answers each audit by fetching the block from its auditor),
//! 2 RF poisoning (blocks of the honest files pushed back to their
//! holders with RF 0 and 16, with and without the attacker's own tickets), 3 junk pushed with RF
//! 16 (half without tickets, half under the attacker's tickets), 6 the provider table flooded
//! with 5,000 junk keys per victim per round on raw Kademlia streams, 8 observations slandering
//! honest holders from a fresh identity every round. The copies counted at the end are found
//! through the DHT's provider records (`warren where`), so the holders' own announcements must
//! survive attack 6.
//!
//! Flags: `--minutes M` (20), `--nodes N` honest nodes (9; with the hostile one, 10),
//! `--attacks 2,3,6,8` (every attack this program knows by default), `--dir DIR` (a temp dir),
//! `--bin PATH` (the `warren` binary; default: `warren-e2e-node` next to this program).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use libp2p::Multiaddr;
use serde_json::Value;
use warren_protocol::{ContentId, PeerId};
use warren_tests::attacks::{self, Tally};
use warren_tests::hostile::Hostile;
use warren_tests::{NodeProcess, cli_json, tcp_multiaddr, test_bytes, wait_for_records};

const NETWORK: &str = "soak";
const KNOWN_ATTACKS: &[u8] = &[1, 2, 3, 6, 8];

struct Args {
    minutes: f64,
    nodes: usize,
    attacks: Vec<u8>,
    dir: Option<PathBuf>,
    bin: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        minutes: 20.0,
        nodes: 9,
        attacks: KNOWN_ATTACKS.to_vec(),
        dir: None,
        bin: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--minutes" => args.minutes = value()?.parse().context("--minutes: a number")?,
            "--nodes" => args.nodes = value()?.parse().context("--nodes: a whole number")?,
            "--attacks" => {
                args.attacks = value()?
                    .split(',')
                    .map(|a| a.trim().parse::<u8>())
                    .collect::<Result<_, _>>()
                    .context("--attacks: numbers separated by commas, e.g. 2,3,8")?;
                if let Some(a) = args.attacks.iter().find(|a| !KNOWN_ATTACKS.contains(a)) {
                    bail!("--attacks: attack {a} is not one this soak runs ({KNOWN_ATTACKS:?})");
                }
            }
            "--dir" => args.dir = Some(value()?.into()),
            "--bin" => args.bin = Some(value()?.into()),
            other => bail!("unknown flag {other} (see the doc comment of warren-soak.rs)"),
        }
    }
    if args.nodes < 6 {
        bail!(
            "--nodes: at least 6 honest nodes (RF 3 needs 3 holders besides the origin, after 2 \
             stop for good)"
        );
    }
    Ok(args)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `VmRSS` and `VmHWM` (peak) of a process, in KiB.
fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// An honest node: its process, data dir and peer id.
struct Honest {
    process: NodeProcess,
    dir: PathBuf,
    peer: PeerId,
}

/// An RF-3 file put by an honest node: its origin (index) and the blocks of the file.
struct File {
    origin: usize,
    cid: String,
    blocks: Vec<ContentId>,
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("soak: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<bool> {
    let args = parse_args()?;
    let bin = match &args.bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?.with_file_name("warren-e2e-node"),
    };
    let bin = bin.to_str().context("binary path is not UTF-8")?.to_owned();
    let tmp = tempfile_dir(args.dir.as_deref())?;
    println!("soak: work dir {}", tmp.display());

    // The honest devnet: node 0 is everyone's bootstrap.
    let mut honest: Vec<Honest> = Vec::new();
    let mut boot: Option<String> = None;
    for i in 0..args.nodes {
        let dir = tmp.join(format!("n{i}"));
        let mut extra = vec!["--storage-offer", "512MiB"];
        if let Some(b) = &boot {
            extra.extend(["--bootstrap", b.as_str()]);
        }
        let process = NodeProcess::start_on(&bin, &dir, NETWORK, &extra)?;
        let status = cli_json(&bin, &dir, &["status"])?;
        let peer = PeerId::from_str(status["peer_id"].as_str().context("status: no peer_id")?)?;
        if boot.is_none() {
            boot = Some(tcp_multiaddr(&status).context("node 0 has no TCP address")?);
        }
        honest.push(Honest { process, dir, peer });
    }
    for h in &honest {
        wait_for_records(&bin, &h.dir, args.nodes - 1)?;
    }
    println!("soak: {} honest nodes up", honest.len());

    // Files: three honest origins put three RF-3 files each, of 1 to 3 MiB.
    let mut files = Vec::new();
    for (origin, node) in honest.iter().enumerate().take(3) {
        for k in 0..3u64 {
            let path = tmp.join(format!("file-{origin}-{k}"));
            let len = (1 + k as usize) << 20;
            std::fs::write(&path, test_bytes(len, 7 + origin as u64 * 10 + k, k == 1))?;
            let put = cli_json(
                &bin,
                &node.dir,
                &["put", path.to_str().context("path")?, "--rf", "3"],
            )?;
            let cid = put["cid"].as_str().context("put: no cid")?.to_owned();
            let report = cli_json(&bin, &node.dir, &["where", &cid])?;
            let blocks = blocks_of(&report)?;
            files.push(File {
                origin,
                cid,
                blocks,
            });
        }
    }
    println!("soak: {} files put at RF 3", files.len());

    let rt = tokio::runtime::Runtime::new()?;
    let boot_addr: Multiaddr = boot.as_deref().context("no bootstrap")?.parse()?;
    let ok = rt.block_on(attack_loop(&args, &tmp, &bin, boot_addr, &honest, &files))?;
    Ok(ok)
}

fn tempfile_dir(dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    let dir = match dir {
        Some(d) => d.to_owned(),
        None => std::env::temp_dir().join(format!("warren-soak-{}", now_ms())),
    };
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn blocks_of(report: &Value) -> anyhow::Result<Vec<ContentId>> {
    report["blocks"]
        .as_array()
        .context("where: no blocks")?
        .iter()
        .map(|b| {
            let text = b["block"].as_str().context("where: block without id")?;
            Ok(ContentId::from_str(text)?)
        })
        .collect()
}

async fn attack_loop(
    args: &Args,
    tmp: &Path,
    bin: &str,
    boot: Multiaddr,
    honest: &[Honest],
    files: &[File],
) -> anyhow::Result<bool> {
    let key = warren_protocol::Keypair::generate_ed25519();
    let hostile = Hostile::start_with_key(
        &tmp.join("hostile"),
        NETWORK,
        vec![boot.clone()],
        256 << 20,
        key.clone(),
        |_| {},
    )
    .await?;
    println!("soak: hostile node {} up", hostile.peer_id());
    let mut outsourcer = None;
    if args.attacks.contains(&1) {
        let mut bare =
            warren_tests::bare::Bare::start(NETWORK, 1 << 30, vec![boot.clone()]).await?;
        let blocks: Vec<ContentId> = files.iter().flat_map(|f| f.blocks.clone()).collect();
        let tally = attacks::outsource_audits(&mut bare, blocks).await?;
        println!("soak: outsourcing holder {} up", bare.peer);
        outsourcer = Some((bare, tally));
    }
    let peers: Vec<PeerId> = honest.iter().map(|h| h.peer).collect();
    let all_blocks: Vec<ContentId> = files.iter().flat_map(|f| f.blocks.clone()).collect();

    let started = Instant::now();
    let run_for = Duration::from_secs_f64(args.minutes * 60.0);
    let mut tallies: BTreeMap<u8, Tally> = BTreeMap::new();
    let mut peak_rss: BTreeMap<usize, u64> = BTreeMap::new();
    let mut round = 0u64;
    let mut next_report = Duration::ZERO;
    // Churn: the last two honest nodes (never origins: those are n0..n2) stop for good.
    let mut churn: Vec<(Duration, usize)> = vec![
        (run_for / 3, honest.len() - 1),
        (run_for * 2 / 3, honest.len() - 2),
    ];
    let mut stopped = vec![false; honest.len()];
    while started.elapsed() < run_for {
        round += 1;
        if let Some(&(at, victim)) = churn.first()
            && started.elapsed() >= at
        {
            churn.remove(0);
            std::process::Command::new("kill")
                .args(["-TERM", &honest[victim].process.pid().to_string()])
                .status()?;
            stopped[victim] = true;
            println!("soak: stopped honest node n{victim} for good (churn)");
        }
        for attack in &args.attacks {
            let tally = match attack {
                2 => {
                    // Four blocks a round, in turn: every block is poisoned again and again.
                    let at = (round as usize * 4) % all_blocks.len().max(1);
                    let some: Vec<ContentId> = all_blocks
                        .iter()
                        .cycle()
                        .skip(at)
                        .take(4)
                        .copied()
                        .collect();
                    let expires = now_ms() / 1000 + 600;
                    attacks::rf_poison(hostile.client(), &peers, &some, &key, expires).await
                }
                3 => {
                    // Under its own tickets, the junk would live for 10 minutes, unrenewed.
                    let expires = now_ms() / 1000 + 600;
                    attacks::junk_store(hostile.client(), &peers, 8, 64 << 10, round, &key, expires)
                        .await
                }
                6 => {
                    let mut t = Tally::default();
                    for victim in &peers {
                        t.sent += 5_000;
                        match warren_tests::kad_raw::flood_provider_table(
                            &hostile,
                            *victim,
                            round,
                            5_000,
                            Duration::from_secs(60),
                        )
                        .await
                        {
                            Ok(_) => t.accepted += 5_000,
                            Err(_) => t.errors += 5_000,
                        }
                    }
                    t
                }
                8 => {
                    let dir = tmp.join(format!("stranger-{round}"));
                    let t = attacks::observation_flood(
                        &dir,
                        NETWORK,
                        vec![boot.clone()],
                        &peers,
                        64,
                        now_ms(),
                    )
                    .await?;
                    let _ = std::fs::remove_dir_all(&dir);
                    t
                }
                _ => Tally::default(),
            };
            tallies.entry(*attack).or_default().add(tally);
        }
        if let Some((bare, tally)) = &outsourcer {
            // Claimed again every round: provider records of the honest files stay fresh.
            let blocks: Vec<ContentId> = files.iter().flat_map(|f| f.blocks.clone()).collect();
            let _ = bare.client.provide(blocks).await;
            if let Ok(t) = tally.lock() {
                tallies.insert(1, *t);
            }
        }
        for (i, h) in honest.iter().enumerate() {
            if stopped[i] {
                continue;
            }
            if let Some((rss, _)) = rss_kib(h.process.pid()) {
                let e = peak_rss.entry(i).or_default();
                *e = (*e).max(rss);
            }
        }
        if started.elapsed() >= next_report {
            let rss: Vec<u64> = honest
                .iter()
                .zip(&stopped)
                .filter(|(_, s)| !**s)
                .filter_map(|(h, _)| rss_kib(h.process.pid()).map(|(r, _)| r / 1024))
                .collect();
            println!(
                "soak: {:>5.1} min, round {round}, RSS MiB of honest nodes {rss:?}, {tallies:?}",
                started.elapsed().as_secs_f64() / 60.0
            );
            next_report += Duration::from_secs(60);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let hostile_peer = hostile.peer_id();
    let outsourcer_peer = outsourcer.as_ref().map(|(b, _)| b.peer.to_string());
    hostile.stop().await;
    drop(outsourcer);

    // Judge: every block of every file, at least 3 honest copies besides the origin's that pass
    // an audit by the origin. Give repair a minute first.
    println!("soak: attacks over after {round} rounds; checking copies in 60 s");
    tokio::time::sleep(Duration::from_secs(60)).await;
    let file_blocks: std::collections::BTreeSet<String> =
        all_blocks.iter().map(ToString::to_string).collect();
    let mut ok = true;
    for file in files {
        let origin = &honest[file.origin];
        let report = cli_json(bin, &origin.dir, &["where", &file.cid])?;
        let mut fewest = usize::MAX;
        for block in report["blocks"].as_array().context("where: no blocks")? {
            let id = block["block"].as_str().context("block id")?;
            let mut real = 0;
            for holder in block["holders"].as_array().context("holders")? {
                let peer = holder["peer"].as_str().unwrap_or_default();
                if holder["this_node"] == true
                    || peer == hostile_peer.to_string()
                    || outsourcer_peer.as_deref() == Some(peer)
                {
                    continue;
                }
                let audit = cli_json(bin, &origin.dir, &["audit", peer, id]);
                if audit.is_ok_and(|a| a["passed"] == true) {
                    real += 1;
                }
            }
            fewest = fewest.min(real);
        }
        let good = fewest >= 3;
        ok &= good;
        println!(
            "soak: file {} (origin n{}): fewest audited honest copies of a block {fewest} {}",
            file.cid,
            file.origin,
            if good { "ok" } else { "FAIL" }
        );
    }
    for (i, h) in honest.iter().enumerate() {
        if stopped[i] {
            println!("soak: n{i} stopped (churn)");
            continue;
        }
        let (rss, hwm) = rss_kib(h.process.pid()).unwrap_or_default();
        let held = warren_tests::held(bin, &h.dir);
        let junk = held.iter().filter(|b| !file_blocks.contains(*b)).count();
        println!(
            "soak: n{i} RSS {} MiB now, peak {} MiB (sampled {}), replicas held {} of which not of an honest file {junk}",
            rss / 1024,
            hwm / 1024,
            peak_rss.get(&i).copied().unwrap_or_default() / 1024,
            held.len()
        );
    }
    println!("soak: attack tallies {tallies:?}");
    println!("soak: {}", if ok { "PASS" } else { "FAIL" });
    Ok(ok)
}
