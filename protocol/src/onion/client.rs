//! The circuit's client: builds the circuit hop by hop and wraps one layer per hop.

use std::collections::VecDeque;

use super::cell::{
    self, BODY_LEN, Cell, CreateOrigin, DestroyReason, MAX_DATA, RelayCommand, RelayPayload,
};
use super::crypto::{ClientHandshake, Layer, recognized, seal};
use super::stream::Streams;
use super::{MAX_HOPS, OnionError, protocol};

/// One hop of a planned path: its peer id (bytes) and its onion key from its signed record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HopTarget {
    /// The hop's peer id, as bytes (sent in `EXTEND` to the previous hop).
    pub peer: Vec<u8>,
    /// The hop's X25519 onion key.
    pub onion_key: [u8; 32],
}

/// What the client reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// The circuit now reaches `hops` hops.
    Extended {
        /// Hops built so far.
        hops: usize,
    },
    /// Every hop of the path is built; streams may be opened.
    Built,
    /// Bytes from the relay on a stream.
    StreamData {
        /// The stream.
        stream: u16,
        /// The bytes.
        data: Vec<u8>,
    },
    /// The relay ended a stream.
    StreamEnd {
        /// The stream.
        stream: u16,
        /// Its status and message.
        result: Result<String, String>,
    },
    /// The circuit is gone.
    Closed {
        /// Why.
        error: OnionError,
    },
}

struct ClientHop {
    forward: Layer,
    backward: Layer,
}

/// The client end of one circuit. See the module doc of [`super`] for the call order.
pub struct Client {
    path: Vec<HopTarget>,
    seeds: Vec<[u8; 32]>,
    hops: Vec<ClientHop>,
    pending: Option<ClientHandshake>,
    streams: Streams,
    next_stream: u16,
    transmit: VecDeque<Cell>,
    events: VecDeque<ClientEvent>,
    closed: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("hops", &self.hops.len())
            .field("path", &self.path.len())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts building a circuit along `path` (gate first). `seeds` holds one 32-byte random seed
    /// per hop for its ephemeral key; `now_secs` is the clock in seconds.
    pub fn new(
        path: Vec<HopTarget>,
        seeds: Vec<[u8; 32]>,
        now_secs: u64,
    ) -> Result<Self, OnionError> {
        if path.is_empty() || path.len() > MAX_HOPS || seeds.len() != path.len() {
            return Err(OnionError::Limit {
                detail: format!(
                    "a path of {} hops with {} seeds (1 to {MAX_HOPS} hops, one seed each)",
                    path.len(),
                    seeds.len()
                ),
            });
        }
        let (hs, msg) = ClientHandshake::start(0, &path[0].onion_key, seeds[0], now_secs)?;
        let mut c = Self {
            path,
            seeds,
            hops: Vec::new(),
            pending: Some(hs),
            streams: Streams::default(),
            next_stream: 1,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            closed: false,
        };
        c.transmit.push_back(Cell::Create {
            origin: CreateOrigin::Client,
            handshake: msg,
        });
        Ok(c)
    }

    /// Hops built so far.
    pub fn hops(&self) -> usize {
        self.hops.len()
    }

    /// Whether every hop is built.
    pub fn is_built(&self) -> bool {
        self.hops.len() == self.path.len() && !self.closed
    }

    /// Whether the circuit is closed.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The next cell for the gate.
    pub fn poll_transmit(&mut self) -> Option<Cell> {
        self.transmit.pop_front()
    }

