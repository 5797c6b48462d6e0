//! The models the mesh's operators serve, as this node learns them from their signed node records
//! (spec: `spec/node-record.md`, "Served models"): what `GET /openai/v1/models` lists besides the
//! models served or added here.
//!
//! An operator names each model it serves in its record's `compute.models` as one entry
//! `NAME@ID` ([`served_entry`]): the model's name from its manifest, `@`, and the model's id (the
//! manifest's content id, base32). Entries of any other shape (a v1 node's configured names, junk)
//! are left out of the list, so records stay version 1 and old records stay readable: a v1 reader
//! reads the entries as names, as before.
//!
//! [`merge`] builds the list from the records a node holds (already verified, and bounded by the
//! record book): one [`MeshModel`] per id, each entry validated ([`parse_served`]), at most
//! `cap` models, at most [`MAX_NAMED_OPERATORS`] operators named per model. Models with an
//! operator connected to this node come first (a sybil's records in the DHT name no live peer),
//! then those with the most operators, then by id. Sans-I/O: the caller passes its clock and who
//! is connected.

use std::collections::BTreeMap;

use crate::record::MAX_NAME_LEN;
use crate::{ContentId, NodeRecord, PeerId, Role};

/// Most models [`merge`] lists by default.
pub const MAX_MESH_MODELS: usize = 256;
/// Most operators named per model (all are counted).
pub const MAX_NAMED_OPERATORS: usize = 8;
/// What separates a served model's name from its id in a record entry.
pub const SEPARATOR: char = '@';

/// The record entry for a served model: `NAME@ID`, the name cut (on a character boundary) so the
/// entry fits [`MAX_NAME_LEN`] bytes and stripped of control characters.
pub fn served_entry(name: &str, id: &ContentId) -> String {
    let id = id.to_string();
    let room = MAX_NAME_LEN.saturating_sub(id.len() + SEPARATOR.len_utf8());
    let mut out = String::with_capacity(MAX_NAME_LEN);
    for c in name.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > room {
            break;
        }
        out.push(c);
    }
    out.push(SEPARATOR);
    out.push_str(&id);
    out
}

/// The name and id of a record entry made by [`served_entry`]; `None` for anything else: no
/// separator, an id that does not parse or is not in its base32 text form, an empty name, a
/// control character, or an entry longer than [`MAX_NAME_LEN`] bytes.
pub fn parse_served(entry: &str) -> Option<(&str, ContentId)> {
    if entry.len() > MAX_NAME_LEN {
        return None;
    }
    let (name, id) = entry.rsplit_once(SEPARATOR)?;
    if name.is_empty() || name.chars().any(char::is_control) {
        return None;
    }
    let cid: ContentId = id.parse().ok()?;
    // One spelling per id: the base32 text form, as `served_entry` writes it.
    (cid.to_string() == id).then_some((name, cid))
}

/// One model served on the mesh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeshModel {
    /// The model's id.
    pub id: ContentId,
    /// Its name, as its first operator (in the order of `operators`) names it.
    pub name: String,
    /// The operators named, connected ones first, then by peer id (at most
    /// [`MAX_NAMED_OPERATORS`]).
    pub operators: Vec<PeerId>,
    /// How many operators' records name it.
    pub operator_count: usize,
    /// How many of them are connected to this node.
    pub connected: usize,
    /// The earliest `issued_at` of those records, Unix seconds.
    pub since: u64,
}

