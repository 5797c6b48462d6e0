//! Event types of the envelope (spec: `spec/envelope.md`): `{service}:{action}:v{version}:{state}`,
//! e.g. `storage:fetch_chunk:v1:requested`.
//!
//! Grammar: `service` and `action` match `[a-z][a-z0-9_]{0,31}`; `version` is decimal 1 to 65535
//! without leading zeros; `state` is one of `requested`, `processing`, `completed`, `failed`;
//! exactly four parts. On the wire an event type is that text.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// Longest `service` or `action`, in bytes.
pub const MAX_EVENT_NAME_LEN: usize = 32;
/// Longest event type text: two 32-byte names, `v65535`, `processing` and three colons.
pub const MAX_EVENT_TYPE_LEN: usize = 2 * MAX_EVENT_NAME_LEN + 6 + 10 + 3;

/// Where an event is in its life: a request, progress, and its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Asked for.
    Requested,
    /// Being worked on.
    Processing,
    /// Done; the payload holds the result.
    Completed,
    /// Given up; the payload says why.
    Failed,
}

impl State {
    /// Every state, in lifecycle order.
    pub const ALL: [State; 4] = [
        State::Requested,
        State::Processing,
        State::Completed,
        State::Failed,
    ];

    /// The state as written in an event type.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Requested => "requested",
            State::Processing => "processing",
            State::Completed => "completed",
            State::Failed => "failed",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        State::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                invalid(
                    s,
                    "state must be requested, processing, completed or failed",
                )
            })
    }
}

/// What an envelope is about: `{service}:{action}:v{version}:{state}`.
///
/// The fields are public for matching; [`EventType::new`] and [`str::parse`] check the grammar,
/// and so does encoding an envelope.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EventType {
    /// The service, e.g. `storage`.
    pub service: String,
    /// The action within the service, e.g. `fetch_chunk`.
    pub action: String,
    /// The version of this action's payload schema, 1 or more.
    pub version: u16,
    /// The state.
    pub state: State,
}

impl EventType {
    /// An event type, if the parts follow the grammar.
    pub fn new(service: &str, action: &str, version: u16, state: State) -> Result<Self, Error> {
        let event = EventType {
            service: service.to_owned(),
            action: action.to_owned(),
            version,
            state,
        };
        event.validate()?;
        Ok(event)
    }

    /// The same service, action and version in state `state`.
    pub fn with_state(&self, state: State) -> Self {
        EventType {
            state,
            ..self.clone()
        }
    }

    /// Checks the grammar (for a value built from its public fields).
    pub fn validate(&self) -> Result<(), Error> {
        let text = self.to_string();
        check_name(&text, "service", &self.service)?;
        check_name(&text, "action", &self.action)?;
        if self.version == 0 {
            return Err(invalid(&text, "version must be 1 to 65535"));
        }
        Ok(())
    }
}

/// The error for event type text `input`, cut to a readable length.
fn invalid(input: &str, reason: &'static str) -> Error {
    Error::InvalidEventType {
        input: input.chars().take(80).collect(),
        reason,
    }
}

fn check_name(input: &str, part: &'static str, name: &str) -> Result<(), Error> {
    let reason = match part {
        "service" => "service must match [a-z][a-z0-9_]{0,31}",
        _ => "action must match [a-z][a-z0-9_]{0,31}",
    };
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_lowercase());
    let rest_ok = bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if first_ok && rest_ok && name.len() <= MAX_EVENT_NAME_LEN {
        Ok(())
    } else {
        Err(invalid(input, reason))
    }
}

fn parse_version(input: &str, text: &str) -> Result<u16, Error> {
    const REASON: &str =
        "version must be `v` and a decimal number 1 to 65535 without leading zeros";
    let digits = text
        .strip_prefix('v')
        .ok_or_else(|| invalid(input, REASON))?;
    if digits.is_empty()
        || digits.len() > 5
        || digits.starts_with('0')
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(invalid(input, REASON));
    }
    digits.parse::<u16>().map_err(|_| invalid(input, REASON))
}

