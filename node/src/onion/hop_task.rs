//! One circuit at a hop (gate, middle, relay): drives the pure [`Hop`] over the links to the
//! previous and next hops, runs the relay's requests, and counts the relay work both ways in the
//! credit ledger (spec/credits.md, "Relay work").

use super::*;

/// A runner's answer waiting for window: its bytes, and its end once the bytes are out.
pub(super) type Pending = (Vec<u8>, Option<Result<String, String>>);

pub(super) struct HopTask {
    /// This circuit's share of the relay's request and byte limits.
    pub(super) limits: runner::CircuitLimits,
    /// The previous hop, which pays (by its receipts) for the cells delivered back to it.
    pub(super) prev: PeerId,
    /// The next hop, once extended: paid for the cells it delivers back here.
    pub(super) next: Option<PeerId>,
    /// Bytes of cells received from the next hop not yet counted in the ledger.
    pub(super) relay_in: u64,
    pub(super) onion: Arc<Onion>,
    pub(super) id: u64,
    pub(super) hop: Hop,
    pub(super) prev_w: futures::io::WriteHalf<libp2p::Stream>,
    pub(super) next_w: Option<futures::io::WriteHalf<libp2p::Stream>>,
    pub(super) readers: Vec<tokio::task::JoinHandle<()>>,
    pub(super) cells_tx: mpsc::Sender<(Direction, Result<Cell, String>)>,
    pub(super) cells: mpsc::Receiver<(Direction, Result<Cell, String>)>,
    pub(super) out_tx: mpsc::Sender<Out>,
    pub(super) out_rx: mpsc::Receiver<Out>,
    pub(super) inputs: HashMap<u16, mpsc::Sender<Option<Vec<u8>>>>,
    /// Runner answers waiting for window: stream → (bytes, end once the bytes are out).
    pub(super) pending: BTreeMap<u16, Pending>,
    pub(super) pending_bytes: usize,
    /// Idle time and lifetime of the circuit.
    pub(super) timer: CircuitTimer,
}

impl HopTask {
    /// Runs the hop until the circuit closes; returns why.
    pub(super) async fn run(&mut self) -> String {
        loop {
            if let Err(e) = self.flush().await {
                self.hop.close(DestroyReason::Unreachable);
                let _ = self.flush().await;
                return e;
            }
            if self.hop.is_closed() {
                return "torn down".into();
            }
            let paused = self.pending_bytes > PENDING_LIMIT;
            let now = self.onion.clock_ms();
            if let Some(e) = self.timer.expired(now) {
                debug!(circuit = self.id, "tearing down: {e}");
                self.hop.close(DestroyReason::Limit);
                continue;
            }
            let wait = Duration::from_millis(self.timer.deadline().saturating_sub(now));
            tokio::select! {
                cell = self.cells.recv() => {
                    let Some(item) = cell else { return "links gone".into() };
                    self.timer.touch(self.onion.clock_ms());
                    self.on_cell(item);
                    // Take what else is queued, so the cells go out in one write per link.
                    for _ in 0..BATCH {
                        match self.cells.try_recv() {
                            Ok(item) => self.on_cell(item),
                            Err(_) => break,
                        }
                    }
                    self.count_relay_in();
                }
                out = self.out_rx.recv(), if !paused => {
                    if let Some(out) = out {
                        self.timer.touch(self.onion.clock_ms());
                        self.on_out(out);
                        while self.pending_bytes <= PENDING_LIMIT {
                            match self.out_rx.try_recv() {
                                Ok(out) => self.on_out(out),
                                Err(_) => break,
                            }
                        }
                    }
                }
                _ = tokio::time::sleep(wait) => {}
            }
            self.push_answers();
        }
    }

    /// Tells the ledger of the cells the next hop delivered since the last call (relay work it
    /// earns, spec/credits.md "Relay work").
    fn count_relay_in(&mut self) {
        let n = std::mem::take(&mut self.relay_in);
        if n > 0
            && let (Some(next), Some(credits)) = (self.next, self.onion.relay_credits())
        {
            credits.relay_received(next, n);
        }
    }

    fn on_cell(&mut self, (dir, cell): (Direction, Result<Cell, String>)) {
        let r = match cell {
            Ok(c) => match dir {
                Direction::Prev => self.hop.handle_prev(c),
                Direction::Next => {
                    self.relay_in += onion::CELL_LEN as u64;
                    self.hop.handle_next(c)
                }
            },
            Err(e) => {
                debug!("{dir:?} link: {e}");
                self.hop.close(DestroyReason::Requested);
                Ok(())
            }
        };
        if let Err(e) = r {
            info!(circuit = self.id, "tearing down: {e}");
        }
    }

