//! Verified parallel fetch: sessions, holder order, retries and the hedged race.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use libp2p::PeerId;
use tracing::{debug, info, warn};
use warren_protocol::ContentId;
use warren_protocol::block_transfer::{BlockRequest, Request, Response};
use warren_protocol::observation::Kind;
use warren_protocol::reputation::{FLOOR, NEUTRAL_SCORE};
use warren_storage_mesh::Error as StoreError;
use warren_storage_mesh::placement::fetch_order;

use crate::clock::unix_now_ms as now_ms;
use crate::error::NodeError;
use crate::storage::FetchSession;
use crate::storage::arrivals::Arrivals;
use crate::storage::{FETCH_RETRY, Mesh, PARALLEL};
use warren_storage_mesh::fetch::{Event as RaceEvent, Race};

impl Mesh {
    /// Makes every block of the file `root` local, fetching what is missing from its holders.
    pub async fn fetch(&self, root: ContentId) -> Result<(), NodeError> {
        let session = FetchSession::default();
        let missing = self.fetch_manifests(root, &session).await?;
        let results: Vec<Result<(), NodeError>> =
            self.fetch_blocks(missing, &session, None).collect().await;
        results.into_iter().collect()
    }

    /// The first half of a fetch: makes every manifest of the file `root` local (level by level,
    /// until the whole tree is listed) and returns the blocks still missing, in file order.
    pub async fn fetch_manifests(
        &self,
        root: ContentId,
        session: &FetchSession,
    ) -> Result<Vec<ContentId>, NodeError> {
        let dag = self.dag_fetching_manifests(root, session).await?;
        let store = self.store.clone();
        let cids: Vec<ContentId> = dag.iter().map(|(c, _)| *c).collect();
        tokio::task::spawn_blocking(move || {
            cids.into_iter()
                .filter(|c| !store.has_block(c).unwrap_or(false))
                .collect()
        })
        .await
        .map_err(|source| NodeError::Task {
            what: "store",
            source,
        })
    }

