//! The client's side of a circuit: drives the pure [`CircuitClient`] over the link to the gate,
//! uploads a request's body and hands the answer back to [`Onion::request`](super::Onion::request).

use super::*;

pub(super) struct ClientTask {
    pub(super) machine: CircuitClient,
    pub(super) gate_w: futures::io::WriteHalf<libp2p::Stream>,
    pub(super) cells: mpsc::Receiver<(Direction, Result<Cell, String>)>,
    pub(super) answers: mpsc::Sender<Answer>,
    pub(super) request: Option<Request>,
    pub(super) upload: Option<mpsc::Receiver<Vec<u8>>>,
    pub(super) up_buf: Vec<u8>,
    pub(super) stream: Option<u16>,
    pub(super) started: Instant,
    /// The ledger the gate's relay work is owed in (spec/credits.md, "Relay work").
    pub(super) credits: Option<crate::credits::Credits>,
    pub(super) path: Vec<PeerId>,
    pub(super) built: Option<Duration>,
    /// The client's side of the stream is ended.
    pub(super) finished: bool,
}

/// Upload bytes read ahead of the circuit window.
const UPLOAD_AHEAD: usize = 256 * 1024;

impl ClientTask {
    pub(super) async fn run(&mut self) -> String {
        let end = self.run_inner().await;
        if let Err(e) = &end {
            let _ = self.answers.send(Answer::End(Err(e.clone()))).await;
        }
        self.machine.close();
        let rest: Vec<Cell> = std::iter::from_fn(|| self.machine.poll_transmit()).collect();
        let _ = link::write_cells(&mut self.gate_w, &rest).await;
        match end {
            Ok(()) => "done".into(),
            Err(e) => e,
        }
    }

    async fn run_inner(&mut self) -> Result<(), String> {
        loop {
            // Upload what the window allows.
            if let Some(s) = self.stream
                && !self.up_buf.is_empty()
                && self.machine.writable(s) > 0
            {
                let n = self
                    .machine
                    .send(s, &self.up_buf)
                    .map_err(|e| e.to_string())?;
                self.up_buf.drain(..n);
            }
            let cells: Vec<Cell> = std::iter::from_fn(|| self.machine.poll_transmit()).collect();
            link::write_cells(&mut self.gate_w, &cells).await?;
            let mut data: Vec<u8> = Vec::new();
            while let Some(ev) = self.machine.poll_event() {
                if !matches!(ev, ClientEvent::StreamData { .. }) && !data.is_empty() {
                    self.answers
                        .send(Answer::Data(std::mem::take(&mut data)))
                        .await
                        .map_err(|_| "the caller went away".to_owned())?;
                }
                match ev {
                    ClientEvent::Extended { .. } => {}
                    ClientEvent::Built => {
                        let took = self.started.elapsed();
                        self.built = Some(took);
                        let _ = self
                            .answers
                            .send(Answer::Built {
                                took,
                                path: self.path.clone(),
                            })
                            .await;
                        let req = self.request.take().ok_or("built twice")?;
                        let bytes = req.encode().map_err(|e| e.to_string())?;
                        let s = self
                            .machine
                            .open_stream(&bytes)
                            .map_err(|e| e.to_string())?;
                        self.stream = Some(s);
                        if self.upload.is_none() {
                            self.finished = true;
                            self.machine.finish(s).map_err(|e| e.to_string())?;
                        }
                    }
                    ClientEvent::StreamData { data: d, .. } => data.extend_from_slice(&d),
                    ClientEvent::StreamEnd { result, .. } => {
                        let _ = self.answers.send(Answer::End(result)).await;
                        return Ok(());
                    }
                    ClientEvent::Closed { error } => return Err(error.to_string()),
                }
            }
            if !data.is_empty() {
                self.answers
                    .send(Answer::Data(data))
                    .await
                    .map_err(|_| "the caller went away".to_owned())?;
            }
            let cells: Vec<Cell> = std::iter::from_fn(|| self.machine.poll_transmit()).collect();
            link::write_cells(&mut self.gate_w, &cells).await?;
            let want_upload =
                self.stream.is_some() && self.upload.is_some() && self.up_buf.len() < UPLOAD_AHEAD;
            tokio::select! {
                cell = self.cells.recv() => {
                    let Some((_, cell)) = cell else { return Err("gate link gone".into()) };
                    let now = now_secs();
                    self.machine.handle_cell(now, cell?).map_err(|e| self.explain(e))?;
                    let mut cells = 1;
                    for _ in 0..BATCH {
                        let Ok((_, cell)) = self.cells.try_recv() else { break };
                        self.machine.handle_cell(now, cell?).map_err(|e| self.explain(e))?;
                        cells += 1;
                    }
                    // Cells the client's machine took (each checked end to end): owed to the
                    // gate, which was paid forward hop by hop for them.
                    if let (Some(credits), Some(gate)) = (&self.credits, self.path.first()) {
                        credits.relay_received(*gate, cells * onion::CELL_LEN as u64);
                    }
                }
                chunk = recv_opt(&mut self.upload), if want_upload => {
                    match chunk {
                        Some(c) => self.up_buf.extend_from_slice(&c),
                        None => self.upload = None,
                    }
                }
                _ = tokio::time::sleep(IDLE_TIMEOUT) => return Err("circuit idle for too long".into()),
            }
            // The upload is over and fully sent: end the client's side once.
            if let Some(s) = self.stream
                && self.upload.is_none()
                && self.up_buf.is_empty()
                && !self.finished
            {
                self.finished = true;
                self.machine.finish(s).map_err(|e| e.to_string())?;
            }
        }
    }
}

