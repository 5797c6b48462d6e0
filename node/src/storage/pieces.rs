//! Files kept as erasure-coded pieces (spec/storage.md, "Pieces"): a put file's blocks encoded
//! stripe by stripe (`warren_storage_mesh::pieces`), each piece pushed to its own peer; a read
//! fetches the `k` fastest pieces of each stripe in parallel and rebuilds the blocks.
//!
//! ```text
//! put ──► encoder thread: blocks ─► stripe ─► k + m pieces ──(2 stripes ahead)──► place_pieces
//!         (the stripe key's closest peers, one each) ──► StoreRequest per piece (rf 1)
//!     ──► piece manifest: stored here, m + 1 whole copies placed ──► its id
//! get ID ──► piece manifest (local or fetched) ──► per stripe: k piece fetches at once; a
//!         failed or wrong piece, or none delivered for PIECE_HEDGE, starts the next piece
//!     ──(1 stripe ahead)──► decoder thread: rebuild ──► blocks checked against their ids
//!     ──► store (cache) ──► the file's id   (stripe i + 1 is fetched while i is decoded)
//! ```

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::PeerId;
use tracing::{debug, info, warn};
use warren_protocol::{Codec, ContentId};
use warren_storage_mesh::Error as StoreError;
use warren_storage_mesh::pieces::{PieceCode, PieceManifest, place_pieces, stripe_key_of};
use warren_storage_mesh::placement::{Candidate, PlacementPolicy, place};

use crate::error::NodeError;
use crate::storage::{FetchSession, Mesh, PARALLEL};
use crate::view::PiecesReport;

/// Stripes the encoder thread may run ahead of the pushes (memory: this many stripes of
/// pieces, `(k + m) × 1 MiB` each at most).
const STRIPES_AHEAD: usize = 2;
/// When no piece of a stripe arrived for this long, one more piece is asked for beside the
/// ones under way: a slow holder is outrun, not waited for.
const PIECE_HEDGE: Duration = Duration::from_secs(2);
/// Replication factor a piece is pushed with: 0, the piece is the only copy (its stripe is its
/// redundancy), so neither its holder nor the origin's repair pass copies it whole (RF counts the
/// copies besides the origin's, and the origin keeps no piece).
pub(super) const PIECE_RF: usize = 0;

/// Fetched stripes a read may queue for its decoder thread (one more is being decoded, one
/// fetched).
const DECODE_AHEAD: usize = 1;

/// One stripe's pieces (by index) on their way between the network and an encoder or decoder
/// thread.
type Stripe = (usize, Vec<Vec<u8>>);

fn pieces_error(cid: Option<ContentId>, reason: String) -> NodeError {
    NodeError::Storage(StoreError::Pieces { cid, reason })
}