    /// Every block of the file `root` with its length ([`Store::dag`]), fetching the manifests
    /// this node lacks, level by level, until the whole tree is listed (not the chunks).
    pub(crate) async fn dag_fetching_manifests(
        &self,
        root: ContentId,
        session: &FetchSession,
    ) -> Result<Vec<(ContentId, u64)>, NodeError> {
        loop {
            match self.store_call(move |s| s.dag(&root)).await {
                Ok(dag) => return Ok(dag),
                Err(NodeError::Storage(StoreError::Missing { cid })) => {
                    let bytes = self.fetch_block(cid, session).await?;
                    self.store_call(move |s| s.put_block_cached(&cid, &bytes))
                        .await?
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The second half: fetches `blocks`, `PARALLEL` at a time and started in the order given
    /// (file order, so a reader streaming the file waits as little as possible), and stores each
    /// in the store. With a `board`, each block's bytes are handed to it as soon as they are
    /// verified (the reader need not wait for the store), it learns when each is stored or
    /// failed, a block the store refuses for its offer is kept there for the reader instead,
    /// and no block is asked for while the board has no [`room`](Arrivals::room).
    pub fn fetch_blocks<'a>(
        &'a self,
        blocks: Vec<ContentId>,
        session: &'a FetchSession,
        board: Option<Arc<Arrivals>>,
    ) -> impl Stream<Item = Result<(), NodeError>> + 'a {
        futures::stream::iter(blocks)
            .map(move |cid| {
                let board = board.clone();
                async move {
                    if let Some(b) = &board {
                        b.room().await;
                    }
                    let result = match self.fetch_block(cid, session).await {
                        Ok(bytes) => {
                            let bytes = Arc::new(bytes);
                            if let Some(b) = &board {
                                if !b.caches() {
                                    // `get --no-cache`: the reader's copy is the only one.
                                    b.keep(cid, &bytes);
                                    return Ok(());
                                }
                                b.fetched(cid, &bytes);
                            }
                            let copy = bytes.clone();
                            let stored = self
                                .store_call(move |s| s.put_block_cached(&cid, &copy))
                                .await;
                            match (&board, stored) {
                                // The fetched copy is only a cache: the read goes on from
                                // memory.
                                (
                                    Some(b),
                                    Err(NodeError::Storage(StoreError::OfferExceeded { .. })),
                                ) => {
                                    b.keep(cid, &bytes);
                                    return Ok(());
                                }
                                (_, stored) => stored,
                            }
                        }
                        Err(e) => Err(e),
                    };
                    if let Some(b) = &board {
                        b.done(cid, &result);
                    }
                    result
                }
            })
            .buffer_unordered(PARALLEL)
    }

    /// Asks `peer` for `cid`: its bytes, when the answer matches the id.
    pub(crate) async fn try_fetch(&self, cid: ContentId, peer: PeerId) -> Result<Vec<u8>, String> {
        match self
            .client
            .blocks(peer, Request::Get(BlockRequest { block: cid }))
            .await
        {
            // Decoding verified the bytes against the id, and the answer against the request.
            Ok(Response::Block(b)) => {
                if let Some(c) = self.credits() {
                    c.received(peer, b.data.len() as u64);
                }
                Ok(b.data)
            }
            Ok(other) => Err(format!("{peer} answered {}", other.kind())),
            Err(e) => {
                if e.is_peer_fault() {
                    // A block that fails its hash, or an answer to another request: the peer's
                    // doing, so reputation hears of it.
                    warn!(%peer, block = %cid, "bad block answer: {e}");
                    self.observe_kind(peer, Kind::InvalidMessage, cid.to_bytes(), now_ms())
                        .await;
                }
                Err(e.to_string())
            }
        }
    }

    /// `holders` of `cid` in the order to ask them: best reputation first, below-floor holders
    /// last ([`fetch_order`]).
    pub(crate) fn fetch_order(&self, cid: &ContentId, holders: &[PeerId]) -> Vec<PeerId> {
        let scores = self.reputation.snapshot();
        let scored: Vec<(PeerId, Option<f64>)> =
            holders.iter().map(|p| (*p, scores.weight(p))).collect();
        fetch_order(&cid.hash(), &scored, FLOOR, NEUTRAL_SCORE)
    }

    /// Fetches one block from whichever holder answers with bytes that match its id: first the
    /// session's holders, then those the DHT names, each in [`Self::fetch_order`]. When none of
    /// them has it, asks again after [`FETCH_RETRY`] (a holder's provider record can still be on
    /// its way through the DHT right after a put, a holder can be briefly overloaded).
    pub(crate) async fn fetch_block(
        &self,
        cid: ContentId,
        session: &FetchSession,
    ) -> Result<Vec<u8>, NodeError> {
        let mut last = String::new();
        for (attempt, wait) in std::iter::once(&Duration::ZERO)
            .chain(FETCH_RETRY.iter())
            .enumerate()
        {
            if !wait.is_zero() {
                debug!(%cid, attempt, "no holder answered; asking again in {wait:?}");
                tokio::time::sleep(*wait).await;
            }
            match self.fetch_block_once(cid, session).await {
                Ok(bytes) => return Ok(bytes),
                Err(e) => last = e,
            }
        }
        Err(NodeError::BlockUnavailable {
            block: cid,
            attempts: FETCH_RETRY.len() + 1,
            reasons: last,
        })
    }

    /// One round of [`Self::fetch_block`]: every known holder once.
    pub(crate) async fn fetch_block_once(
        &self,
        cid: ContentId,
        session: &FetchSession,
    ) -> Result<Vec<u8>, String> {
        let known: Vec<PeerId> = session
            .lock()
            .map(|s| s.holders().to_vec())
            .unwrap_or_default();
        let mut failures = Vec::new();
        let order = self.slow_last(session, self.fetch_order(&cid, &known));
        if let Some((_, bytes)) = self.race(cid, order, session, &mut failures).await {
            return Ok(bytes);
        }
        let (me, _) = self.client.candidates().await.map_err(|e| e.to_string())?;
        let mut providers = self
            .client
            .providers(cid)
            .await
            .map_err(|e| e.to_string())?;
        providers.retain(|p| *p != me && !known.contains(p));
        let order = self.slow_last(session, self.fetch_order(&cid, &providers));
        if let Some((peer, bytes)) = self.race(cid, order, session, &mut failures).await {
            if let Ok(mut s) = session.lock() {
                s.add_holder(peer);
            }
            return Ok(bytes);
        }
        if failures.is_empty() {
            return Err("no holder of it found in the DHT".into());
        }
        Err(failures.join("; "))
    }

    /// `order` with the session's slow holders last.
    fn slow_last(&self, session: &FetchSession, order: Vec<PeerId>) -> Vec<PeerId> {
        match session.lock() {
            Ok(s) => s.slow_last(order),
            Err(_) => order,
        }
    }

    /// Asks `peers` for `cid` as the pure [`Race`] says: the next one when a request fails, and
    /// also when the requests under way have taken longer than the session's hedge delay (a slow
    /// holder is outrun, not waited for). Returns the peer that delivered and the block; holders
    /// outrun are asked last for the rest of the session. Failures are added to `failures`.
    pub(crate) async fn race(
        &self,
        cid: ContentId,
        peers: Vec<PeerId>,
        session: &FetchSession,
        failures: &mut Vec<String>,
    ) -> Option<(PeerId, Vec<u8>)> {
        use futures::stream::FuturesUnordered;
        let hedge = session
            .lock()
            .map_or(warren_storage_mesh::fetch::HEDGE_FIRST, |s| s.hedge_after());
        let started = std::time::Instant::now();
        let t = || u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut race = Race::new(cid, peers, hedge);
        race.start(t());
        let mut running = FuturesUnordered::new();
        let mut delivered: HashMap<PeerId, Vec<u8>> = HashMap::new();
        loop {
            while let Some(event) = race.poll_event() {
                match event {
                    RaceEvent::Ask(peer) => {
                        running.push(async move { (peer, self.try_fetch(cid, peer).await) });
                    }
                    RaceEvent::Done(won) => {
                        for slow in &won.outrun {
                            info!(%cid, %slow, peer = %won.peer, "a slow holder was outrun: asked last from now on");
                        }
                        if let Ok(mut s) = session.lock() {
                            s.learn(&won);
                        }
                        return delivered.remove(&won.peer).map(|bytes| (won.peer, bytes));
                    }
                    RaceEvent::Failed(_) => {
                        failures.extend(race.failures().iter().map(|f| f.reason.clone()));
                        return None;
                    }
                }
            }
            let deadline = race.poll_timeout();
            tokio::select! {
                answer = running.next(), if !running.is_empty() => {
                    if let Some((peer, result)) = answer {
                        let result = result.map(|bytes| {
                            delivered.insert(peer, bytes);
                        });
                        if let Err(e) = &result {
                            debug!(%cid, %peer, "holder failed: {e}");
                        }
                        race.on_answer(&peer, result, t());
                    }
                }
                () = async {
                    match deadline {
                        Some(at) => tokio::time::sleep(Duration::from_millis(at.saturating_sub(t()))).await,
                        None => std::future::pending().await,
                    }
                } => {
                    debug!(%cid, "no answer after {hedge:?}: asking another holder too");
                    race.handle_timeout(t());
                }
            }
        }
    }
}
