//! One hop of a circuit: gate, middle or relay. The same machine serves all three; what it does
//! depends on the cells it gets, and it never learns more than its two neighbours.

use std::collections::VecDeque;

use super::cell::{
    self, BODY_LEN, Cell, CreateOrigin, DestroyReason, MAX_DATA, RelayCommand, RelayPayload,
};
use super::crypto::{self, Layer, recognized, seal};
use super::stream::Streams;
use super::{MAX_RELAY_EARLY, OnionError, ReplayCache, protocol};
use crate::OnionSecret;

/// A neighbour of a hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Towards the client.
    Prev,
    /// Away from the client.
    Next,
}

/// The hop's place on the circuit, as far as it can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HopPosition {
    /// Created by the client itself: the only hop that sees the user.
    Gate,
    /// Created by an extending hop, and (so far) only forwarding.
    Middle,
    /// Got a `BEGIN`: the circuit's last hop, whose runner acts outside.
    Relay,
}

impl std::fmt::Display for HopPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Gate => "gate",
            Self::Middle => "middle",
            Self::Relay => "relay",
        })
    }
}

/// What a hop asks its node to do, or reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HopEvent {
    /// Open a link to `peer` and send it `create`; feed the answer to [`Hop::handle_next`], or call
    /// [`Hop::extend_failed`].
    Extend {
        /// The next hop's peer id bytes.
        peer: Vec<u8>,
        /// The `CREATE` cell to send it.
        create: Cell,
    },
    /// A stream was opened at this hop (the relay) with a request for its runner.
    Begin {
        /// The stream.
        stream: u16,
        /// The request bytes.
        request: Vec<u8>,
    },
    /// Bytes from the client on a stream.
    StreamData {
        /// The stream.
        stream: u16,
        /// The bytes.
        data: Vec<u8>,
    },
    /// The client ended its side of a stream.
    StreamEnd {
        /// The stream.
        stream: u16,
    },
    /// The circuit is gone.
    Closed {
        /// Why.
        error: OnionError,
    },
}

/// What a hop has seen, for `warren circuits` and for tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HopView {
    /// Relay cells passed on towards the relay.
    pub forwarded_next: u64,
    /// Relay cells passed on towards the client.
    pub forwarded_prev: u64,
    /// Relay cells addressed to this hop.
    pub own: u64,
}

#[derive(Debug, PartialEq, Eq)]
enum Next {
    None,
    Extending,
    Open,
}

/// One hop of one circuit. See the module doc of [`super`] for the call order.
pub struct Hop {
    forward: Layer,
    backward: Layer,
    position: HopPosition,
    relay_allowed: bool,
    next: Next,
    streams: Streams,
    transmit: VecDeque<(Direction, Cell)>,
    events: VecDeque<HopEvent>,
    view: HopView,
    closed: bool,
    /// The previous hop's (or the client's) peer id bytes: never extended to.
    prev: Vec<u8>,
    /// `RELAY_EARLY` cells seen from the previous hop.
    early: u32,
}

