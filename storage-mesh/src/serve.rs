//! How a node answers a block request from another peer (spec: `spec/block-transfer.md`): the
//! answer to a decoded [`Request`] given the local [`Store`].
//!
//! | request | answer |
//! |---|---|
//! | `get` | the block, verified against its id as it is read; `not_found` if it is missing or its copy is bad |
//! | `store` | with a valid placement ticket within its origin's quota: the block is stored (checked against its id, within the offer) and held for the mesh under the ticket's lease (a live lease of another origin stays as it is): `stored` accepted, and the block is to be announced as provided; without a ticket, a bad one, or over quota: `stored` refused with the reason (at most 200 characters) |
//! | `renew` | the lease of a held block runs to the fresh ticket's expiry: `stored` accepted; `not_found` if the block is not held |
//! | `audit` | a proof of storage of the challenged slice; `not_found` as for `get`; `failed` with the reason when the challenge does not fit the block |
//!
//! A local copy that is listed but altered (its bytes do not hash to its id) or gone (its file
//! is missing) is never sent: it is discarded so a good copy can take its place, and the answer
//! is `not_found` ([`check_bad_copy`]). A copy that cannot be read *now* (EMFILE, EIO, a
//! permission, anything but a wrong hash or a missing file) is kept: the answer is `failed`
//! ([`UNREADABLE_NOW`]) and the caller reports it ([`Answer::unreadable`]). A transient error
//! never deletes a good block.
//!
//! Non-goals: decoding the request (done by [`Request::decode`], which also verifies a pushed
//! replica), counting fetches for hot content, metrics and logging (the caller logs from the
//! [`Answer`]).
//!
//! Sans-I/O apart from the store: the caller passes its clock (Unix seconds) and runs this on a
//! blocking thread.

use warren_protocol::ContentId;
use warren_protocol::block_transfer::{
    AuditResponse, BlockRequest, BlockResponse, MAX_REASON_LEN, RenewRequest, Request, Response,
    StoreRequest, StoreResponse,
};

use crate::proof::{self, Challenge};
use crate::{Error, Held, Store};

/// Longest reason, in characters, a refused store or a failed audit carries.
const REASON_CHARS: usize = 200;

/// The reason of the `failed` answer for a block this node lists but cannot read now. It names
/// no local path: the I/O error itself goes to the node's log only.
pub const UNREADABLE_NOW: &str =
    "the block cannot be read here now (I/O error): ask another holder";

/// A fault to simulate when answering (tests of faulty nodes only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Answer honestly.
    #[default]
    None,
    /// A faulty disk: every proof of storage has its first byte flipped, so it fails to verify.
    CorruptProofs,
}

/// A bad local copy found while answering, and what became of it.
#[derive(Debug)]
pub struct BadCopy {
    /// The block.
    pub block: ContentId,
    /// What was wrong with it (the read's error).
    pub error: Error,
    /// Whether discarding it worked.
    pub discarded: Result<(), Error>,
}

/// The answer to one request.
#[derive(Debug)]
pub struct Answer {
    /// What to send back.
    pub response: Response,
    /// A replica now held: announce this node as a provider of it.
    pub provide: Option<ContentId>,
    /// A bad local copy was found (and discarded): for the caller's log.
    pub bad_copy: Option<BadCopy>,
    /// A listed block could not be read now, and was kept: the block and the error, for the
    /// caller's log.
    pub unreadable: Option<(ContentId, Error)>,
}

impl Answer {
    fn plain(response: Response) -> Self {
        Self {
            response,
            provide: None,
            bad_copy: None,
            unreadable: None,
        }
    }
}