    /// The next event. Taking a `StreamData` event counts its cell as delivered (and may queue a
    /// `SENDME`), so take events only as fast as the application consumes them.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        let ev = self.events.pop_front()?;
        if let ClientEvent::StreamData { stream, .. } = &ev {
            let stream = *stream;
            if !self.closed && self.streams.delivered(stream) {
                // A failure here closes the circuit; the event is still delivered.
                let _ = self.send_relay(
                    self.hops.len().saturating_sub(1),
                    RelayPayload {
                        command: RelayCommand::Sendme,
                        stream,
                        data: Vec::new(),
                    },
                );
            }
        }
        Some(ev)
    }

    /// Handles one cell from the gate. An error closes the circuit (a `DESTROY` is queued for the
    /// gate and a [`ClientEvent::Closed`] event reports it) and is returned too.
    pub fn handle_cell(&mut self, now_secs: u64, cell: Cell) -> Result<(), OnionError> {
        if self.closed {
            return Err(OnionError::Closed);
        }
        let r = self.handle_inner(now_secs, cell);
        if let Err(e) = &r {
            self.fail(e.clone(), !matches!(e, OnionError::Destroyed { .. }));
        }
        r
    }

    fn handle_inner(&mut self, now_secs: u64, cell: Cell) -> Result<(), OnionError> {
        match cell {
            Cell::Created { handshake } => {
                if !self.hops.is_empty() {
                    return Err(protocol("CREATED after the gate was built"));
                }
                self.hop_built(now_secs, &handshake)
            }
            Cell::Relay { mut body } => {
                for i in 0..self.hops.len() {
                    let c = self.hops[i].backward.pass(&mut body)?;
                    if recognized(&self.hops[i].backward.mac, c, &body) {
                        let p = RelayPayload::decode(&body)?;
                        return self.on_hop_payload(now_secs, i, p);
                    }
                }
                Err(OnionError::Integrity {
                    counter: self
                        .hops
                        .first()
                        .map_or(0, |h| h.backward.counter.saturating_sub(1)),
                    direction: "backward",
                })
            }
            Cell::Destroy { reason } => Err(OnionError::Destroyed { reason }),
            Cell::Create { .. } => Err(protocol("CREATE sent to a client")),
            Cell::RelayEarly { .. } => Err(protocol("RELAY_EARLY sent to a client")),
        }
    }

    fn hop_built(&mut self, now_secs: u64, msg2: &[u8]) -> Result<(), OnionError> {
        let hs = self
            .pending
            .take()
            .ok_or_else(|| protocol("a handshake answer nobody asked for"))?;
        let keys = hs.finish(msg2)?;
        self.hops.push(ClientHop {
            forward: Layer::new(keys.forward, keys.forward_mac),
            backward: Layer::new(keys.backward, keys.backward_mac),
        });
        let n = self.hops.len();
        self.events.push_back(ClientEvent::Extended { hops: n });
        if n == self.path.len() {
            self.events.push_back(ClientEvent::Built);
            return Ok(());
        }
        let (hs, msg) =
            ClientHandshake::start(n, &self.path[n].onion_key, self.seeds[n], now_secs)?;
        self.pending = Some(hs);
        let data = cell::encode_extend(&self.path[n].peer, &msg)?;
        let body = self.wrap(
            n - 1,
            RelayPayload {
                command: RelayCommand::Extend,
                stream: 0,
                data,
            },
        )?;
        // Every hop counts RELAY_EARLY cells and refuses an EXTEND in any other.
        self.transmit.push_back(Cell::RelayEarly { body });
        Ok(())
    }

    fn on_hop_payload(
        &mut self,
        now_secs: u64,
        hop: usize,
        p: RelayPayload,
    ) -> Result<(), OnionError> {
        let last = self.hops.len() - 1;
        match p.command {
            RelayCommand::Extended if hop == last && self.pending.is_some() => {
                self.hop_built(now_secs, &p.data)
            }
            RelayCommand::Data | RelayCommand::End | RelayCommand::Sendme
                if hop == last && self.is_built() =>
            {
                match p.command {
                    RelayCommand::Data => {
                        self.streams.received_data(p.stream)?;
                        self.events.push_back(ClientEvent::StreamData {
                            stream: p.stream,
                            data: p.data,
                        });
                    }
                    RelayCommand::End => {
                        let result = cell::decode_end(&p.data)?;
                        self.streams.end_remote(p.stream)?;
                        self.events.push_back(ClientEvent::StreamEnd {
                            stream: p.stream,
                            result,
                        });
                    }
                    _ => self.streams.received_sendme(p.stream)?,
                }
                Ok(())
            }
            c => Err(protocol(format!(
                "{c:?} from hop {hop} of {}",
                self.hops.len()
            ))),
        }
    }

    /// Wraps `p` for hop `hop` and queues it as a `RELAY` cell.
    fn send_relay(&mut self, hop: usize, p: RelayPayload) -> Result<(), OnionError> {
        let body = self.wrap(hop, p)?;
        self.transmit.push_back(Cell::Relay { body });
        Ok(())
    }

    /// Wraps `p` for hop `hop` (tag with its key, then one layer per hop from it back to the gate).
    fn wrap(&mut self, hop: usize, p: RelayPayload) -> Result<Box<[u8; BODY_LEN]>, OnionError> {
        let mut body: Box<[u8; BODY_LEN]> = p.encode()?;
        let target = &self.hops[hop].forward;
        seal(&target.mac, target.counter, &mut body);
        for i in (0..=hop).rev() {
            self.hops[i].forward.pass(&mut body)?;
        }
        Ok(body)
    }

    fn check_open(&self) -> Result<(), OnionError> {
        if self.closed {
            return Err(OnionError::Closed);
        }
        if !self.is_built() {
            return Err(protocol("the circuit is not built yet"));
        }
        Ok(())
    }

    /// Opens a stream at the relay with `request` (at most [`MAX_DATA`] bytes); returns its id.
    pub fn open_stream(&mut self, request: &[u8]) -> Result<u16, OnionError> {
        self.check_open()?;
        if request.len() > MAX_DATA {
            return Err(OnionError::Limit {
                detail: format!("a request of {} bytes, at most {MAX_DATA}", request.len()),
            });
        }
        let id = self.next_stream;
        self.streams.open(id)?;
        self.next_stream = self
            .next_stream
            .checked_add(1)
            .ok_or_else(|| OnionError::Limit {
                detail: "stream ids exhausted on this circuit".into(),
            })?;
        self.send_relay(
            self.hops.len() - 1,
            RelayPayload {
                command: RelayCommand::Begin,
                stream: id,
                data: request.to_vec(),
            },
        )?;
        Ok(id)
    }

    /// Bytes that [`Client::send`] accepts on `stream` now.
    pub fn writable(&self, stream: u16) -> usize {
        self.streams.send_window(stream) as usize * MAX_DATA
    }

    /// Sends as much of `data` on `stream` as its window allows; returns the bytes taken.
    pub fn send(&mut self, stream: u16, data: &[u8]) -> Result<usize, OnionError> {
        self.check_open()?;
        let mut taken = 0;
        for chunk in data.chunks(MAX_DATA) {
            if self.streams.send_window(stream) == 0 {
                break;
            }
            self.streams.spend(stream)?;
            self.send_relay(
                self.hops.len() - 1,
                RelayPayload {
                    command: RelayCommand::Data,
                    stream,
                    data: chunk.to_vec(),
                },
            )?;
            taken += chunk.len();
        }
        Ok(taken)
    }

    /// Ends the client's side of `stream`.
    pub fn finish(&mut self, stream: u16) -> Result<(), OnionError> {
        self.check_open()?;
        self.streams.end_local(stream)?;
        self.send_relay(
            self.hops.len() - 1,
            RelayPayload {
                command: RelayCommand::End,
                stream,
                data: cell::encode_end(&Ok(String::new())),
            },
        )
    }

    /// Whether `stream` is still open (either side).
    pub fn stream_open(&self, stream: u16) -> bool {
        self.streams.is_open(stream)
    }

    /// Tears the circuit down (a `DESTROY` is queued for the gate).
    pub fn close(&mut self) {
        if !self.closed {
            self.fail(
                OnionError::Destroyed {
                    reason: DestroyReason::Requested,
                },
                true,
            );
        }
    }

    fn fail(&mut self, error: OnionError, tell_gate: bool) {
        self.closed = true;
        self.pending = None;
        if tell_gate {
            self.transmit.push_back(Cell::Destroy {
                reason: DestroyReason::for_error(&error),
            });
        }
        self.events.push_back(ClientEvent::Closed { error });
    }
}