impl Mesh {
    /// Keeps the stored file `root` as pieces of `code`: encodes its blocks, places every
    /// piece of a stripe on its own peer (the stripe key's closest, with group diversity),
    /// stores the piece manifest here and places `m + 1` whole copies of it. The file itself
    /// gets no whole copies (RF 0: it stays here, announced).
    pub async fn put_pieces(
        &self,
        root: ContentId,
        code: PieceCode,
    ) -> Result<PiecesReport, NodeError> {
        code.check().map_err(|r| pieces_error(None, r))?;
        self.keep_here(root).await?;
        let (me, candidates) = self.client.candidates().await?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Stripe>(STRIPES_AHEAD);
        let store = self.store.clone();
        let encoder = tokio::task::spawn_blocking(move || {
            let dag = store.dag(&root)?;
            let blocks = dag
                .into_iter()
                .map(|(cid, _)| store.get_block(&cid).map(|b| (cid, b)));
            let mut stripe: Vec<Vec<u8>> = Vec::with_capacity(code.pieces());
            PieceManifest::encode(code, blocks, |s, _, piece| {
                stripe.push(piece);
                if stripe.len() == code.pieces() {
                    tx.blocking_send((s, std::mem::take(&mut stripe)))
                        .map_err(|_| StoreError::Pipeline("pieces: the pushes stopped"))?;
                }
                Ok(())
            })
        });
        let mut report = PiecesReport {
            data: code.data,
            parity: code.parity,
            ..PiecesReport::default()
        };
        let mut holders = BTreeSet::new();
        while let Some((s, pieces)) = rx.recv().await {
            let (placed, failed) = self
                .place_stripe(s, pieces, &candidates, me, &mut holders)
                .await?;
            report.stripes += 1;
            report.placed += placed;
            report.failed += failed;
        }
        let manifest = encoder
            .await
            .map_err(|e| NodeError::Task {
                what: "pieces encoder",
                source: e,
            })?
            .map_err(NodeError::Storage)?;
        let bytes = manifest.encode_bytes();
        let id = ContentId::of_block(Codec::Raw, &bytes);
        report.manifest = id.to_string();
        report.holders = holders.into_iter().collect();
        report.manifest_copies = self
            .place_piece_manifest(id, bytes, usize::from(code.parity) + 1, &candidates, me)
            .await?;
        self.watch_pieces(id);
        info!(file = %root, pieces = %id, stripes = report.stripes, placed = report.placed,
            failed = report.failed, holders = report.holders.len(), "put as pieces");
        Ok(report)
    }