    fn on_out(&mut self, out: Out) {
        match out {
            Out::Data(s, d) => {
                self.pending_bytes += d.len();
                self.pending.entry(s).or_default().0.extend_from_slice(&d);
            }
            Out::End(s, r) => {
                self.pending.entry(s).or_default().1 = Some(r);
            }
        }
    }

    /// Moves buffered runner answers into the circuit as far as the stream windows allow.
    fn push_answers(&mut self) {
        let mut done = Vec::new();
        for (s, (buf, end)) in self.pending.iter_mut() {
            if !buf.is_empty() {
                match self.hop.send(*s, buf) {
                    Ok(n) => {
                        buf.drain(..n);
                        self.pending_bytes -= n;
                    }
                    Err(_) => return,
                }
                if buf.capacity() > 2 * PENDING_LIMIT {
                    buf.shrink_to_fit();
                }
            }
            if buf.is_empty()
                && let Some(r) = end.take()
            {
                let _ = self.hop.finish(*s, &r);
                done.push(*s);
            }
        }
        for s in done {
            self.pending.remove(&s);
        }
    }

    /// Sends what the hop queued and acts on its events.
    async fn flush(&mut self) -> Result<(), String> {
        loop {
            let mut prev = Vec::new();
            let mut next = Vec::new();
            while let Some((dir, c)) = self.hop.poll_transmit() {
                match dir {
                    Direction::Prev => prev.push(c),
                    Direction::Next => next.push(c),
                }
            }
            link::write_cells(&mut self.prev_w, &prev).await?;
            if !prev.is_empty()
                && let Some(credits) = self.onion.relay_credits()
            {
                credits.relay_served(self.prev, (prev.len() * onion::CELL_LEN) as u64);
            }
            if let Some(w) = self.next_w.as_mut() {
                link::write_cells(w, &next).await?;
            }
            let Some(ev) = self.hop.poll_event() else {
                return Ok(());
            };
            match ev {
                HopEvent::Extend { peer, create } => self.extend(&peer, create).await,
                HopEvent::Begin { stream, request } => {
                    let (in_tx, in_rx) = mpsc::channel(16);
                    // Decoded by the runner's sandboxed worker, not here.
                    let started = self.onion.runner.start(
                        stream,
                        request,
                        in_rx,
                        self.out_tx.clone(),
                        &self.limits,
                    );
                    match started {
                        Ok(()) => {
                            self.inputs.insert(stream, in_tx);
                            self.onion.update(self.id, |v| v.role = "relay".into());
                        }
                        Err(e) => {
                            self.pending.entry(stream).or_default().1 = Some(Err(e));
                            self.push_answers();
                        }
                    }
                }
                HopEvent::StreamData { stream, data } => {
                    if let Some(tx) = self.inputs.get(&stream)
                        && tx.send(Some(data)).await.is_err()
                    {
                        self.inputs.remove(&stream);
                    }
                }
                HopEvent::StreamEnd { stream } => {
                    if let Some(tx) = self.inputs.remove(&stream) {
                        let _ = tx.send(None).await;
                    }
                }
                HopEvent::Closed { error } => debug!(circuit = self.id, "closed: {error}"),
            }
        }
    }

    async fn extend(&mut self, peer: &[u8], create: Cell) {
        let Ok(peer) = PeerId::from_bytes(peer) else {
            return self.hop.extend_failed();
        };
        let mut control = self.onion.network.stream_control();
        let opened =
            tokio::time::timeout(HANDSHAKE_TIMEOUT, control.open_stream(peer, PROTOCOL)).await;
        let stream = match opened {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                debug!(%peer, "cannot extend: {e}");
                return self.hop.extend_failed();
            }
            Err(_) => {
                debug!(%peer, "cannot extend: timed out");
                return self.hop.extend_failed();
            }
        };
        let (r, mut w) = stream.split();
        if link::write_cells(&mut w, &[create]).await.is_err() {
            return self.hop.extend_failed();
        }
        self.readers.push(tokio::spawn(link::read_cells(
            r,
            Direction::Next,
            self.cells_tx.clone(),
        )));
        self.next_w = Some(w);
        self.next = Some(peer);
        self.onion
            .update(self.id, |v| v.next = Some(peer.to_string()));
    }
}