impl std::fmt::Debug for Hop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hop")
            .field("position", &self.position)
            .field("next", &self.next)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Hop {
    /// Answers a `CREATE` cell from the neighbour `prev` (its peer id bytes) with this node's
    /// onion secret; the `CREATED` answer is queued for [`Direction::Prev`]. `relay_allowed`:
    /// whether this node offers the relay role (else a `BEGIN` is refused). On error the caller
    /// answers with a `DESTROY` of [`DestroyReason::for_error`].
    pub fn accept(
        now_secs: u64,
        secret: &OnionSecret,
        create: &Cell,
        ephemeral_seed: [u8; 32],
        replay: &mut ReplayCache,
        relay_allowed: bool,
        prev: &[u8],
    ) -> Result<Self, OnionError> {
        let Cell::Create { origin, handshake } = create else {
            return Err(protocol("a circuit must start with CREATE"));
        };
        let (keys, msg2) =
            crypto::respond(secret, handshake, ephemeral_seed, now_secs, replay, prev)?;
        let mut transmit = VecDeque::new();
        transmit.push_back((Direction::Prev, Cell::Created { handshake: msg2 }));
        Ok(Self {
            forward: Layer::new(keys.forward, keys.forward_mac),
            backward: Layer::new(keys.backward, keys.backward_mac),
            position: match origin {
                CreateOrigin::Client => HopPosition::Gate,
                CreateOrigin::Extend => HopPosition::Middle,
            },
            relay_allowed,
            next: Next::None,
            streams: Streams::default(),
            transmit,
            events: VecDeque::new(),
            view: HopView::default(),
            closed: false,
            prev: prev.to_vec(),
            early: 0,
        })
    }

    /// The hop's position as far as it knows.
    pub fn position(&self) -> HopPosition {
        self.position
    }

    /// Counts of what passed through.
    pub fn view(&self) -> HopView {
        self.view
    }

    /// Open streams (at the relay).
    pub fn streams(&self) -> usize {
        self.streams.len()
    }

    /// Whether the circuit is closed.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The next cell to send, and to which neighbour.
    pub fn poll_transmit(&mut self) -> Option<(Direction, Cell)> {
        self.transmit.pop_front()
    }

    /// The next event. Taking a `StreamData` event counts its cell as delivered (and may queue a
    /// `SENDME`).
    pub fn poll_event(&mut self) -> Option<HopEvent> {
        let ev = self.events.pop_front()?;
        if let HopEvent::StreamData { stream, .. } = &ev {
            let stream = *stream;
            if !self.closed && self.streams.delivered(stream) {
                let _ = self.originate(RelayPayload {
                    command: RelayCommand::Sendme,
                    stream,
                    data: Vec::new(),
                });
            }
        }
        Some(ev)
    }

    /// Handles a cell from the previous hop (or the client).
    pub fn handle_prev(&mut self, cell: Cell) -> Result<(), OnionError> {
        self.guard(|h| h.prev_inner(cell), Direction::Prev)
    }

    /// Handles a cell from the next hop.
    pub fn handle_next(&mut self, cell: Cell) -> Result<(), OnionError> {
        self.guard(|h| h.next_inner(cell), Direction::Next)
    }

    fn guard(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<(), OnionError>,
        from: Direction,
    ) -> Result<(), OnionError> {
        if self.closed {
            return Err(OnionError::Closed);
        }
        let r = f(self);
        if let Err(e) = &r {
            // A DESTROY goes on to the other side only; the side it came from already knows.
            let skip = matches!(e, OnionError::Destroyed { .. }).then_some(from);
            self.fail(e.clone(), skip);
        }
        r
    }

    fn prev_inner(&mut self, cell: Cell) -> Result<(), OnionError> {
        let (mut body, early) = match cell {
            Cell::Relay { body } => (body, false),
            Cell::RelayEarly { body } => {
                self.early += 1;
                if self.early > MAX_RELAY_EARLY {
                    return Err(OnionError::Limit {
                        detail: format!(
                            "more than {MAX_RELAY_EARLY} RELAY_EARLY cells (extensions) on one circuit"
                        ),
                    });
                }
                (body, true)
            }
            Cell::Destroy { reason } => return Err(OnionError::Destroyed { reason }),
            Cell::Create { .. } => return Err(protocol("CREATE on an open circuit")),
            Cell::Created { .. } => return Err(protocol("CREATED from the previous hop")),
        };
        let c = self.forward.pass(&mut body)?;
        if recognized(&self.forward.mac, c, &body) {
            self.view.own += 1;
            let p = RelayPayload::decode(&body)?;
            return self.own(p, early);
        }
        if self.next == Next::Open {
            self.view.forwarded_next += 1;
            let cell = if early {
                Cell::RelayEarly { body }
            } else {
                Cell::Relay { body }
            };
            self.transmit.push_back((Direction::Next, cell));
            return Ok(());
        }
        Err(OnionError::Integrity {
            counter: c,
            direction: "forward",
        })
    }

    fn next_inner(&mut self, cell: Cell) -> Result<(), OnionError> {
        match cell {
            Cell::Created { handshake } if self.next == Next::Extending => {
                self.next = Next::Open;
                self.originate(RelayPayload {
                    command: RelayCommand::Extended,
                    stream: 0,
                    data: handshake,
                })
            }
            Cell::Relay { mut body } if self.next == Next::Open => {
                self.backward.pass(&mut body)?;
                self.view.forwarded_prev += 1;
                self.transmit
                    .push_back((Direction::Prev, Cell::Relay { body }));
                Ok(())
            }
            Cell::Destroy { reason } => Err(OnionError::Destroyed { reason }),
            c => Err(protocol(format!(
                "{} from the next hop while {:?}",
                match c {
                    Cell::Create { .. } => "CREATE",
                    Cell::Created { .. } => "CREATED",
                    Cell::Relay { .. } => "RELAY",
                    Cell::RelayEarly { .. } => "RELAY_EARLY",
                    Cell::Destroy { .. } => "DESTROY",
                },
                self.next
            ))),
        }
    }

    fn own(&mut self, p: RelayPayload, early: bool) -> Result<(), OnionError> {
        match p.command {
            RelayCommand::Extend => {
                if self.next != Next::None || self.streams.len() > 0 {
                    return Err(protocol(
                        "EXTEND on a hop that already has a next hop or streams",
                    ));
                }
                if !early {
                    return Err(protocol("EXTEND outside a RELAY_EARLY cell"));
                }
                let (peer, handshake) = cell::decode_extend(&p.data)?;
                if peer == self.prev {
                    return Err(protocol("EXTEND back to the previous hop (a loop)"));
                }
                self.next = Next::Extending;
                self.events.push_back(HopEvent::Extend {
                    peer,
                    create: Cell::Create {
                        origin: CreateOrigin::Extend,
                        handshake,
                    },
                });
                Ok(())
            }
            RelayCommand::Begin => {
                if self.next != Next::None {
                    return Err(protocol("BEGIN at a hop with a next hop"));
                }
                if !self.relay_allowed {
                    return self.originate(RelayPayload {
                        command: RelayCommand::End,
                        stream: p.stream,
                        data: cell::encode_end(&Err(
                            "this node does not offer the relay role".into()
                        )),
                    });
                }
                self.streams.open(p.stream)?;
                self.position = HopPosition::Relay;
                self.events.push_back(HopEvent::Begin {
                    stream: p.stream,
                    request: p.data,
                });
                Ok(())
            }
            RelayCommand::Data => {
                self.streams.received_data(p.stream)?;
                self.events.push_back(HopEvent::StreamData {
                    stream: p.stream,
                    data: p.data,
                });
                Ok(())
            }
            RelayCommand::End => {
                let _status = cell::decode_end(&p.data)?;
                self.streams.end_remote(p.stream)?;
                self.events
                    .push_back(HopEvent::StreamEnd { stream: p.stream });
                Ok(())
            }
            RelayCommand::Sendme => self.streams.received_sendme(p.stream),
            RelayCommand::Extended => Err(protocol("EXTENDED sent towards the relay")),
        }
    }

    fn originate(&mut self, p: RelayPayload) -> Result<(), OnionError> {
        let mut body: Box<[u8; BODY_LEN]> = p.encode()?;
        seal(&self.backward.mac, self.backward.counter, &mut body);
        self.backward.pass(&mut body)?;
        self.transmit
            .push_back((Direction::Prev, Cell::Relay { body }));
        Ok(())
    }

    /// The next hop could not be reached: the circuit is torn down.
    pub fn extend_failed(&mut self) {
        if !self.closed {
            self.fail(
                OnionError::Destroyed {
                    reason: DestroyReason::Unreachable,
                },
                Some(Direction::Next),
            );
        }
    }

    /// Bytes that [`Hop::send`] accepts on `stream` now.
    pub fn writable(&self, stream: u16) -> usize {
        self.streams.send_window(stream) as usize * MAX_DATA
    }

    /// The runner's answer bytes on `stream`; returns how many the window took.
    pub fn send(&mut self, stream: u16, data: &[u8]) -> Result<usize, OnionError> {
        if self.closed {
            return Err(OnionError::Closed);
        }
        let mut taken = 0;
        for chunk in data.chunks(MAX_DATA) {
            if self.streams.send_window(stream) == 0 {
                break;
            }
            self.streams.spend(stream)?;
            self.originate(RelayPayload {
                command: RelayCommand::Data,
                stream,
                data: chunk.to_vec(),
            })?;
            taken += chunk.len();
        }
        Ok(taken)
    }

    /// Ends the runner's side of `stream` with its status.
    pub fn finish(
        &mut self,
        stream: u16,
        result: &Result<String, String>,
    ) -> Result<(), OnionError> {
        if self.closed {
            return Err(OnionError::Closed);
        }
        self.streams.end_local(stream)?;
        self.originate(RelayPayload {
            command: RelayCommand::End,
            stream,
            data: cell::encode_end(result),
        })
    }

    /// Tears the circuit down from this hop (both neighbours get a `DESTROY`).
    pub fn close(&mut self, reason: DestroyReason) {
        if !self.closed {
            self.fail(OnionError::Destroyed { reason }, None);
        }
    }

    fn fail(&mut self, error: OnionError, skip: Option<Direction>) {
        self.closed = true;
        let reason = DestroyReason::for_error(&error);
        if skip != Some(Direction::Prev) {
            self.transmit
                .push_back((Direction::Prev, Cell::Destroy { reason }));
        }
        if skip != Some(Direction::Next) && self.next != Next::None {
            self.transmit
                .push_back((Direction::Next, Cell::Destroy { reason }));
        }
        self.events.push_back(HopEvent::Closed { error });
    }
}
