//! The INOS event envelope (spec: `spec/envelope.md`): every application message travels in one.
//!
//! An envelope is a CBOR map `{id, event, timestamp_ms, metadata, payload}` of at most
//! [`MAX_ENVELOPE_SIZE`] bytes. The payload is opaque here; its schema is named by the event type's
//! service, action and version. Replies keep the request's id and event type and change the state.
//!
//! Non-goals: the envelope is not signed or encrypted (the transport authenticates the peer), and it
//! does not carry bulk data (that moves on its own streams).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Error, EventType, PeerId, State, codec, error::Subject, wire};

/// Largest encoded envelope, checked before decoding and after encoding.
pub const MAX_ENVELOPE_SIZE: usize = 1024 * 1024;
/// Most entries in [`Metadata::trace`].
pub const MAX_TRACE_ENTRIES: usize = 16;
/// Longest trace key, in bytes.
pub const MAX_TRACE_KEY_LEN: usize = 64;
/// Longest trace value, in bytes.
pub const MAX_TRACE_VALUE_LEN: usize = 256;
/// Longest [`Metadata::device`], in bytes.
pub const MAX_DEVICE_LEN: usize = 128;

const WHAT: &str = "envelope";

/// Context that travels with an event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// The peer the event originates from, where it is not the sender itself.
    #[serde(with = "wire::opt_peer_id")]
    pub peer: Option<PeerId>,
    /// A device name within that peer (at most [`MAX_DEVICE_LEN`] bytes).
    pub device: Option<String>,
    /// Trace context, e.g. W3C `traceparent` (at most [`MAX_TRACE_ENTRIES`] entries; keys at most
    /// [`MAX_TRACE_KEY_LEN`] bytes, values at most [`MAX_TRACE_VALUE_LEN`]).
    pub trace: BTreeMap<String, String>,
}

/// One application message. Encoded as a CBOR map with the fields in this order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Random id chosen by the requester (the caller supplies the randomness); replies echo it.
    #[serde(with = "serde_bytes")]
    pub id: [u8; 16],
    /// What the message is.
    pub event: EventType,
    /// Sender's clock, Unix milliseconds. Informational: nothing here checks it.
    pub timestamp_ms: u64,
    /// Context.
    pub metadata: Metadata,
    /// The event's payload, opaque to the envelope.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

impl Envelope {
    /// An envelope with empty metadata.
    pub fn new(id: [u8; 16], event: EventType, timestamp_ms: u64, payload: Vec<u8>) -> Self {
        Envelope {
            id,
            event,
            timestamp_ms,
            metadata: Metadata::default(),
            payload,
        }
    }

    /// The reply to this envelope: same id, service, action and version, in state `state`.
    ///
    /// The request's trace context is carried over so that the two ends' spans link up; `peer` and
    /// `device` describe a sender, so they start empty.
    pub fn reply(&self, state: State, timestamp_ms: u64, payload: Vec<u8>) -> Envelope {
        Envelope {
            id: self.id,
            event: self.event.with_state(state),
            timestamp_ms,
            metadata: Metadata {
                peer: None,
                device: None,
                trace: self.metadata.trace.clone(),
            },
            payload,
        }
    }

    /// Checks the event type grammar and the metadata limits (what [`Envelope::decode`] enforces).
    pub fn validate(&self) -> Result<(), Error> {
        self.event.validate()?;
        let subject = Subject::Envelope(self.id);
        let m = &self.metadata;
        if let Some(device) = &m.device
            && device.len() > MAX_DEVICE_LEN
        {
            return Err(Error::TooLong {
                subject,
                field: "metadata.device".into(),
                len: device.len(),
                max: MAX_DEVICE_LEN,
            });
        }
        if m.trace.len() > MAX_TRACE_ENTRIES {
            return Err(Error::TooMany {
                subject,
                field: "metadata.trace",
                count: m.trace.len(),
                max: MAX_TRACE_ENTRIES,
            });
        }
        for (key, value) in &m.trace {
            let shown: String = key.chars().take(MAX_TRACE_KEY_LEN).collect();
            if key.len() > MAX_TRACE_KEY_LEN {
                let field = format!("metadata.trace key {shown:?}…");
                return Err(Error::TooLong {
                    subject,
                    field,
                    len: key.len(),
                    max: MAX_TRACE_KEY_LEN,
                });
            }
            if value.len() > MAX_TRACE_VALUE_LEN {
                let field = format!("metadata.trace[{shown:?}]");
                return Err(Error::TooLong {
                    subject,
                    field,
                    len: value.len(),
                    max: MAX_TRACE_VALUE_LEN,
                });
            }
        }
        Ok(())
    }

