//! The subcommands that talk to a running node through its control API.

use std::path::PathBuf;

use anyhow::Context;
use warren_protocol::{Capability, Class};

use crate::cli::args::*;
use crate::cli::client::ApiClient;
use crate::cli::text::*;
use crate::view::{GcView, PeerInfo, PinView, RecordView, StatView, StatusInfo};

pub(super) async fn run_client(cli: Cli, data_dir: PathBuf) -> anyhow::Result<()> {
    let api = ApiClient::from_data_dir(&data_dir)?;
    match cli.command {
        Command::Status(out) => print(
            out.json,
            &api.get::<StatusInfo>("/v1/status").await?,
            status_text,
        ),
        Command::Peers(out) => print(
            out.json,
            &api.get::<Vec<PeerInfo>>("/v1/peers").await?,
            peers_text,
        ),
        Command::Record { peer, out } => {
            let peer: libp2p::PeerId = peer
                .parse()
                .with_context(|| format!("{peer:?} is not a peer id"))?;
            print(
                out.json,
                &api.get::<RecordView>(&format!("/v1/record/{peer}")).await?,
                record_text,
            )
        }
        Command::Put {
            file,
            recursive: _,
            name,
            media_type,
            no_pin,
            rf,
            pieces,
            class,
            private,
            anon,
            out,
        } => {
            let is_dir = std::fs::symlink_metadata(&file).is_ok_and(|m| m.is_dir());
            if is_dir {
                let private = private || class == Some(Class::Private);
                if anon || class == Some(Class::Shared) {
                    anyhow::bail!(
                        "{} is a directory: directories are stored public or --private (not \
                         --anon, not --class shared: a convergent key cannot cover a tree)",
                        file.display()
                    );
                }
                let view =
                    crate::cli::tree::put_dir(&api, &file, !no_pin, rf, private, out.json).await?;
                return print(out.json, &view, |v| match &v.capability {
                    Some(cap) => format!("{cap}\n"),
                    None => format!("{}\n", v.cid),
                });
            }
            let default_class = if anon { Class::Private } else { Class::Public };
            let req = crate::cli::transfer::PutRequest {
                name,
                media_type,
                pin: !no_pin,
                rf,
                class: if private {
                    Class::Private
                } else {
                    class.unwrap_or(default_class)
                },
                anon,
                key: None,
                pieces,
            };
            let view = crate::cli::transfer::put(&api, &file, req, out.json).await?;
            print(out.json, &view, |v| match (&v.capability, &v.pieces) {
                (Some(cap), _) => format!("{cap}\n"),
                (None, Some(p)) => format!("{}\n", p.manifest),
                (None, None) => format!("{}\n", v.cid),
            })
        }
        Command::Get {
            cid,
            capability_file,
            output,
            anon,
            no_cache,
            out,
        } => {
            let from_file = capability_file
                .as_deref()
                .map(crate::cli::capability_input::read_capability_file)
                .transpose()?;
            let from_env = std::env::var(crate::cli::capability_input::CAPABILITY_ENV).ok();
            let cid = crate::cli::capability_input::resolve(cid.as_deref(), from_file, from_env)?;
            let cid = crate::cli::names::expand(&api, &cid).await?;
            let cid = if Capability::looks_like(&cid) {
                // A private file, or a private directory (or a path in one: CAPABILITY/a/b).
                let (cap, path) = crate::cli::tree::split_capability(&cid);
                cap.parse::<Capability>()?;
                if path.is_empty() && (output.is_none() || anon) {
                    cid
                } else {
                    match crate::cli::tree::ls(&api, cap, path).await {
                        Ok(view) if view.entries.is_some() => {
                            return get_tree(&api, view, output, out.json).await;
                        }
                        Ok(view) if !path.is_empty() => view.capability.unwrap_or(cid),
                        Err(e) if !path.is_empty() => return Err(e),
                        // A private file (its key opens no listing).
                        _ => cid,
                    }
                }
            } else if let Some((root, path)) = cid.split_once('/') {
                // An entry of a tree: a file is fetched as any file, a directory as a tree.
                let view = crate::cli::tree::ls(&api, &check_cid(root)?, path).await?;
                if view.entries.is_none() {
                    view.cid
                } else {
                    return get_tree(&api, view, output, out.json).await;
                }
            } else {
                let cid = check_cid(&cid)?;
                // A raw id is a piece manifest (`put --pieces`): a file, never a directory.
                let raw = cid
                    .parse::<warren_protocol::ContentId>()
                    .is_ok_and(|c| c.codec() == warren_protocol::Codec::Raw);
                if output.is_some() && !anon && !raw {
                    let view = crate::cli::tree::ls(&api, &cid, "").await?;
                    if view.entries.is_some() {
                        return get_tree(&api, view, output, out.json).await;
                    }
                }
                cid
            };
            let n = crate::cli::transfer::get_with(
                &api,
                &cid,
                output.as_deref(),
                out.json,
                anon,
                !no_cache,
            )
            .await?;
            if let Some(path) = output {
                // The bare CID: the key is not echoed.
                let shown = cid
                    .split('#')
                    .next()
                    .unwrap_or_default()
                    .trim_start_matches("warren:");
                let view = serde_json::json!({ "cid": shown, "size": n, "path": path });
                print(out.json, &view, |_| {
                    format!("{n} bytes written to {}\n", path.display())
                })?;
            }
            Ok(())
        }
        Command::Circuits(out) => print(
            out.json,
            &api.get::<Vec<crate::onion::CircuitView>>("/v1/circuits")
                .await?,
            circuits_text,
        ),
        Command::Ls { target, out } => {
            let target = crate::cli::names::expand(&api, &target).await?;
            let view = if Capability::looks_like(&target) {
                let (cap, path) = crate::cli::tree::split_capability(&target);
                crate::cli::tree::ls(&api, cap, path).await?
            } else {
                let (root, path) = target.split_once('/').unwrap_or((&target, ""));
                crate::cli::tree::ls(&api, &check_cid(root)?, path).await?
            };
            print(out.json, &view, crate::cli::tree::ls_text)
        }
        Command::Stat { cid, out } => {
            let cid = check_cid(&cid)?;
            print(
                out.json,
                &api.get::<StatView>(&format!("/v1/stat/{cid}")).await?,
                stat_text,
            )
        }
        Command::Pins(out) => print(
            out.json,
            &api.get::<Vec<PinView>>("/v1/pins").await?,
            pins_text,
        ),
        Command::Pin { cid, out } => {
            let cid = check_cid(&cid)?;
            let v: serde_json::Value = api.post(&format!("/v1/pin/{cid}")).await?;
            print(out.json, &v, |_| format!("pinned {cid}\n"))
        }
        Command::Unpin { cid, out } => {
            let cid = check_cid(&cid)?;
            let v: serde_json::Value = api.delete(&format!("/v1/pin/{cid}")).await?;
            print(out.json, &v, |_| {
                format!("unpinned {cid} (its blocks go at the next gc)\n")
            })
        }
        Command::Gc(out) => print(out.json, &api.post::<GcView>("/v1/gc").await?, |g| {
            format!(
                "removed {} blocks, freed {} bytes\n",
                g.blocks_removed, g.bytes_freed
            )
        }),
        Command::Held(out) => print(out.json, &api.get::<Vec<String>>("/v1/held").await?, |h| {
            let mut s = format!("{} blocks held for the mesh\n", h.len());
            for c in h {
                s.push_str(&format!("{c}\n"));
            }
            s
        }),
        Command::Leases(out) => {
            let leases: Vec<crate::view::LeaseView> = api.get("/v1/leases").await?;
            print(out.json, &leases, |l| {
                let mut s = format!("{} replicas held under leases\n", l.len());
                for x in l {
                    s.push_str(&format!(
                        "{}  rf {}  origin {}  until {}\n",
                        x.block, x.rf, x.origin, x.expires
                    ));
                }
                s
            })
        }
        Command::Audits(out) => {
            let audits: Vec<crate::view::AuditRecord> = api.get("/v1/audits").await?;
            print(out.json, &audits, |a| {
                let mut s = format!("{} audits\n", a.len());
                for r in a {
                    s.push_str(&format!(
                        "{}  {}  {}  {}\n",
                        r.time_ms,
                        match (r.passed, r.answered) {
                            (true, _) => "passed",
                            (false, true) => "FAILED",
                            (false, false) => "NO ANSWER",
                        },
                        r.subject,
                        r.block
                    ));
                }
                s
            })
        }
        Command::Where { cid, out } => {
            let report: crate::view::WhereReport = api.get(&format!("/v1/where/{cid}")).await?;
            print(out.json, &report, |r| {
                let mut s = format!(
                    "{}: {} blocks, fewest live holders of a block {}{}\n",
                    r.cid,
                    r.blocks.len(),
                    r.min_rf_held,
                    r.wanted_rf
                        .map(|w| format!(" (put here at RF {w})"))
                        .unwrap_or_default()
                );
                for b in &r.blocks {
                    let hot = if b.hot_extra > 0 {
                        format!("  hot: +{}", b.hot_extra)
                    } else {
                        String::new()
                    };
                    s.push_str(&format!(
                        "{}  {} B  held {}{hot}\n",
                        b.block, b.len, b.rf_held
                    ));
                    for h in &b.holders {
                        let state = match (h.this_node, h.live, h.tier) {
                            (true, ..) => "this node".to_owned(),
                            (false, true, Some(t)) => format!("live, {}", tier_name(t)),
                            (false, true, None) => "live".to_owned(),
                            (false, false, _) => "not connected".to_owned(),
                        };
                        s.push_str(&format!("    {}  {state}\n", h.peer));
                    }
                }
                s
            })
        }
        Command::Pieces { id, repair, out } => {
            let path = format!("/v1/pieces/{id}?repair={repair}");
            let h: crate::view::PiecesHealth = api.post(&path).await?;
            print(out.json, &h, |h| {
                let mut s = format!(
                    "{}: {}+{} pieces per stripe, repaired below {}; {} restored\n",
                    h.manifest, h.data, h.parity, h.repair_at, h.restored
                );
                for st in &h.stripes {
                    s.push_str(&format!(
                        "stripe {}: {} online, {} counted, {}, {} restored\n",
                        st.stripe, st.online, st.counted, st.verdict, st.restored
                    ));
                }
                s
            })
        }
        Command::Audit { peer, cid, out } => {
            let body = serde_json::json!({ "peer": peer, "cid": cid });
            let r: crate::view::AuditRecord = api.post_json("/v1/audit", &body).await?;
            print(out.json, &r, |r| {
                if r.passed {
                    format!("passed: {} proved it holds {}\n", r.subject, r.block)
                } else if !r.answered {
                    format!(
                        "NO ANSWER (not a failed proof): {} on {}: {}\n",
                        r.subject,
                        r.block,
                        r.reason.as_deref().unwrap_or("no reason given")
                    )
                } else {
                    format!(
                        "FAILED: {} on {}: {}\n",
                        r.subject,
                        r.block,
                        r.reason.as_deref().unwrap_or("no reason given")
                    )
                }
            })
        }
        Command::Model(cmd) => crate::cli::jobs::model(&api, cmd).await,
        Command::Name(cmd) => crate::cli::names::name(&api, cmd).await,
        Command::Infer {
            model,
            prompt,
            max_tokens,
            temperature,
            seed,
            strategy,
            sample,
            local,
            anon,
            out,
        } => {
            let body = serde_json::json!({
                "model": model, "prompt": prompt, "max_tokens": max_tokens,
                "temperature": temperature, "seed": seed, "strategy": strategy,
                "sample": sample, "local": local,
            });
            let path = if anon { "/v1/anon/infer" } else { "/v1/infer" };
            crate::cli::jobs::infer(&api, path, &body, out.json).await
        }
        Command::Embed {
            model,
            input,
            output,
            strategy,
            operators,
            sample,
            batch,
            local,
            anon,
            out,
        } => {
            let opts = crate::cli::jobs::EmbedOpts {
                model,
                strategy,
                operators,
                sample,
                batch,
                local,
                anon,
            };
            crate::cli::jobs::embed(&api, &opts, &input, &output, out.json).await
        }
        Command::Jobs(out) => crate::cli::jobs::jobs(&api, out.json).await,
        Command::Reputation { peer: None, out } => {
            let table: serde_json::Value = api.get("/v1/reputation").await?;
            print(out.json, &table, |t| {
                let mut s = format!(
                    "{:<54} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6}  floor\n",
                    "peer", "total", "perf", "speed", "uptime", "secur", "review", "long"
                );
                for r in t.as_array().into_iter().flatten() {
                    let c = &r["components"];
                    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
                    s.push_str(&format!(
                        "{:<54} {:>6.3} {:>6.3} {:>6.3} {:>6.3} {:>6.3} {:>6.3} {:>6.3}  {}\n",
                        r["peer_id"].as_str().unwrap_or("?"),
                        f(&r["total"]),
                        f(&c["performance"]),
                        f(&c["speed"]),
                        f(&c["uptime"]),
                        f(&c["security"]),
                        f(&c["peer_review"]),
                        f(&c["longevity"]),
                        if r["below_floor"] == true {
                            "BELOW"
                        } else {
                            "ok"
                        }
                    ));
                }
                s
            })
        }
        Command::Reputation {
            peer: Some(peer),
            out,
        } => {
            let peer: libp2p::PeerId = peer
                .parse()
                .with_context(|| format!("{peer:?} is not a peer id"))?;
            let v: serde_json::Value = api.get(&format!("/v1/reputation/{peer}")).await?;
            print(out.json, &v, |v| {
                format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default())
            })
        }
        Command::Credits { peer, out } => {
            let path = match peer {
                Some(p) => {
                    let p: libp2p::PeerId = p
                        .parse()
                        .with_context(|| format!("{p:?} is not a peer id"))?;
                    format!("/v1/credits/{p}")
                }
                None => "/v1/credits".to_owned(),
            };
            let v: serde_json::Value = api.get(&path).await?;
            print(out.json, &v, crate::cli::text::credits)
        }
        Command::Dashboard(out) => {
            let addr = std::fs::read_to_string(data_dir.join(crate::keystore::API_ADDR_FILE))
                .context("reading api.addr: is the node running?")?;
            let token = std::fs::read_to_string(data_dir.join(crate::keystore::TOKEN_FILE))
                .context("reading api.token")?;
            let url = crate::api::dashboard_url(addr.trim(), token.trim());
            print(out.json, &serde_json::json!({ "url": url }), |_| {
                format!(
                    "{url}\n(the part after # is the API token: it never leaves the browser, but keep the URL private)\n"
                )
            })
        }
        Command::Connect { addr, out } => {
            let v: serde_json::Value = api
                .post_body(
                    "/v1/connect",
                    &[("addr", addr.to_string())],
                    &[],
                    reqwest::Body::from(""),
                )
                .await?;
            print(out.json, &v, |v| {
                format!(
                    "connected to {} via {}\n",
                    v["peer_id"].as_str().unwrap_or("?"),
                    v["addr"].as_str().unwrap_or("?")
                )
            })
        }
        Command::Start(_) | Command::Devnet(_) | Command::Init { .. } => Ok(()),
    }
}

/// `warren get` of a directory: the tree under `-o DIR`.
async fn get_tree(
    api: &ApiClient,
    view: crate::view::LsView,
    output: Option<std::path::PathBuf>,
    json: bool,
) -> anyhow::Result<()> {
    let Some(path) = output else {
        anyhow::bail!(
            "{} is a directory: give -o DIR to recreate it there (or `warren ls {}`)",
            view.cid,
            view.cid
        );
    };
    let cid = view.cid.clone();
    let (files, bytes) = crate::cli::tree::get_dir(api, view, &path, json).await?;
    let shown = serde_json::json!({ "cid": cid, "files": files, "size": bytes, "path": path });
    print(json, &shown, |_| {
        format!(
            "{files} files, {bytes} bytes written under {}\n",
            path.display()
        )
    })
}