impl FromStr for EventType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        if s.len() > MAX_EVENT_TYPE_LEN {
            return Err(invalid(s, "longer than any valid event type"));
        }
        let parts: Vec<&str> = s.split(':').collect();
        let [service, action, version, state] = parts[..] else {
            return Err(invalid(
                s,
                "expected 4 parts: {service}:{action}:v{version}:{state}",
            ));
        };
        check_name(s, "service", service)?;
        check_name(s, "action", action)?;
        let version = parse_version(s, version)?;
        let state = state.parse().map_err(|_| {
            invalid(
                s,
                "state must be requested, processing, completed or failed",
            )
        })?;
        Ok(EventType {
            service: service.to_owned(),
            action: action.to_owned(),
            version,
            state,
        })
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:v{}:{}",
            self.service, self.action, self.version, self.state
        )
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map_err(|e| serde::de::Error::custom(format_args!("field `event`: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn parses_and_prints() {
        let e: EventType = "storage:fetch_chunk:v1:requested".parse().unwrap();
        assert_eq!(
            e,
            EventType::new("storage", "fetch_chunk", 1, State::Requested).unwrap()
        );
        assert_eq!(e.to_string(), "storage:fetch_chunk:v1:requested");
        let e: EventType = "a:b9_:v65535:failed".parse().unwrap();
        assert_eq!((e.version, e.state), (65535, State::Failed));
        assert_eq!(
            e.with_state(State::Completed).to_string(),
            "a:b9_:v65535:completed"
        );
    }

    #[test]
    fn grammar_failures() {
        let n32 = "a".repeat(32);
        let n33 = "a".repeat(33);
        let long_ok = format!("{n32}:{n32}:v65535:processing");
        assert_eq!(long_ok.len(), MAX_EVENT_TYPE_LEN);
        long_ok.parse::<EventType>().unwrap();

        let cases: &[(&str, &str)] = &[
            ("storage:fetch", "expected 4 parts"),
            ("", "expected 4 parts"),
            ("a:b:v1:requested:x", "expected 4 parts"),
            ("Storage:x:v1:requested", "service must"),
            ("1abc:x:v1:requested", "service must"),
            ("_a:x:v1:requested", "service must"),
            (":x:v1:requested", "service must"),
            ("a:B:v1:requested", "action must"),
            ("a:b-c:v1:requested", "action must"),
            ("a::v1:requested", "action must"),
            ("a:é:v1:requested", "action must"),
            (&format!("{n33}:b:v1:requested"), "service must"),
            (&format!("a:{n33}:v1:requested"), "action must"),
            ("a:b:v0:requested", "version must"),
            ("a:b:v01:requested", "version must"),
            ("a:b:1:requested", "version must"),
            ("a:b:v:requested", "version must"),
            ("a:b:V1:requested", "version must"),
            ("a:b:v+1:requested", "version must"),
            ("a:b:v65536:requested", "version must"),
            ("a:b:v100000:requested", "version must"),
            ("a:b:v1:done", "state must"),
            ("a:b:v1:Requested", "state must"),
            ("a:b:v1:", "state must"),
            (&format!("{n32}:{n32}:v65535:processingx"), "longer than"),
        ];
        for (input, reason_start) in cases {
            match input.parse::<EventType>() {
                Err(Error::InvalidEventType { input: got, reason }) => {
                    assert!(reason.starts_with(reason_start), "{input:?}: {reason}");
                    assert!(input.starts_with(&got), "{input:?} vs {got:?}");
                }
                other => panic!("{input:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn new_checks_the_grammar() {
        assert!(EventType::new("storage", "fetch", 0, State::Requested).is_err());
        assert!(EventType::new("Storage", "fetch", 1, State::Requested).is_err());
        assert!(EventType::new("storage", "fe:tch", 1, State::Requested).is_err());
        let raw = EventType {
            service: "x y".into(),
            action: "a".into(),
            version: 1,
            state: State::Failed,
        };
        assert!(raw.validate().is_err());
    }

    #[test]
    fn error_input_is_cut() {
        let input = "x".repeat(1000);
        let Err(Error::InvalidEventType { input: got, .. }) = input.parse::<EventType>() else {
            panic!()
        };
        assert_eq!(got.len(), 80);
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(
            service in "[a-z][a-z0-9_]{0,31}",
            action in "[a-z][a-z0-9_]{0,31}",
            version in 1u16..,
            state in proptest::sample::select(State::ALL.to_vec()),
        ) {
            let e = EventType::new(&service, &action, version, state).unwrap();
            prop_assert_eq!(e.to_string().parse::<EventType>().unwrap(), e);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,100}") {
            if let Ok(e) = s.parse::<EventType>() {
                prop_assert_eq!(e.to_string(), s);
            }
        }
    }
}
