//! How each subcommand prints its answer: JSON with `--json`, else the text here.

use warren_protocol::Class;

use crate::view::{PeerInfo, PinView, RecordView, StatView, StatusInfo};

pub(super) fn print<T: serde::Serialize>(
    json: bool,
    value: &T,
    text: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print!("{}", text(value));
    }
    Ok(())
}

pub(super) fn status_text(s: &StatusInfo) -> String {
    let mut out = format!(
        "peer id      {}\nversion      {}\nnetwork      {}\npeers        {}\nrouting      {} peers, kad {}\nrecord       {}\nuptime       {} s\nstorage      {}\nlisten\n",
        s.peer_id,
        s.version,
        s.network,
        s.peers,
        s.routing_table,
        s.kad_mode,
        if s.record_published {
            "published"
        } else {
            "not yet stored on another peer"
        },
        s.uptime_secs,
        s.storage
            .as_ref()
            .map(|u| format!(
                "{} blocks, {} of {} bytes offered",
                u.blocks, u.stored_bytes, u.offered_bytes
            ))
            .unwrap_or_else(|| "-".into())
    );
    for a in &s.listen_addrs {
        out.push_str(&format!("  {a}\n"));
    }
    out
}

pub(super) fn peers_text(peers: &Vec<PeerInfo>) -> String {
    let mut out = format!("{} peers\n", peers.len());
    for p in peers {
        let rtt = p
            .rtt_ms
            .map(|r| format!("{r:.1} ms"))
            .unwrap_or_else(|| "-".into());
        let roles: Vec<String> = p
            .roles
            .iter()
            .map(|r| format!("{r:?}").to_lowercase())
            .collect();
        out.push_str(&format!(
            "{}  {:>9}  {}  [{}]  {}\n",
            p.peer_id,
            rtt,
            p.agent.as_deref().unwrap_or("?"),
            roles.join(","),
            p.addrs.first().map(String::as_str).unwrap_or("")
        ));
    }
    out
}

pub(super) fn record_text(r: &RecordView) -> String {
    let mut out = format!(
        "peer id      {}\nverified     {} (from {})\nnetwork      {}\nroles        {:?}\nonion key    {}\nstorage      {}\ncompute      {}\nissued at    {}\nexpires at   {}\naddrs\n",
        r.peer_id,
        r.verified,
        r.source,
        r.network,
        r.roles,
        r.onion_key,
        r.storage
            .as_ref()
            .map(|s| format!(
                "{:?}, {} bytes offered, {} free",
                s.tier, s.bytes_offered, s.bytes_free
            ))
            .unwrap_or_else(|| "none".into()),
        r.compute
            .as_ref()
            .map(|c| format!(
                "{} cores, {} bytes RAM, {} GPUs",
                c.cpu_cores,
                c.ram_bytes,
                c.gpus.len()
            ))
            .unwrap_or_else(|| "none".into()),
        r.issued_at,
        r.expires_at
    );
    for a in &r.addrs {
        out.push_str(&format!("  {a}\n"));
    }
    out
}

/// Checks a CID on the client side, so a typo gets a clear error without a round trip.
pub(super) fn check_cid(text: &str) -> anyhow::Result<String> {
    let cid: warren_protocol::ContentId = text
        .parse()
        .map_err(|e| anyhow::anyhow!("{text:?} is not a warren CID: {e}"))?;
    Ok(cid.to_string())
}

pub(super) fn stat_text(s: &StatView) -> String {
    format!(
        "cid          {}\nsize         {} bytes\nname         {}\nmedia type   {}\nmanifest     depth {}, {} entries\n",
        s.cid,
        s.size,
        s.name.as_deref().unwrap_or("-"),
        s.media_type.as_deref().unwrap_or("-"),
        s.depth,
        s.entries
    )
}

pub(super) fn pins_text(pins: &Vec<PinView>) -> String {
    let mut out = format!("{} pinned files\n", pins.len());
    for p in pins {
        out.push_str(&format!(
            "{}  {:<7}  {:>12} B  {:>6} blocks  {}\n",
            p.cid,
            p.class,
            p.size,
            p.blocks,
            p.name.as_deref().unwrap_or("")
        ));
    }
    out
}

pub(super) fn circuits_text(c: &Vec<crate::onion::CircuitView>) -> String {
    let mut out = format!("{} circuits\n", c.len());
    for v in c {
        out.push_str(&format!(
            "{:>4}  {:<6}  {:>8} ms  prev {}  next {}  {}\n",
            v.id,
            v.role,
            v.age_ms,
            v.prev.as_deref().unwrap_or("-"),
            v.next.as_deref().unwrap_or("-"),
            v.state
        ));
    }
    out
}

pub(super) fn parse_class(text: &str) -> Result<Class, String> {
    text.parse()
        .map_err(|e: warren_protocol::Error| e.to_string())
}

/// `warren credits`: one line per peer, in credits (10⁹ nc).
pub(super) fn credits(v: &serde_json::Value) -> String {
    let c = |v: &serde_json::Value| v.as_i64().unwrap_or(0) as f64 / 1e9;
    let mut s = format!(
        "total balance {:.6} credits; receipts accepted {}, refused {}; requests refused {}\n",
        c(&v["total_balance"]),
        v["receipts_accepted"],
        v["receipts_refused"],
        v["requests_refused"]
    );
    s.push_str(&format!(
        "{:<54} {:>12} {:>12} {:>12} {:>10} {:>7} {:>17}  state\n",
        "peer", "balance", "earned", "spent", "threshold", "strikes", "relay MiB in/out"
    ));
    let mib = |v: &serde_json::Value| v.as_u64().unwrap_or(0) as f64 / (1u64 << 20) as f64;
    for p in v["peers"].as_array().into_iter().flatten() {
        let state = if p["refused"] == true {
            "refused"
        } else if p["fraud"] == true {
            "fraud"
        } else {
            "ok"
        };
        s.push_str(&format!(
            "{:<54} {:>12.6} {:>12.6} {:>12.6} {:>10.4} {:>7} {:>8.2}/{:<8.2}  {state}\n",
            p["peer"].as_str().unwrap_or("?"),
            c(&p["balance"]),
            c(&p["earned_by_peer"]),
            c(&p["spent_by_peer"]),
            c(&p["threshold"]),
            p["strikes"],
            mib(&p["delivered_by_peer"]["relay_bytes"]),
            mib(&p["delivered_to_peer"]["relay_bytes"]),
        ));
    }
    s
}
