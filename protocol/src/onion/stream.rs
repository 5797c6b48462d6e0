//! Streams inside a circuit and their flow control.
//!
//! Each direction of a stream has a window of [`STREAM_WINDOW`] `DATA` cells. A sender spends one
//! per `DATA` cell and stops at zero; the receiver sends a `SENDME` after every
//! [`SENDME_INCREMENT`] cells it delivered to its application, which gives the sender that many
//! back. A `DATA` cell beyond the window, or a `SENDME` that would raise a window above
//! [`STREAM_WINDOW`], is a protocol violation. So is a `SENDME` on a stream that is not open,
//! except the few a closed stream may still be owed (they cross its `END` in flight): without
//! that rule a `SENDME` on any stream id would keep a circuit busy, and alive, for ever.

use std::collections::BTreeMap;

use super::{MAX_STREAMS, OnionError, protocol};

/// `DATA` cells a sender may have outstanding on one stream (about 2 MB).
pub const STREAM_WINDOW: u32 = 2000;
/// `DATA` cells acknowledged by one `SENDME`.
pub const SENDME_INCREMENT: u32 = 200;

#[derive(Debug)]
struct State {
    send_window: u32,
    recv_window: u32,
    delivered: u32,
    local_ended: bool,
    remote_ended: bool,
}

/// The streams of one circuit end.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    map: BTreeMap<u16, State>,
    /// Closed streams → `SENDME`s the other end may still send on them (at most
    /// [`MAX_STREAMS`] entries, the oldest id dropped first).
    owed: BTreeMap<u16, u32>,
}

impl Streams {
    pub(crate) fn open(&mut self, id: u16) -> Result<(), OnionError> {
        if id == 0 || self.map.contains_key(&id) {
            return Err(protocol(format!("stream {id} opened twice or is reserved")));
        }
        if self.map.len() >= MAX_STREAMS {
            return Err(OnionError::Limit {
                detail: format!("{MAX_STREAMS} open streams"),
            });
        }
        self.map.insert(
            id,
            State {
                send_window: STREAM_WINDOW,
                recv_window: STREAM_WINDOW,
                delivered: 0,
                local_ended: false,
                remote_ended: false,
            },
        );
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    fn get(&mut self, id: u16) -> Result<&mut State, OnionError> {
        self.map
            .get_mut(&id)
            .ok_or_else(|| protocol(format!("stream {id} is not open")))
    }

    /// Cells that may be sent now on `id`.
    pub(crate) fn send_window(&self, id: u16) -> u32 {
        self.map
            .get(&id)
            .filter(|s| !s.local_ended)
            .map_or(0, |s| s.send_window)
    }

    pub(crate) fn spend(&mut self, id: u16) -> Result<(), OnionError> {
        let s = self.get(id)?;
        if s.local_ended {
            return Err(protocol(format!("stream {id} already ended here")));
        }
        s.send_window = s
            .send_window
            .checked_sub(1)
            .ok_or_else(|| protocol(format!("stream {id}: send window empty")))?;
        Ok(())
    }

    pub(crate) fn received_data(&mut self, id: u16) -> Result<(), OnionError> {
        let s = self.get(id)?;
        if s.remote_ended {
            return Err(protocol(format!("DATA on stream {id} after its END")));
        }
        s.recv_window = s
            .recv_window
            .checked_sub(1)
            .ok_or_else(|| protocol(format!("stream {id}: DATA beyond the window")))?;
        Ok(())
    }

    /// Counts one cell delivered to the application; true when a `SENDME` is due.
    pub(crate) fn delivered(&mut self, id: u16) -> bool {
        let Some(s) = self.map.get_mut(&id) else {
            return false;
        };
        s.delivered += 1;
        if s.delivered >= SENDME_INCREMENT && !s.remote_ended {
            s.delivered = 0;
            s.recv_window += SENDME_INCREMENT;
            return true;
        }
        false
    }

    pub(crate) fn received_sendme(&mut self, id: u16) -> Result<(), OnionError> {
        let Some(s) = self.map.get_mut(&id) else {
            // A SENDME may cross an END in flight, as many as the closed stream was owed.
            return match self.owed.get_mut(&id) {
                Some(n) => {
                    *n -= 1;
                    if *n == 0 {
                        self.owed.remove(&id);
                    }
                    Ok(())
                }
                None => Err(protocol(format!(
                    "SENDME on stream {id}, which is not open"
                ))),
            };
        };
        s.send_window += SENDME_INCREMENT;
        if s.send_window > STREAM_WINDOW {
            return Err(protocol(format!("stream {id}: SENDME beyond the window")));
        }
        Ok(())
    }

    pub(crate) fn end_local(&mut self, id: u16) -> Result<(), OnionError> {
        let s = self.get(id)?;
        if s.local_ended {
            return Err(protocol(format!("stream {id} ended twice")));
        }
        s.local_ended = true;
        self.gc(id);
        Ok(())
    }

    pub(crate) fn end_remote(&mut self, id: u16) -> Result<(), OnionError> {
        let s = self.get(id)?;
        if s.remote_ended {
            return Err(protocol(format!("END twice on stream {id}")));
        }
        s.remote_ended = true;
        self.gc(id);
        Ok(())
    }

    fn gc(&mut self, id: u16) {
        if self
            .map
            .get(&id)
            .is_some_and(|s| s.local_ended && s.remote_ended)
            && let Some(s) = self.map.remove(&id)
        {
            // The other end acknowledges every SENDME_INCREMENT cells it delivered.
            let owed = (STREAM_WINDOW - s.send_window.min(STREAM_WINDOW)) / SENDME_INCREMENT;
            if owed > 0 {
                self.owed.insert(id, owed);
                while self.owed.len() > MAX_STREAMS {
                    self.owed.pop_first();
                }
            }
        }
    }

    pub(crate) fn is_open(&self, id: u16) -> bool {
        self.map.contains_key(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sendme_on_a_stream_never_opened_is_a_violation() {
        let mut s = Streams::default();
        assert!(matches!(
            s.received_sendme(77),
            Err(OnionError::Protocol { .. })
        ));
        s.open(1).unwrap();
        assert!(s.received_sendme(2).is_err());
    }

    #[test]
    fn a_closed_stream_takes_only_the_sendmes_it_was_owed() {
        let mut s = Streams::default();
        s.open(1).unwrap();
        for _ in 0..(2 * SENDME_INCREMENT + 5) {
            s.spend(1).unwrap();
        }
        s.end_local(1).unwrap();
        s.end_remote(1).unwrap();
        assert!(!s.is_open(1));
        s.received_sendme(1).unwrap();
        s.received_sendme(1).unwrap();
        assert!(s.received_sendme(1).is_err());
        // A stream that sent too little to be owed any.
        s.open(2).unwrap();
        s.spend(2).unwrap();
        s.end_remote(2).unwrap();
        s.end_local(2).unwrap();
        assert!(s.received_sendme(2).is_err());
    }
}
