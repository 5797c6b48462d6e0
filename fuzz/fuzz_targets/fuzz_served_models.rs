//! A record's `compute.models` entries as the mesh model list reads them
//! (`warren_protocol::mesh_models`, spec/node-record.md "Served models"): the input, split at
//! newlines, is the entries of one operator's record. Never panics; an entry read as a served
//! model writes back to itself, and the list holds at most one item per id.

#![no_main]

use libfuzzer_sys::fuzz_target;
use warren_protocol::mesh_models::{merge, parse_served, served_entry};
use warren_protocol::{ComputeOffer, NodeRecord, Price, RECORD_VERSION, Role, keypair_from_secret};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let entries: Vec<String> = text.lines().take(64).map(str::to_string).collect();
    for e in &entries {
        if let Some((name, id)) = parse_served(e) {
            assert_eq!(&served_entry(name, &id), e);
        }
    }
    let record = NodeRecord {
        version: RECORD_VERSION,
        network: "fuzz".into(),
        peer_id: keypair_from_secret([1; 32]).public().to_peer_id(),
        roles: vec![Role::Operator],
        onion_key: [1; 32],
        storage: None,
        compute: Some(ComputeOffer {
            cpu_cores: 1,
            ram_bytes: 1,
            gpus: vec![],
            models: entries,
        }),
        price: Price::default(),
        load_permille: 0,
        addrs: vec![],
        issued_at: 1,
        expires_at: 100,
    };
    let list = merge([&record], |_| true, 2, 256);
    for (i, m) in list.iter().enumerate() {
        assert!(list[..i].iter().all(|o| o.id != m.id));
        assert_eq!(m.operator_count, 1);
    }
});