/// Answers one decoded `request` against `store` at `now_secs` (Unix seconds: leases are
/// checked against it). `quota` is what one origin may hold here under its leases, in bytes.
/// `fault` is [`Fault::None`] except in tests of faulty nodes.
pub fn answer(store: &Store, request: Request, now_secs: u64, fault: Fault, quota: u64) -> Answer {
    match request {
        Request::Get(BlockRequest { block }) => match store.get_block(&block) {
            Ok(data) => Answer::plain(Response::Block(BlockResponse { block, data })),
            Err(e) => not_served(store, block, e),
        },
        Request::Store(StoreRequest {
            block,
            data,
            ticket,
            ..
        }) => {
            let stored = match &ticket {
                // The `rf` a push states is not taken on the pusher's word.
                None => Err(Error::Refused {
                    cid: block,
                    reason: "no placement ticket: this node keeps replicas only under their \
                             origin's signed ticket"
                        .into(),
                }),
                Some(t) => {
                    let had = store.has_block(&block).unwrap_or(true);
                    let held = store
                        .check_ticket(&block, data.len() as u64, t, quota, now_secs)
                        .and_then(|()| store.put_block(&block, &data))
                        .and_then(|()| store.hold_leased(&block, t, quota, now_secs));
                    if matches!(held, Err(Error::Refused { .. })) && !had {
                        // Refused after it was written (another push took the quota between
                        // the check and the hold): not kept as unheld junk.
                        let _ = store.discard_block(&block);
                    }
                    held
                }
            };
            match stored {
                Ok(held) => Answer {
                    response: Response::Stored(StoreResponse {
                        block,
                        accepted: true,
                        reason: match held {
                            Held::Leased => None,
                            Held::Unchanged(why) => Some(why.into()),
                        },
                    }),
                    provide: Some(block),
                    bad_copy: None,
                    unreadable: None,
                },
                Err(e) => Answer::plain(Response::Stored(StoreResponse {
                    block,
                    accepted: false,
                    reason: Some(short(&e)),
                })),
            }
        }
        Request::Renew(RenewRequest { block, ticket }) => {
            match store.renew_lease(&block, &ticket, quota, now_secs) {
                Ok(None) => Answer::plain(Response::NotFound { block }),
                Ok(Some(held)) => Answer::plain(Response::Stored(StoreResponse {
                    block,
                    accepted: true,
                    reason: match held {
                        Held::Leased => None,
                        Held::Unchanged(why) => Some(why.into()),
                    },
                })),
                Err(e) => Answer::plain(Response::Stored(StoreResponse {
                    block,
                    accepted: false,
                    reason: Some(short(&e)),
                })),
            }
        }
        Request::Audit(req) => {
            let block = req.block;
            let data = match store.get_block(&block) {
                Ok(data) => data,
                Err(e) => return not_served(store, block, e),
            };
            match proof::prove(&data, &Challenge::from_request(&req)) {
                Ok(p) => {
                    let mut proof = p.to_bytes();
                    if fault == Fault::CorruptProofs
                        && let Some(b) = proof.first_mut()
                    {
                        // A faulty disk: the tag no longer matches the slice.
                        *b ^= 0xff;
                    }
                    Answer::plain(Response::Proof(AuditResponse { block, proof }))
                }
                Err(e) => Answer::plain(Response::Failed { reason: short(&e) }),
            }
        }
    }
}

/// The answer to a request that did not decode: `failed`, with the reason cut to
/// [`MAX_REASON_LEN`] bytes (on a character boundary).
pub fn undecodable(reason: &str) -> Response {
    let mut end = reason.len().min(MAX_REASON_LEN);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Response::Failed {
        reason: reason[..end].to_owned(),
    }
}

/// What a failed read of a block says about the local copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadFailure {
    /// The block is not here (never was, or already dropped).
    Absent,
    /// The copy is bad for good: its bytes do not hash to its id, or the index lists it and its
    /// bytes are gone. Discard it; a good copy can take its place.
    Bad,
    /// The copy could not be read now (an I/O error other than a missing file, the index
    /// failing, …): keep it, report it, try again later.
    Transient,
}

/// Classifies `error`, from reading a block the index does (`listed`) or does not list. Only a
/// wrong hash or bytes that are gone are [`ReadFailure::Bad`]; an I/O error is never a reason to
/// delete (EMFILE under a connection flood, EIO, a permission fixed later).
pub fn classify(error: &Error, listed: bool) -> ReadFailure {
    match error {
        Error::Corrupt { .. } => ReadFailure::Bad,
        Error::Missing { .. } if listed => ReadFailure::Bad,
        Error::Missing { .. } => ReadFailure::Absent,
        _ => ReadFailure::Transient,
    }
}

/// After reading `block` from `store` failed with `error`: if the copy is bad for good
/// ([`classify`]), discards it so a good copy can replace it, and says so. `None` when the block
/// is simply not there, or could not be read now (then it is kept).
pub fn check_bad_copy(store: &Store, block: &ContentId, error: Error) -> Option<BadCopy> {
    let listed = store.has_block(block).unwrap_or(false);
    (classify(&error, listed) == ReadFailure::Bad).then(|| BadCopy {
        block: *block,
        error,
        discarded: store.discard_block(block),
    })
}