impl ClientTask {
    /// What the user is told of a circuit error: a hop's refusal (`DESTROY` busy or credit while
    /// the circuit is being built) names the hop that refused and why; anything else as it is.
    fn explain(&self, e: OnionError) -> String {
        let OnionError::Destroyed { reason } = &e else {
            return e.to_string();
        };
        if self.machine.is_built() {
            return e.to_string();
        }
        // The hop being built is the one that refused (a hop's refusal travels back as a DESTROY).
        let n = self.machine.hops() + 1;
        refusal(n, self.path.get(n - 1), *reason).unwrap_or_else(|| e.to_string())
    }
}

/// The sentence for a refusal by hop `n` (from 1) of the path: `None` for other reasons.
pub(super) fn refusal(n: usize, peer: Option<&PeerId>, reason: DestroyReason) -> Option<String> {
    let hop = match peer {
        Some(p) => format!("hop {n} ({p})"),
        None => format!("hop {n}"),
    };
    let whose = if n == 1 {
        "your standing with it".to_owned()
    } else {
        format!("the standing of hop {} with it", n - 1)
    };
    match reason {
        DestroyReason::Credit => Some(format!(
            "{hop} refused the circuit for credit: it is busy, and {whose} is past its threshold (serve it back, or try again when it is less busy: another path may be chosen)"
        )),
        DestroyReason::Busy => Some(format!(
            "{hop} refused the circuit: it is busy, every circuit slot it has is taken (try again later)"
        )),
        _ => None,
    }
}

async fn recv_opt(rx: &mut Option<mpsc::Receiver<Vec<u8>>>) -> Option<Vec<u8>> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_the_hop_and_whose_standing() {
        let p = PeerId::random();
        let gate = refusal(1, Some(&p), DestroyReason::Credit).unwrap_or_default();
        assert!(gate.starts_with(&format!("hop 1 ({p}) refused the circuit for credit")));
        assert!(gate.contains("your standing with it is past its threshold"));
        let middle = refusal(2, None, DestroyReason::Credit).unwrap_or_default();
        assert!(middle.contains("the standing of hop 1 with it"), "{middle}");
        let busy = refusal(3, None, DestroyReason::Busy).unwrap_or_default();
        assert!(
            busy.starts_with("hop 3 refused the circuit: it is busy"),
            "{busy}"
        );
        assert_eq!(refusal(1, None, DestroyReason::Integrity), None);
    }
}