    /// Encodes the envelope; refuses one that breaks [`Envelope::validate`] or would exceed
    /// [`MAX_ENVELOPE_SIZE`] (a payload over the limit is refused before anything is encoded).
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        if self.payload.len() > MAX_ENVELOPE_SIZE {
            return Err(Error::TooLarge {
                what: "envelope payload",
                len: self.payload.len(),
                limit: MAX_ENVELOPE_SIZE,
            });
        }
        self.validate()?;
        let bytes = codec::encode(self, WHAT)?;
        if bytes.len() > MAX_ENVELOPE_SIZE {
            return Err(Error::TooLarge {
                what: WHAT,
                len: bytes.len(),
                limit: MAX_ENVELOPE_SIZE,
            });
        }
        Ok(bytes)
    }

    /// Decodes an envelope: refuses input over [`MAX_ENVELOPE_SIZE`] before reading it, then
    /// anything but the canonical encoding (trailing bytes, unknown fields, …), then values that
    /// break [`Envelope::validate`].
    pub fn decode(bytes: &[u8]) -> Result<Envelope, Error> {
        let envelope: Envelope = codec::decode(bytes, MAX_ENVELOPE_SIZE, WHAT)?;
        envelope.validate()?;
        Ok(envelope)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::identity::keypair_from_secret;

    fn envelope() -> Envelope {
        let event = "storage:fetch_chunk:v1:requested".parse().unwrap();
        let mut e = Envelope::new([0x11; 16], event, 1_700_000_000_000, b"chunk-id".to_vec());
        e.metadata.peer = Some(keypair_from_secret([1; 32]).public().to_peer_id());
        e.metadata.device = Some("gpu0".into());
        e.metadata.trace.insert(
            "traceparent".into(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
        );
        e
    }

    #[test]
    fn round_trip() {
        let e = envelope();
        let bytes = e.encode().unwrap();
        assert_eq!(Envelope::decode(&bytes).unwrap(), e);
        let bare = Envelope::new([0; 16], e.event.clone(), 0, vec![]);
        assert_eq!(Envelope::decode(&bare.encode().unwrap()).unwrap(), bare);
    }

    #[test]
    fn reply_keeps_id_and_event() {
        let e = envelope();
        let r = e.reply(State::Completed, 5, b"ok".to_vec());
        assert_eq!(r.id, e.id);
        assert_eq!(r.event.to_string(), "storage:fetch_chunk:v1:completed");
        assert_eq!((r.timestamp_ms, r.payload.as_slice()), (5, &b"ok"[..]));
        assert_eq!(r.metadata.trace, e.metadata.trace);
        assert_eq!((r.metadata.peer, r.metadata.device), (None, None));
    }

    #[test]
    fn ten_mib_payload_refused_on_encode() {
        let mut e = envelope();
        e.payload = vec![0; 10 << 20];
        let err = e.encode().unwrap_err();
        assert_eq!(
            err,
            Error::TooLarge {
                what: "envelope payload",
                len: 10 << 20,
                limit: MAX_ENVELOPE_SIZE
            }
        );
        // A payload just under the limit still does not fit once wrapped.
        e.payload = vec![0; MAX_ENVELOPE_SIZE];
        assert!(matches!(
            e.encode().unwrap_err(),
            Error::TooLarge {
                what: "envelope",
                ..
            }
        ));
    }

    #[test]
    fn largest_payload_that_fits() {
        let mut e = Envelope::new([0; 16], "a:b:v1:requested".parse().unwrap(), 0, vec![]);
        let overhead = e.encode().unwrap().len() + 4; // a payload ≥ 65536 bytes has a 5-byte header, not 1
        e.payload = vec![7; MAX_ENVELOPE_SIZE - overhead];
        let bytes = e.encode().unwrap();
        assert_eq!(bytes.len(), MAX_ENVELOPE_SIZE);
        assert_eq!(Envelope::decode(&bytes).unwrap(), e);
    }

    #[test]
    fn ten_mib_input_refused_before_parsing() {
        // Not CBOR at all: only the size check can be what refuses it.
        let err = Envelope::decode(&vec![0xff; 10 << 20]).unwrap_err();
        assert_eq!(
            err,
            Error::TooLarge {
                what: "envelope",
                len: 10 << 20,
                limit: MAX_ENVELOPE_SIZE
            }
        );
    }

    #[test]
    fn truncated_and_trailing() {
        let bytes = envelope().encode().unwrap();
        for n in 0..bytes.len() {
            assert!(
                matches!(
                    Envelope::decode(&bytes[..n]).unwrap_err(),
                    Error::Malformed { .. }
                ),
                "{n}"
            );
        }
        let mut long = bytes.clone();
        long.extend_from_slice(&bytes);
        assert!(matches!(
            Envelope::decode(&long).unwrap_err(),
            Error::TrailingBytes { .. }
        ));
    }

    #[test]
    fn bad_event_type_on_the_wire() {
        #[derive(Serialize)]
        struct Raw<'a> {
            #[serde(with = "serde_bytes")]
            id: [u8; 16],
            event: &'a str,
            timestamp_ms: u64,
            metadata: Metadata,
            #[serde(with = "serde_bytes")]
            payload: &'a [u8],
        }
        let raw = |event| {
            codec::encode(
                &Raw {
                    id: [0; 16],
                    event,
                    timestamp_ms: 0,
                    metadata: Metadata::default(),
                    payload: b"",
                },
                "raw",
            )
            .unwrap()
        };
        Envelope::decode(&raw("a:b:v1:requested")).unwrap();
        let err = Envelope::decode(&raw("a:b:v1:done")).unwrap_err();
        assert!(
            matches!(&err, Error::Malformed { detail, .. } if detail.contains("field `event`") && detail.contains("a:b:v1:done")),
            "{err}"
        );
    }

    #[test]
    fn unknown_fields_rejected() {
        #[derive(Serialize)]
        struct WithExtra {
            #[serde(flatten)]
            e: Envelope,
            extra: u8,
        }
        // `flatten` encodes as an indefinite map; rewrite to a definite one so only the field differs.
        let mut bytes = codec::encode(
            &WithExtra {
                e: envelope(),
                extra: 1,
            },
            "x",
        )
        .unwrap();
        assert_eq!((bytes[0], bytes[bytes.len() - 1]), (0xbf, 0xff));
        bytes[0] = 0xa6;
        bytes.pop();
        let err = Envelope::decode(&bytes).unwrap_err();
        assert!(
            matches!(&err, Error::Malformed { detail, .. } if detail.contains("unknown field")),
            "{err}"
        );
    }

    #[test]
    fn metadata_limits() {
        type Case = (&'static str, fn(&mut Metadata));
        let cases: &[Case] = &[
            ("metadata.device", |m| {
                m.device = Some("d".repeat(MAX_DEVICE_LEN + 1))
            }),
            ("metadata.trace", |m| {
                m.trace = (0..=MAX_TRACE_ENTRIES)
                    .map(|i| (i.to_string(), String::new()))
                    .collect()
            }),
            ("metadata.trace key", |m| {
                m.trace
                    .insert("k".repeat(MAX_TRACE_KEY_LEN + 1), String::new());
            }),
            ("metadata.trace[\"traceparent\"]", |m| {
                m.trace
                    .insert("traceparent".into(), "v".repeat(MAX_TRACE_VALUE_LEN + 1));
            }),
        ];
        for (field, mutate) in cases {
            let mut e = envelope();
            mutate(&mut e.metadata);
            let err = e.encode().unwrap_err();
            let got = match &err {
                Error::TooLong { field, .. } => field.as_str(),
                Error::TooMany { field, .. } => field,
                other => panic!("{other}"),
            };
            assert!(got.starts_with(field), "{got} vs {field}");
            assert!(err.to_string().contains(&hex::encode(e.id)), "{err}");
        }
        // at the limits
        let mut e = envelope();
        e.metadata.device = Some("d".repeat(MAX_DEVICE_LEN));
        e.metadata.trace = (0..MAX_TRACE_ENTRIES)
            .map(|i| (format!("{i:0>64}"), "v".repeat(MAX_TRACE_VALUE_LEN)))
            .collect();
        Envelope::decode(&e.encode().unwrap()).unwrap();
    }

    #[test]
    fn encode_refuses_invalid_event_fields() {
        let mut e = envelope();
        e.event.service = "Not Valid".into();
        assert!(matches!(
            e.encode().unwrap_err(),
            Error::InvalidEventType { .. }
        ));
        e.event.service = "ok".into();
        e.event.version = 0;
        assert!(matches!(
            e.encode().unwrap_err(),
            Error::InvalidEventType { .. }
        ));
    }

    pub(crate) fn arb_envelope() -> impl Strategy<Value = Envelope> {
        let event = (
            "[a-z][a-z0-9_]{0,31}",
            "[a-z][a-z0-9_]{0,31}",
            1u16..,
            proptest::sample::select(State::ALL.to_vec()),
        )
            .prop_map(|(s, a, v, st)| EventType {
                service: s,
                action: a,
                version: v,
                state: st,
            });
        let metadata = (
            proptest::option::of(
                any::<[u8; 32]>().prop_map(|s| keypair_from_secret(s).public().to_peer_id()),
            ),
            proptest::option::of("\\PC{0,40}"),
            proptest::collection::btree_map("\\PC{0,16}", "\\PC{0,64}", 0..=MAX_TRACE_ENTRIES),
        )
            .prop_map(|(peer, device, trace)| Metadata {
                peer,
                device,
                trace,
            });
        (
            any::<[u8; 16]>(),
            event,
            any::<u64>(),
            metadata,
            proptest::collection::vec(any::<u8>(), 0..512),
        )
            .prop_map(|(id, event, timestamp_ms, metadata, payload)| Envelope {
                id,
                event,
                timestamp_ms,
                metadata,
                payload,
            })
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(e in arb_envelope()) {
            let bytes = e.encode().unwrap();
            prop_assert_eq!(Envelope::decode(&bytes).unwrap(), e);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            if let Ok(e) = Envelope::decode(&bytes) {
                // Whatever is accepted re-encodes to the same bytes.
                prop_assert_eq!(e.encode().unwrap(), bytes);
            }
        }

        #[test]
        fn mutated_envelopes_never_panic(e in arb_envelope(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut bytes = e.encode().unwrap();
            let i = pos.index(bytes.len());
            bytes[i] = byte;
            if let Ok(back) = Envelope::decode(&bytes) {
                prop_assert_eq!(back.encode().unwrap(), bytes);
            }
        }
    }
}
