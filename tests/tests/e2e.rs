//! warren's end-to-end tests, one test binary for all of them.
//!
//! Each module starts real `warren` node processes on loopback (or in network namespaces it
//! creates) and drives them the way a user or a hostile peer would. They are one binary, not one
//! per file, because every test binary links the whole node (libp2p, candle, redb): 38 binaries
//! took about 10 GB of disk and several minutes of linking on a 2-core CI machine, and CI ran out
//! of disk ("ld terminated with signal 7"). Run one file's tests with
//! `cargo test -p warren-tests --test e2e -- hot::` (the module name is the old file name).

mod api;
mod bad_blocks;
mod bad_input;
mod credits;
mod credits_relay;
mod credits_slots;
mod dag_bomb;
mod dashboard;
mod devnet;
mod directories;
mod files;
mod gateway;
mod home;
mod hostile_audit;
mod hostile_inference;
mod hostile_net;
mod hostile_onion_hop;
mod hostile_onion_read;
mod hostile_pieces;
mod hostile_placement;
mod hostile_relay_worker;
mod hostile_sybil;
mod hot;
mod inference;
mod interop_js;
mod local_node;
mod mesh;
mod model_mesh;
mod names;
mod nat;
mod netns_devnet;
mod offer;
mod onion;
mod openai;
mod openai_mesh_models;
mod pieces;
mod private;
mod republish;
mod reputation;
mod routing;
mod slow;
mod stalled_upload;
mod transient_io;
mod worker;