fn not_served(store: &Store, block: ContentId, error: Error) -> Answer {
    let listed = store.has_block(&block).unwrap_or(false);
    match classify(&error, listed) {
        ReadFailure::Transient => Answer {
            response: Response::Failed {
                reason: UNREADABLE_NOW.to_owned(),
            },
            provide: None,
            bad_copy: None,
            unreadable: Some((block, error)),
        },
        _ => Answer {
            response: Response::NotFound { block },
            provide: None,
            bad_copy: check_bad_copy(store, &block, error),
            unreadable: None,
        },
    }
}

fn short(e: &impl std::fmt::Display) -> String {
    e.to_string().chars().take(REASON_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proof::Proof;
    use crate::test_util::store;
    use warren_protocol::Codec;

    use warren_protocol::ticket::PlacementTicket;

    /// A ticket of origin `o` expiring at 1 700 100 000.
    fn ticket(o: u8, block: ContentId, rf: u8) -> PlacementTicket {
        let key = warren_protocol::keypair_from_secret([o; 32]);
        PlacementTicket::sign(&key, block, rf, 1_700_100_000).unwrap()
    }

    fn block(i: u8, len: usize) -> (ContentId, Vec<u8>) {
        let bytes: Vec<u8> = (0..len).map(|j| (j as u8) ^ i).collect();
        (ContentId::of_block(Codec::Raw, &bytes), bytes)
    }

    fn get(cid: ContentId) -> Request {
        Request::Get(BlockRequest { block: cid })
    }

    fn audit(cid: ContentId, len: usize) -> (Challenge, Request) {
        let challenge = Challenge::new(cid.hash(), len as u64, [3; 32]);
        let request = Request::Audit(challenge.to_request(Codec::Raw));
        (challenge, request)
    }

    #[test]
    fn a_held_block_is_served_and_a_missing_one_is_not_found() {
        let (_dir, s) = store(1 << 30);
        let (a, bytes) = block(1, 50_000);
        let (missing, _) = block(2, 10);
        s.put_block(&a, &bytes).unwrap();
        let ans = answer(&s, get(a), 0, Fault::None, u64::MAX);
        assert_eq!(
            ans.response,
            Response::Block(BlockResponse {
                block: a,
                data: bytes
            })
        );
        assert!(ans.provide.is_none() && ans.bad_copy.is_none());
        let ans = answer(&s, get(missing), 0, Fault::None, u64::MAX);
        assert_eq!(ans.response, Response::NotFound { block: missing });
        assert!(ans.bad_copy.is_none(), "a block never held is no bad copy");
    }

    #[test]
    fn a_corrupt_copy_is_never_sent_and_is_discarded() {
        for len in [1000, 50_000] {
            // Inline in the index, then in a file of its own.
            let (_dir, s) = store(1 << 30);
            let (a, bytes) = block(1, len);
            s.put_block(&a, &bytes).unwrap();
            s.hold_leased(&a, &ticket(1, a, 3), u64::MAX, 1_700_000_005)
                .unwrap();
            s.corrupt_block(&a, 10);
            let ans = answer(&s, get(a), 0, Fault::None, u64::MAX);
            assert_eq!(ans.response, Response::NotFound { block: a });
            let bad = ans.bad_copy.expect("reported");
            assert_eq!(bad.block, a);
            assert!(matches!(bad.error, Error::Corrupt { .. }), "{}", bad.error);
            assert!(bad.discarded.is_ok());
            assert!(!s.has_block(&a).unwrap(), "discarded");
            assert!(s.held().unwrap().is_empty(), "no longer held");
            // A good copy can take its place.
            let ans = answer(
                &s,
                Request::Store(StoreRequest {
                    block: a,
                    data: bytes,
                    rf: 3,
                    ticket: Some(ticket(1, a, 3)),
                }),
                1_700_000_006,
                Fault::None,
                u64::MAX,
            );
            assert_eq!(ans.provide, Some(a));
        }
    }

    #[test]
    fn only_a_wrong_hash_or_gone_bytes_make_a_bad_copy() {
        let cid = block(1, 10).0;
        let io = |kind| Error::Io {
            path: "/x".into(),
            source: std::io::Error::from(kind),
        };
        let corrupt = Error::Corrupt {
            cid,
            reason: "its 10 bytes do not hash to its id".into(),
        };
        let emfile = Error::Io {
            path: "/x".into(),
            source: std::io::Error::from_raw_os_error(24),
        };
        assert_eq!(classify(&corrupt, true), ReadFailure::Bad);
        assert_eq!(classify(&Error::Missing { cid }, true), ReadFailure::Bad);
        assert_eq!(
            classify(&Error::Missing { cid }, false),
            ReadFailure::Absent
        );
        for e in [
            emfile,
            io(std::io::ErrorKind::PermissionDenied),
            io(std::io::ErrorKind::Other),
            io(std::io::ErrorKind::Interrupted),
        ] {
            assert_eq!(classify(&e, true), ReadFailure::Transient, "{e}");
        }
    }

    #[test]
    fn a_copy_unreadable_for_now_is_kept_and_answered_failed() {
        let (_dir, s) = store(1 << 30);
        let (a, bytes) = block(1, 50_000);
        s.put_block(&a, &bytes).unwrap();
        s.hold_leased(&a, &ticket(1, a, 3), u64::MAX, 1_700_000_005)
            .unwrap();
        // Its file turns into a directory: open works, every read fails with EISDIR (root
        // ignores file modes, so this is how a test makes a read fail for a while).
        let path = s.block_path(&a);
        let aside = path.with_extension("aside");
        std::fs::rename(&path, &aside).unwrap();
        std::fs::create_dir(&path).unwrap();
        let (_, audit_req) = audit(a, bytes.len());
        for request in [get(a), audit_req] {
            let ans = answer(&s, request, 0, Fault::None, u64::MAX);
            assert_eq!(
                ans.response,
                Response::Failed {
                    reason: UNREADABLE_NOW.into()
                }
            );
            assert!(ans.bad_copy.is_none());
            let (block, error) = ans.unreadable.expect("reported");
            assert_eq!(block, a);
            assert!(matches!(error, Error::Io { .. }), "{error}");
            assert!(s.has_block(&a).unwrap(), "kept");
            assert_eq!(s.held().unwrap(), [a], "still held");
        }
        assert!(check_bad_copy(&s, &a, s.get_block(&a).unwrap_err()).is_none());
        // The condition ends: the same copy is served again.
        std::fs::remove_dir(&path).unwrap();
        std::fs::rename(&aside, &path).unwrap();
        let ans = answer(&s, get(a), 0, Fault::None, u64::MAX);
        assert_eq!(
            ans.response,
            Response::Block(BlockResponse {
                block: a,
                data: bytes
            })
        );
        // A file that is gone for good is a bad copy: dropped, so a good one can replace it.
        std::fs::remove_file(&path).unwrap();
        let ans = answer(&s, get(a), 0, Fault::None, u64::MAX);
        assert_eq!(ans.response, Response::NotFound { block: a });
        assert!(ans.bad_copy.is_some_and(|b| b.discarded.is_ok()));
        assert!(!s.has_block(&a).unwrap());
    }

    #[test]
    fn a_pushed_replica_is_stored_held_at_its_tickets_rf_and_provided() {
        let (_dir, s) = store(1 << 30);
        let (a, bytes) = block(1, 20_000);
        let ans = answer(
            &s,
            Request::Store(StoreRequest {
                block: a,
                data: bytes.clone(),
                rf: 16,
                ticket: Some(ticket(1, a, 4)),
            }),
            1_700_000_000,
            Fault::None,
            u64::MAX,
        );
        assert_eq!(
            ans.response,
            Response::Stored(StoreResponse {
                block: a,
                accepted: true,
                reason: None
            })
        );
        assert_eq!(ans.provide, Some(a));
        assert_eq!(s.get_block(&a).unwrap(), bytes);
        assert_eq!(s.held().unwrap(), vec![a]);
        assert_eq!(s.held_rf(&a).unwrap(), Some(4));
        // Pushed back without a ticket (RF 0 or 16): refused, the lease unchanged.
        for rf in [0, 16] {
            let ans = answer(
                &s,
                Request::Store(StoreRequest {
                    block: a,
                    data: bytes.clone(),
                    rf,
                    ticket: None,
                }),
                1_700_000_001,
                Fault::None,
                u64::MAX,
            );
            let Response::Stored(StoreResponse {
                accepted, reason, ..
            }) = &ans.response
            else {
                panic!("{:?}", ans.response)
            };
            assert!(
                !accepted
                    && reason
                        .as_deref()
                        .unwrap_or("")
                        .contains("no placement ticket")
            );
            assert_eq!(s.held_rf(&a).unwrap(), Some(4));
        }
        // The origin renews; a block not held is not found.
        let renew = |block, t| {
            answer(
                &s,
                Request::Renew(RenewRequest { block, ticket: t }),
                1_700_000_002,
                Fault::None,
                u64::MAX,
            )
            .response
        };
        assert!(matches!(
            renew(a, ticket(1, a, 4)),
            Response::Stored(StoreResponse { accepted: true, .. })
        ));
        let (b, _) = block(2, 10);
        assert_eq!(renew(b, ticket(1, b, 4)), Response::NotFound { block: b });
    }

    #[test]
    fn a_junk_push_without_a_ticket_or_over_quota_is_not_stored() {
        let (_dir, s) = store(1 << 30);
        let (a, bytes) = block(1, 20_000);
        let push = |t: Option<PlacementTicket>, quota| {
            answer(
                &s,
                Request::Store(StoreRequest {
                    block: a,
                    data: bytes.clone(),
                    rf: 16,
                    ticket: t,
                }),
                1_700_000_000,
                Fault::None,
                quota,
            )
            .response
        };
        let Response::Stored(StoreResponse {
            accepted: false,
            reason: Some(r),
            ..
        }) = push(None, u64::MAX)
        else {
            panic!("accepted")
        };
        assert!(r.contains("no placement ticket"), "{r}");
        let Response::Stored(StoreResponse {
            accepted: false,
            reason: Some(r),
            ..
        }) = push(Some(ticket(1, a, 16)), 10_000)
        else {
            panic!("accepted")
        };
        assert!(r.contains("over quota"), "{r}");
        assert!(!s.has_block(&a).unwrap(), "refused before storing");
        assert!(s.held().unwrap().is_empty());
    }

    #[test]
    fn a_replica_over_the_offer_is_refused_with_a_short_reason() {
        let (_dir, s) = store(10_000);
        let (a, bytes) = block(1, 20_000);
        let ans = answer(
            &s,
            Request::Store(StoreRequest {
                block: a,
                data: bytes,
                rf: 3,
                ticket: Some(ticket(1, a, 3)),
            }),
            1_700_000_000,
            Fault::None,
            u64::MAX,
        );
        let Response::Stored(StoreResponse {
            block,
            accepted: false,
            reason: Some(reason),
        }) = &ans.response
        else {
            panic!("not refused: {:?}", ans.response);
        };
        assert_eq!(*block, a);
        assert!(reason.contains("offer"), "{reason}");
        assert!(reason.chars().count() <= REASON_CHARS);
        assert!(ans.provide.is_none());
        assert!(!s.has_block(&a).unwrap());
    }

    #[test]
    fn an_audit_is_answered_with_a_proof_that_verifies_unless_the_disk_is_faulty() {
        let (_dir, s) = store(1 << 30);
        let (a, bytes) = block(1, 100_000);
        s.put_block(&a, &bytes).unwrap();
        let (challenge, request) = audit(a, bytes.len());
        let Response::Proof(p) = answer(&s, request.clone(), 0, Fault::None, u64::MAX).response
        else {
            panic!("no proof");
        };
        assert_eq!(p.block, a);
        let proof = Proof::from_bytes(&a.hash(), &p.proof).unwrap();
        assert!(proof::verify(&challenge, &proof).is_ok());
        let Response::Proof(p) = answer(&s, request, 0, Fault::CorruptProofs, u64::MAX).response
        else {
            panic!("no proof");
        };
        let bad = Proof::from_bytes(&a.hash(), &p.proof)
            .and_then(|proof| proof::verify(&challenge, &proof));
        assert!(bad.is_err());
    }

    #[test]
    fn an_audit_of_a_missing_block_or_a_wrong_length_is_refused() {
        let (_dir, s) = store(1 << 30);
        let (a, bytes) = block(1, 100_000);
        let (_, request) = audit(a, bytes.len());
        assert_eq!(
            answer(&s, request, 0, Fault::None, u64::MAX).response,
            Response::NotFound { block: a }
        );
        s.put_block(&a, &bytes).unwrap();
        // The auditor believes the block is far longer than it is.
        let (_, request) = audit(a, 1 << 20);
        let ans = answer(&s, request, 0, Fault::None, u64::MAX);
        assert!(
            matches!(ans.response, Response::Failed { .. }),
            "{:?}",
            ans.response
        );
    }

    #[test]
    fn an_undecodable_request_is_answered_failed_within_the_reason_limit() {
        assert_eq!(
            undecodable("bad"),
            Response::Failed {
                reason: "bad".into()
            }
        );
        let long = "é".repeat(MAX_REASON_LEN);
        let Response::Failed { reason } = undecodable(&long) else {
            panic!("not failed");
        };
        assert!(reason.len() <= MAX_REASON_LEN && reason.len() >= MAX_REASON_LEN - 1);
        assert!(long.starts_with(&reason));
    }
}
