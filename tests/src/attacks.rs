//! Attacks a hostile peer runs against real nodes, shared by the adversarial tests in `tests/` and
//! the soak (`warren-soak`). Each is one round of the attack, returns what the victims answered
//! (a [`Tally`]) and leaves judging to the caller: a test asserts on the victims' state, the
//! soak repeats the round for its whole run.

use std::path::Path;
use std::time::Duration;

use libp2p::Multiaddr;
use warren_node::net::Client;
use warren_protocol::block_transfer::{BlockRequest, Request, Response, StoreRequest};
use warren_protocol::observation::{Kind, Observation, REPUTATION_TOPIC};
use warren_protocol::ticket::PlacementTicket;
use warren_protocol::{Codec, ContentId, Keypair, PeerId};

use crate::hostile::Hostile;

/// What the victims answered in one round.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Requests or messages sent.
    pub sent: u64,
    /// Answered as the attacker wanted (a Store accepted, a block served, a message published).
    pub accepted: u64,
    /// Refused with an answer (`Failed`, `accepted: false`, `NotFound`).
    pub refused: u64,
    /// No answer (unreachable, timed out, malformed).
    pub errors: u64,
}

impl Tally {
    /// Adds `other` to this tally.
    pub fn add(&mut self, other: Tally) {
        self.sent += other.sent;
        self.accepted += other.accepted;
        self.refused += other.refused;
        self.errors += other.errors;
    }
}

fn store_outcome(tally: &mut Tally, answer: Result<Response, warren_node::net::BlockError>) {
    tally.sent += 1;
    match answer {
        Ok(Response::Stored(s)) if s.accepted => tally.accepted += 1,
        Ok(_) => tally.refused += 1,
        Err(_) => tally.errors += 1,
    }
}

/// A ticket for `block` signed by the attacker's own `key` (any key signs for itself), ending
/// `expires` (unix seconds); `None` if it cannot be signed.
fn own_ticket(key: &Keypair, block: ContentId, rf: u8, expires: u64) -> Option<PlacementTicket> {
    PlacementTicket::sign(key, block, rf, expires).ok()
}

/// RF poisoning (issue 19, attack 2): fetches each of `blocks` from one of `holders` (anyone may
/// fetch a block) and pushes it back to every holder with `Store{rf: 0}` (so the holder thinks no
/// copies are wanted and stops repairing it) and `Store{rf: 16}` (so it is over-replicated),
/// each once without a placement ticket and once under a ticket signed by `key`, ending
/// `expires` (unix seconds).
pub async fn rf_poison(
    client: &Client,
    holders: &[PeerId],
    blocks: &[ContentId],
    key: &Keypair,
    expires: u64,
) -> Tally {
    let mut tally = Tally::default();
    for block in blocks {
        let mut data = None;
        for holder in holders {
            if let Ok(Response::Block(b)) = client
                .blocks(*holder, Request::Get(BlockRequest { block: *block }))
                .await
            {
                data = Some(b.data);
                break;
            }
        }
        let Some(data) = data else {
            tally.errors += 1;
            continue;
        };
        for rf in [0u8, 16] {
            for ticket in [None, own_ticket(key, *block, rf, expires)] {
                for holder in holders {
                    let request = Request::Store(StoreRequest {
                        block: *block,
                        data: data.clone(),
                        rf,
                        ticket: ticket.clone(),
                    });
                    store_outcome(&mut tally, client.blocks(*holder, request).await);
                }
            }
        }
    }
    tally
}

/// Unpaid permanent storage (issue 19, attack 3): pushes `count` fresh junk blocks of `len` bytes
/// (distinct per `round`) to every victim with `Store{rf: 16}`, asking each to keep them and
/// repair them onward for ever: half without a ticket, half under tickets signed by `key` ending
/// `expires` (unix seconds).
pub async fn junk_store(
    client: &Client,
    victims: &[PeerId],
    count: usize,
    len: usize,
    round: u64,
    key: &Keypair,
    expires: u64,
) -> Tally {
    let mut tally = Tally::default();
    for i in 0..count {
        let mut data = crate::test_bytes(len, round.wrapping_mul(1_000_003) ^ i as u64, false);
        data[..8].copy_from_slice(&round.to_le_bytes());
        let block = ContentId::of_block(Codec::Raw, &data);
        let ticket = if i % 2 == 0 {
            None
        } else {
            own_ticket(key, block, 16, expires)
        };
        for victim in victims {
            let request = Request::Store(StoreRequest {
                block,
                data: data.clone(),
                rf: 16,
                ticket: ticket.clone(),
            });
            store_outcome(&mut tally, client.blocks(*victim, request).await);
        }
    }
    tally
}

