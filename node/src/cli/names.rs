//! `warren name …`: point a name at a CID, resolve a name, manage the keys that sign names; and
//! `/name/NAME/path` for `get` and `ls`.

use clap::Subcommand;

use crate::cli::args::OutputArgs;
use crate::cli::client::ApiClient;
use crate::cli::text::print;
use crate::view::{NameKeyView, PublishNameRequest, PublishedView, ResolvedView};

/// `warren name …`.
#[derive(Debug, Subcommand)]
pub enum NameCommand {
    /// Point a name at CID: a record signed with the key (the node's identity by default), put
    /// in the DHT and republished by the node before it expires. Prints the name.
    Publish {
        /// What the name is to point to.
        cid: String,
        /// The key whose name to publish: `self` (the node's identity) or one made by `key-gen`.
        #[arg(long, default_value = "self")]
        key: String,
        /// How long the record is valid, e.g. 30s, 10m, 24h, 7d (at most 7 days).
        #[arg(long, default_value = "24h", value_parser = parse_lifetime)]
        lifetime: u64,
        /// Publish once: the node does not republish it, so it lapses after `--lifetime`.
        #[arg(long)]
        no_republish: bool,
        /// Output options.
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Find the newest valid record of NAME (highest sequence, signature checked, not expired)
    /// among those held by the closest peers; prints the CID.
    Resolve {
        /// The name (a key id, 12D3KooW…).
        name: String,
        /// Output options.
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Create a named Ed25519 key in the data directory (mode 0600); prints its name.
    KeyGen {
        /// The key's label: 1 to 32 of a-z, 0-9, '-' and '_'.
        key: String,
        /// Output options.
        #[command(flatten)]
        out: OutputArgs,
    },
    /// List the keys that can sign names, with their names.
    Keys(OutputArgs),
}

/// `30s`, `10m`, `24h`, `7d` or a number of seconds.
fn parse_lifetime(text: &str) -> Result<u64, String> {
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a lifetime such as 30s, 10m, 24h or 7d"))?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit must be s, m, h or d")),
    };
    Ok(n.saturating_mul(unit))
}

pub(super) async fn name(api: &ApiClient, cmd: NameCommand) -> anyhow::Result<()> {
    match cmd {
        NameCommand::Publish {
            cid,
            key,
            lifetime,
            no_republish,
            out,
        } => {
            let req = PublishNameRequest {
                cid: crate::cli::text::check_cid(&cid)?,
                key: Some(key),
                lifetime_secs: Some(lifetime),
                republish: Some(!no_republish),
            };
            let v: PublishedView = api.post_json("/v1/names/publish", &req).await?;
            print(out.json, &v, |v| {
                format!(
                    "{}\n  -> {} (sequence {}, expires at {}, stored on {} peer(s){})\n",
                    v.name,
                    v.cid,
                    v.sequence,
                    v.expires_at,
                    v.stored_on,
                    if v.republish { ", republished" } else { "" }
                )
            })
        }
        NameCommand::Resolve { name, out } => {
            let v = resolve(api, &name).await?;
            print(out.json, &v, |v| format!("{}\n", v.cid))
        }
        NameCommand::KeyGen { key, out } => {
            let v: NameKeyView = api
                .post_json("/v1/names/keys", &serde_json::json!({ "key": key }))
                .await?;
            print(out.json, &v, |v| format!("{}\n", v.name))
        }
        NameCommand::Keys(out) => {
            let v: Vec<NameKeyView> = api.get("/v1/names/keys").await?;
            print(out.json, &v, |keys| {
                keys.iter()
                    .map(|k| format!("{:<16} {}\n", k.key, k.name))
                    .collect()
            })
        }
    }
}

async fn resolve(api: &ApiClient, name: &str) -> anyhow::Result<ResolvedView> {
    let name = crate::names::parse_name(name)?;
    Ok(api.get(&format!("/v1/names/resolve/{name}")).await?)
}

/// `/name/NAME[/path]` as `CID[/path]` (the name resolved by the node); anything else as given.
pub(super) async fn expand(api: &ApiClient, target: &str) -> anyhow::Result<String> {
    let Some(rest) = target.strip_prefix("/name/") else {
        return Ok(target.to_owned());
    };
    let (name, path) = rest.split_once('/').unwrap_or((rest, ""));
    let cid = resolve(api, name).await?.cid;
    Ok(if path.is_empty() {
        cid
    } else {
        format!("{cid}/{path}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_parse_with_units() {
        assert_eq!(parse_lifetime("3s"), Ok(3));
        assert_eq!(parse_lifetime("90"), Ok(90));
        assert_eq!(parse_lifetime("10m"), Ok(600));
        assert_eq!(parse_lifetime("24h"), Ok(86_400));
        assert_eq!(parse_lifetime("7d"), Ok(604_800));
        assert!(parse_lifetime("3w").is_err());
        assert!(parse_lifetime("h").is_err());
    }
}