/// The models named by `records` (one per id), as described in the module documentation: only
/// operators' records valid at `now`, at most `cap` models.
pub fn merge<'a>(
    records: impl IntoIterator<Item = &'a NodeRecord>,
    connected: impl Fn(&PeerId) -> bool,
    now: u64,
    cap: usize,
) -> Vec<MeshModel> {
    // Per id: (connected?, peer, name, issued_at) of each record naming it.
    let mut by_id: BTreeMap<ContentId, Vec<(bool, PeerId, &str, u64)>> = BTreeMap::new();
    for r in records {
        if r.expires_at <= now || !r.roles.contains(&Role::Operator) {
            continue;
        }
        let Some(compute) = &r.compute else {
            continue;
        };
        let live = connected(&r.peer_id);
        // A record names each id once, however often it lists it.
        let mut seen = Vec::new();
        for (name, id) in compute.models.iter().filter_map(|e| parse_served(e)) {
            if seen.contains(&id) {
                continue;
            }
            seen.push(id);
            by_id
                .entry(id)
                .or_default()
                .push((live, r.peer_id, name, r.issued_at));
        }
    }
    let mut out: Vec<MeshModel> = by_id
        .into_iter()
        .map(|(id, mut ops)| {
            ops.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            MeshModel {
                id,
                name: ops[0].2.to_string(),
                operators: ops.iter().take(MAX_NAMED_OPERATORS).map(|o| o.1).collect(),
                operator_count: ops.len(),
                connected: ops.iter().filter(|o| o.0).count(),
                since: ops.iter().map(|o| o.3).min().unwrap_or(now).min(now),
            }
        })
        .collect();
    out.sort_by(|a, b| {
        (b.connected > 0)
            .cmp(&(a.connected > 0))
            .then(b.operator_count.cmp(&a.operator_count))
            .then(a.id.cmp(&b.id))
    });
    out.truncate(cap);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{Codec, ComputeOffer, Price, RECORD_VERSION};

    fn id(i: u32) -> ContentId {
        ContentId::of_block(Codec::Raw, &i.to_le_bytes())
    }

    fn record(seed: u8, models: Vec<String>, issued_at: u64) -> NodeRecord {
        let key = crate::keypair_from_secret([seed; 32]);
        NodeRecord {
            version: RECORD_VERSION,
            network: "test".into(),
            peer_id: key.public().to_peer_id(),
            roles: vec![Role::Operator],
            onion_key: [1; 32],
            storage: None,
            compute: Some(ComputeOffer {
                cpu_cores: 1,
                ram_bytes: 1,
                gpus: vec![],
                models,
            }),
            price: Price::default(),
            load_permille: 0,
            addrs: vec![],
            issued_at,
            expires_at: issued_at + 3600,
        }
    }

    #[test]
    fn entries_round_trip_and_fit() {
        let e = served_entry("smollm2", &id(1));
        assert_eq!(parse_served(&e), Some(("smollm2", id(1))));
        let long = served_entry(&"é".repeat(200), &id(2));
        assert!(long.len() <= MAX_NAME_LEN);
        let (name, back) = parse_served(&long).unwrap();
        assert_eq!(back, id(2));
        assert!(name.chars().all(|c| c == 'é'));
        let ctl = served_entry("a\u{1b}[31mb\n", &id(3));
        assert_eq!(parse_served(&ctl).unwrap().0, "a[31mb");
        assert_eq!(
            parse_served(&served_entry("a@b", &id(4))),
            Some(("a@b", id(4)))
        );
    }

    #[test]
    fn other_entries_are_left_out() {
        let cid = id(1).to_string();
        for bad in [
            "llama-3-8b".to_string(),
            format!("@{cid}"),
            format!("x@{cid}x"),
            "x@bafknotacid".to_string(),
            format!("x@{}", cid.to_uppercase()),
            format!("a\u{7}b@{cid}"),
            format!("{}@{cid}", "n".repeat(MAX_NAME_LEN)),
        ] {
            assert_eq!(parse_served(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn merge_counts_operators_once_and_orders_connected_first() {
        let a = record(
            1,
            vec![served_entry("m1", &id(1)), served_entry("m1", &id(1))],
            100,
        );
        let b = record(
            2,
            vec![served_entry("m1", &id(1)), served_entry("m2", &id(2))],
            50,
        );
        let c = record(3, vec![served_entry("m3", &id(3)), "plain".into()], 70);
        let c_peer = c.peer_id;
        let list = merge([&a, &b, &c], |p| *p == c_peer, 200, 10);
        let ids: Vec<_> = list.iter().map(|m| m.id).collect();
        assert_eq!(ids, vec![id(3), id(1), id(2)]);
        assert_eq!(list[1].operator_count, 2);
        assert_eq!(list[1].since, 50);
        assert_eq!(list[0].connected, 1);
        assert_eq!(list[0].operators, vec![c_peer]);
    }

    #[test]
    fn merge_skips_expired_and_non_operators_and_is_capped() {
        let mut old = record(1, vec![served_entry("m", &id(1))], 100);
        assert!(merge([&old], |_| false, 100 + 3600, 10).is_empty());
        old.roles = vec![Role::Station];
        assert!(merge([&old], |_| false, 200, 10).is_empty());
        let many: Vec<NodeRecord> = (0..40u8)
            .map(|s| {
                let models = (0..64u32)
                    .map(|i| served_entry("junk", &id(u32::from(s) * 100 + i)))
                    .collect();
                record(s + 10, models, 100)
            })
            .collect();
        let honest = record(200, vec![served_entry("real", &id(999_999))], 100);
        let honest_peer = honest.peer_id;
        let all: Vec<&NodeRecord> = many.iter().chain([&honest]).collect();
        let list = merge(all, |p| *p == honest_peer, 200, MAX_MESH_MODELS);
        assert_eq!(list.len(), MAX_MESH_MODELS);
        assert_eq!(list[0].name, "real");
    }

    proptest::proptest! {
        #[test]
        fn any_entry_parses_without_panic_and_written_entries_read_back(
            name in "\\PC{0,200}",
            junk in ".{0,200}",
            seed in proptest::prelude::any::<u32>(),
        ) {
            let _ = parse_served(&junk);
            let e = served_entry(&name, &id(seed));
            proptest::prop_assert!(e.len() <= MAX_NAME_LEN);
            match parse_served(&e) {
                Some((n, back)) => {
                    proptest::prop_assert_eq!(back, id(seed));
                    proptest::prop_assert!(name.starts_with(n));
                }
                None => proptest::prop_assert!(name.chars().all(char::is_control) || name.is_empty()),
            }
        }
    }

    /// The table of `spec/node-record.md`, "Served models", row by row.
    #[test]
    fn spec_vectors() {
        let page = include_str!("../../spec/node-record.md");
        let table = page.split("#### Served models").nth(1).unwrap();
        let mut rows = 0;
        for line in table
            .lines()
            .skip_while(|l| !l.starts_with("| entry"))
            .skip(2)
        {
            if !line.starts_with('|') {
                break;
            }
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let entry = cells[1].trim_matches('`');
            let parsed = parse_served(entry);
            if cells[2].starts_with("none") {
                assert_eq!(parsed, None, "{entry}");
            } else {
                let (name, id) = parsed.unwrap();
                assert!(cells[2].contains(&format!("`{name}`")), "{entry}");
                assert_eq!(served_entry(name, &id), entry);
            }
            rows += 1;
        }
        assert_eq!(rows, 5);
    }

    #[test]
    fn named_operators_are_capped() {
        let records: Vec<NodeRecord> = (0..20u8)
            .map(|s| record(s + 1, vec![served_entry("m", &id(1))], 100))
            .collect();
        let list = merge(&records, |_| false, 200, 10);
        assert_eq!(list[0].operator_count, 20);
        assert_eq!(list[0].operators.len(), MAX_NAMED_OPERATORS);
    }
}