/// A gossip flood from fresh keys (issue 19, attack 8): starts a node with a new identity (no
/// standing anywhere) on `dir`, has it publish `count` signed `storage_proof_failed` observations
/// about `subjects` (slander of honest holders) on the reputation topic, and stops it. Run it with
/// a fresh `dir` each round: every round is another stranger.
pub async fn observation_flood(
    dir: &Path,
    network: &str,
    bootstrap: Vec<Multiaddr>,
    subjects: &[PeerId],
    count: usize,
    now_ms: u64,
) -> anyhow::Result<Tally> {
    let key = Keypair::generate_ed25519();
    let stranger = Hostile::start_with_key(dir, network, bootstrap, 0, key.clone(), |_| {}).await?;
    // Let gossipsub learn its mesh before publishing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let observer = stranger.peer_id();
    let mut tally = Tally::default();
    for i in 0..count {
        let Some(subject) = subjects.get(i % subjects.len().max(1)) else {
            break;
        };
        let observation = Observation {
            observer,
            subject: *subject,
            kind: Kind::StorageProofFailed,
            value: 1,
            time_ms: now_ms + i as u64,
            evidence: None,
        };
        tally.sent += 1;
        // Signed by the stranger's node key (the gossip author), as the filter demands.
        let Ok(encoded) = observation.sign(&key).and_then(|s| s.encode()) else {
            tally.errors += 1;
            continue;
        };
        match stranger.client().publish(REPUTATION_TOPIC, encoded).await {
            Ok(()) => tally.accepted += 1,
            Err(_) => tally.errors += 1,
        }
    }
    stranger.stop().await;
    Ok(tally)
}

/// Audits passed without the data (issue 19, attack 1): a holder that keeps nothing. On the
/// bare swarm `bare` (whose record offers storage), it announces itself as a provider of
/// `claimed`, answers every `store` "accepted" and drops the bytes, and answers every audit by
/// fetching the block from its auditor and proving the slice. The tally, updated as audits come
/// in: `accepted` = audits answered with a proof made from the auditor's own copy, `refused` =
/// audits where the auditor would not serve the block.
pub async fn outsource_audits(
    bare: &mut crate::bare::Bare,
    claimed: Vec<ContentId>,
) -> anyhow::Result<std::sync::Arc<std::sync::Mutex<Tally>>> {
    use warren_protocol::block_transfer::{AuditResponse, StoreResponse};
    use warren_storage_mesh::proof::{self, Challenge};

    let tally = std::sync::Arc::new(std::sync::Mutex::new(Tally::default()));
    let mut requests = bare
        .requests
        .take()
        .ok_or_else(|| anyhow::anyhow!("the swarm's block requests are taken already"))?;
    let client = bare.client.clone();
    client.provide(claimed).await?;
    let counts = tally.clone();
    tokio::spawn(async move {
        while let Some(inbound) = requests.recv().await {
            let (peer, channel) = (inbound.peer, inbound.channel);
            let Ok(request) = Request::decode(&inbound.request) else {
                continue;
            };
            let answer = match request {
                Request::Audit(audit) => {
                    add(&counts, |t| t.sent += 1);
                    let client = client.clone();
                    let counts = counts.clone();
                    tokio::spawn(async move {
                        let challenge = Challenge::from_request(&audit);
                        let got = client
                            .blocks(peer, Request::Get(BlockRequest { block: audit.block }))
                            .await;
                        let proof = match got {
                            Ok(Response::Block(b)) => {
                                proof::prove(&b.data, &challenge).ok().map(|p| p.to_bytes())
                            }
                            _ => None,
                        };
                        let response = match proof {
                            Some(proof) => {
                                add(&counts, |t| t.accepted += 1);
                                Response::Proof(AuditResponse {
                                    block: audit.block,
                                    proof,
                                })
                            }
                            None => {
                                add(&counts, |t| t.refused += 1);
                                Response::NotFound { block: audit.block }
                            }
                        };
                        crate::bare::respond(&client, peer, channel, &response);
                    });
                    continue;
                }
                Request::Store(store) => Response::Stored(StoreResponse {
                    block: store.block,
                    accepted: true,
                    reason: None,
                }),
                other => Response::NotFound {
                    block: *other.block(),
                },
            };
            crate::bare::respond(&client, peer, channel, &answer);
        }
    });
    Ok(tally)
}

fn add(tally: &std::sync::Mutex<Tally>, f: impl FnOnce(&mut Tally)) {
    if let Ok(mut t) = tally.lock() {
        f(&mut t);
    }
}