    /// Pushes the pieces of stripe `s`, piece `i` to the `i`-th of its holders; answers
    /// (placed, failed).
    async fn place_stripe(
        &self,
        s: usize,
        pieces: Vec<Vec<u8>>,
        candidates: &[Candidate],
        me: PeerId,
        holders: &mut BTreeSet<String>,
    ) -> Result<(usize, usize), NodeError> {
        let ids: Vec<ContentId> = pieces
            .iter()
            .map(|p| ContentId::of_block(Codec::Raw, p))
            .collect();
        let key = stripe_key_of(ids.iter().map(|c| c.hash()).collect::<Vec<_>>().iter());
        let len = pieces.first().map_or(0, |p| p.len() as u64);
        let peers = place_pieces(&key, candidates, pieces.len(), len, &[me]);
        if peers.is_empty() {
            return Err(pieces_error(
                None,
                "no peer offers room for pieces: none can be placed".into(),
            ));
        }
        let jobs: Vec<(ContentId, Vec<u8>, PeerId)> = ids
            .into_iter()
            .zip(pieces)
            .zip(peers)
            .map(|((cid, p), to)| (cid, p, to))
            .collect();
        // This node is the pieces' origin: it signs their placement tickets.
        let rfs: Vec<(ContentId, u64)> =
            jobs.iter().map(|(c, p, _)| (*c, p.len() as u64)).collect();
        self.remember_rf(&rfs, PIECE_RF);
        let results: Vec<(PeerId, ContentId, Result<(), String>)> = futures::stream::iter(jobs)
            .map(|(cid, piece, to)| async move {
                (to, cid, self.push_data(cid, piece, to, PIECE_RF).await)
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        let (mut placed, mut failed) = (0, 0);
        for (to, cid, r) in results {
            match r {
                Ok(()) => {
                    placed += 1;
                    holders.insert(to.to_string());
                }
                Err(e) => {
                    failed += 1;
                    warn!(peer = %to, piece = %cid, stripe = s, "piece not stored: {e}");
                }
            }
        }
        Ok((placed, failed))
    }

    /// Stores the piece manifest here, announces it, and places `rf` whole copies on the peers
    /// closest to it; answers the copies placed.
    async fn place_piece_manifest(
        &self,
        id: ContentId,
        bytes: Vec<u8>,
        rf: usize,
        candidates: &[Candidate],
        me: PeerId,
    ) -> Result<usize, NodeError> {
        let len = bytes.len() as u64;
        let local = bytes.clone();
        self.store_call(move |s| s.put_block(&id, &local)).await?;
        self.remember_rf(&[(id, len)], rf);
        self.client.provide(vec![id]).await?;
        let rf = rf.min(warren_storage_mesh::placement::MAX_RF);
        let peers = place(
            &id.hash(),
            candidates,
            &PlacementPolicy::with_rf(rf),
            len,
            &[me],
        );
        let results: Vec<Result<(), String>> = futures::stream::iter(peers.into_peers())
            .map(|to| {
                let bytes = bytes.clone();
                async move { self.push_data(id, bytes, to, rf).await }
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        Ok(results.iter().filter(|r| r.is_ok()).count())
    }

    /// The piece manifest `id`: from the store, else from its holders; checked.
    pub(crate) async fn piece_manifest(&self, id: ContentId) -> Result<PieceManifest, NodeError> {
        let local = self.store_call(move |s| Ok(s.get_block(&id).ok())).await?;
        let bytes = match local {
            Some(b) => b,
            None => self.fetch_block(id, &FetchSession::default()).await?,
        };
        if !PieceManifest::is_piece_manifest(&bytes) {
            return Err(NodeError::Storage(StoreError::NotAFile { cid: id }));
        }
        PieceManifest::decode(&bytes).map_err(|e| match e {
            StoreError::Pieces { reason, .. } => pieces_error(Some(id), reason),
            other => NodeError::Storage(other),
        })
    }

    /// Every piece of the piece manifest `id` with its length, when `id` is a piece manifest
    /// stored here (`warren audit PEER ID` challenges the pieces `PEER` claims); `None` for
    /// any other block or one not stored here.
    pub(crate) async fn piece_pool(
        &self,
        id: ContentId,
    ) -> Result<Option<Vec<(ContentId, u64)>>, NodeError> {
        let local = self.store_call(move |s| Ok(s.get_block(&id).ok())).await?;
        let Some(bytes) = local.filter(|b| PieceManifest::is_piece_manifest(b)) else {
            return Ok(None);
        };
        let m = PieceManifest::decode(&bytes).map_err(NodeError::Storage)?;
        let mut pool = Vec::with_capacity(m.pieces.len());
        for (s, span) in m.stripes().iter().enumerate() {
            for cid in m.stripe_pieces(s) {
                pool.push((cid, span.piece_size as u64));
            }
        }
        Ok(Some(pool))
    }

    /// Rebuilds the file of the piece manifest `id` in this node's store (as cached blocks)
    /// from `k` pieces of each stripe; answers the file's id. Every block is checked against
    /// its id on the way. Pipelined: a decoder thread rebuilds and stores stripe `i` while the
    /// pieces of stripe `i + 1` are fetched (memory: [`DECODE_AHEAD`] + 2 stripes' pieces).
    pub async fn fetch_pieces(&self, id: ContentId) -> Result<ContentId, NodeError> {
        let m = self.piece_manifest(id).await?;
        let root = m
            .root()
            .ok_or_else(|| pieces_error(Some(id), "no blocks".into()))?;
        let (me, candidates) = self.client.candidates().await?;
        let stripes = m.stripes().len();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Stripe>(DECODE_AHEAD);
        let (store, owned) = (self.store.clone(), m.clone());
        let decoder = tokio::task::spawn_blocking(move || {
            let mut cutter = owned.cutter();
            while let Some((s, got)) = rx.blocking_recv() {
                let indexed: Vec<(usize, Vec<u8>)> = got
                    .into_iter()
                    .enumerate()
                    .filter(|(_, p)| !p.is_empty())
                    .collect();
                let bytes = owned.rebuild_stripe(s, &indexed)?;
                for (cid, b) in cutter.push(&bytes)? {
                    store.put_block_cached(&cid, &b)?;
                }
            }
            Ok::<bool, StoreError>(cutter.done())
        });
        let mut fetched: Result<(), NodeError> = Ok(());
        for s in 0..stripes {
            match self.gather_stripe(&m, s, &candidates, me).await {
                Ok(got) => {
                    // As a stripe (index → piece, empty where not fetched) for the channel.
                    let mut slots = vec![Vec::new(); m.code.pieces()];
                    for (i, p) in got {
                        if let Some(slot) = slots.get_mut(i) {
                            *slot = p;
                        }
                    }
                    if tx.send((s, slots)).await.is_err() {
                        break; // the decoder stopped: its error is the answer
                    }
                }
                Err(e) => {
                    fetched = Err(e);
                    break;
                }
            }
        }
        drop(tx);
        let done = decoder
            .await
            .map_err(|e| NodeError::Task {
                what: "pieces decoder",
                source: e,
            })?
            .map_err(NodeError::Storage)?;
        fetched?;
        if !done {
            return Err(pieces_error(
                Some(id),
                "the stripes end before the file's blocks".into(),
            ));
        }
        Ok(root)
    }

    /// Fetches `k` good pieces of stripe `s`: `k` at once (data pieces first: no decoding when
    /// they all come), and the next one whenever one fails, is not the piece its id names, or
    /// none has arrived for [`PIECE_HEDGE`]. The pieces still under way when `k` are in are
    /// dropped.
    async fn gather_stripe(
        &self,
        m: &PieceManifest,
        s: usize,
        candidates: &[Candidate],
        me: PeerId,
    ) -> Result<Vec<(usize, Vec<u8>)>, NodeError> {
        let ids = m.stripe_pieces(s);
        let k = usize::from(m.code.data);
        let size = m.stripes().get(s).map_or(0, |span| span.piece_size as u64);
        let hints = place_pieces(&m.stripe_key(s), candidates, ids.len(), size, &[me]);
        let start = |i: usize| {
            let (cid, hint) = (ids[i], hints.get(i).copied());
            async move { (i, self.fetch_piece(cid, hint).await) }
        };
        let mut running = FuturesUnordered::new();
        let mut next = 0;
        while next < k.min(ids.len()) {
            running.push(start(next));
            next += 1;
        }
        let mut got: Vec<(usize, Vec<u8>)> = Vec::with_capacity(k);
        let mut failures: Vec<String> = Vec::new();
        while got.len() < k {
            if running.is_empty() {
                if next >= ids.len() {
                    return Err(NodeError::BlockUnavailable {
                        block: ids[0],
                        attempts: ids.len(),
                        reasons: format!(
                            "stripe {s} (this is its piece 0): {} good pieces of {}, {k} \
                             needed: {}",
                            got.len(),
                            ids.len(),
                            failures.join("; ")
                        ),
                    });
                }
                running.push(start(next));
                next += 1;
                continue;
            }
            tokio::select! {
                Some((i, r)) = running.next() => {
                    let r = r.and_then(|b| m.check_piece(s, i, &b).map(|()| b).map_err(|e| e.to_string()));
                    match r {
                        Ok(b) => got.push((i, b)),
                        Err(e) => {
                            debug!(stripe = s, piece = i, "piece not fetched: {e}");
                            failures.push(format!("piece {i}: {e}"));
                            if next < ids.len() {
                                running.push(start(next));
                                next += 1;
                            }
                        }
                    }
                }
                () = tokio::time::sleep(PIECE_HEDGE), if next < ids.len() => {
                    debug!(stripe = s, "no piece for {PIECE_HEDGE:?}: asking piece {next} too");
                    running.push(start(next));
                    next += 1;
                }
            }
        }
        Ok(got)
    }

    /// One piece: from this node's store, else from `hint` (the peer placement names), else
    /// from the holders the DHT names.
    pub(super) async fn fetch_piece(
        &self,
        cid: ContentId,
        hint: Option<PeerId>,
    ) -> Result<Vec<u8>, String> {
        if let Ok(Some(b)) = self.store_call(move |s| Ok(s.get_block(&cid).ok())).await {
            return Ok(b);
        }
        let session = FetchSession::default();
        if let (Some(peer), Ok(mut s)) = (hint, session.lock()) {
            s.add_holder(peer);
        }
        self.fetch_block_once(cid, &session).await
    }
}
