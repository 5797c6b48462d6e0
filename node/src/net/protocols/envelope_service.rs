//! What a node answers to an envelope: a pure function of the request and this node's state.
//!
//! | event type                 | reply                                                     |
//! |----------------------------|-----------------------------------------------------------|
//! | `node:ping:v1:requested`   | `node:ping:v1:completed`, the request's payload echoed     |
//! | `node:record:v1:requested` | `node:record:v1:completed`, this node's signed record      |
//! | anything else              | the same type with state `failed`, payload = the reason    |

use warren_protocol::{Envelope, State};

/// Answers one decoded envelope.
pub fn handle(request: &Envelope, own_record: Option<&[u8]>, now_ms: u64) -> Envelope {
    let e = &request.event;
    if e.state != State::Requested {
        let reason = format!("{e}: only requests are served here");
        return request.reply(State::Failed, now_ms, reason.into_bytes());
    }
    match (e.service.as_str(), e.action.as_str(), e.version) {
        ("node", "ping", 1) => request.reply(State::Completed, now_ms, request.payload.clone()),
        ("node", "record", 1) => match own_record {
            Some(r) => request.reply(State::Completed, now_ms, r.to_vec()),
            None => request.reply(State::Failed, now_ms, b"no record issued yet".to_vec()),
        },
        _ => {
            let reason = format!("no service for event type {e}");
            request.reply(State::Failed, now_ms, reason.into_bytes())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_protocol::EventType;

    fn req(event: &str, payload: &[u8]) -> Envelope {
        Envelope::new(
            [1; 16],
            event.parse::<EventType>().unwrap(),
            5,
            payload.to_vec(),
        )
    }

    #[test]
    fn ping_echoes_and_keeps_the_id() {
        let r = handle(&req("node:ping:v1:requested", b"hi"), None, 9);
        assert_eq!(r.event.to_string(), "node:ping:v1:completed");
        assert_eq!(r.payload, b"hi");
        assert_eq!(r.id, [1; 16]);
        assert_eq!(r.timestamp_ms, 9);
    }

    #[test]
    fn unknown_services_and_non_requests_fail_with_a_reason() {
        let r = handle(&req("storage:fetch_chunk:v1:requested", b""), None, 0);
        assert_eq!(r.event.to_string(), "storage:fetch_chunk:v1:failed");
        assert!(String::from_utf8(r.payload).unwrap().contains("no service"));
        let r = handle(&req("node:ping:v1:completed", b""), None, 0);
        assert_eq!(r.event.state, State::Failed);
    }

    #[test]
    fn record_request_returns_the_signed_record() {
        let r = handle(&req("node:record:v1:requested", b""), None, 0);
        assert_eq!(r.event.state, State::Failed);
        let r = handle(
            &req("node:record:v1:requested", b""),
            Some(b"signed bytes"),
            0,
        );
        assert_eq!(r.event.to_string(), "node:record:v1:completed");
        assert_eq!(r.payload, b"signed bytes");
    }
}
