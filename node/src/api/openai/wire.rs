//! The OpenAI API's shapes: request bodies, response and chunk objects, server-sent event
//! framing and the error object. Pure: no I/O, no node state.

use axum::body::Bytes;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use warren_protocol::inference::{CHAT_ROLES, ChatMessage};

/// An error in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OpenAiError {
    /// HTTP status.
    pub(crate) status: u16,
    /// For a person.
    pub(crate) message: String,
    /// `invalid_request_error`, `authentication_error`, `not_found_error`, `api_error`, …
    pub(crate) kind: &'static str,
    /// The request field at fault, if one is.
    pub(crate) param: Option<&'static str>,
    /// A machine-readable code (`model_not_found`, `invalid_api_key`, …).
    pub(crate) code: Option<&'static str>,
}

impl OpenAiError {
    /// 400: the request is wrong.
    pub(crate) fn invalid(message: impl Into<String>, param: Option<&'static str>) -> Self {
        Self {
            status: 400,
            message: message.into(),
            kind: "invalid_request_error",
            param,
            code: None,
        }
    }

    /// 404: no such model.
    pub(crate) fn unknown_model(model: &str, detail: impl std::fmt::Display) -> Self {
        Self {
            status: 404,
            message: format!("the model {model:?} does not exist here: {detail}"),
            kind: "invalid_request_error",
            param: Some("model"),
            code: Some("model_not_found"),
        }
    }

    /// 401: no token or a wrong one.
    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            status: 401,
            message: message.into(),
            kind: "authentication_error",
            param: None,
            code: Some("invalid_api_key"),
        }
    }

    /// A server-side failure with `status` (5xx).
    pub(crate) fn server(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind: "api_error",
            param: None,
            code: None,
        }
    }

    /// The JSON body.
    pub(crate) fn body(&self) -> Value {
        json!({ "error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

/// Parses a JSON request body; malformed JSON or a wrong field is a 400 in OpenAI's shape.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, OpenAiError> {
    serde_json::from_slice(body)
        .map_err(|e| OpenAiError::invalid(format!("the request body is not valid: {e}"), None))
}

/// `content`: a string, or an array of parts of which the `text` ones are kept.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Content {
    /// Plain text.
    Text(String),
    /// Typed parts.
    Parts(Vec<Part>),
}

/// One part of a message's content.
#[derive(Debug, Deserialize)]
pub(crate) struct Part {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

/// One message of a chat request.
#[derive(Debug, Deserialize)]
pub(crate) struct InMessage {
    role: String,
    content: Option<Content>,
}

/// `stop`: one string or several.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Stop {
    /// One.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// `stream_options`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct StreamOptions {
    /// Send a last chunk with `usage`.
    #[serde(default)]
    pub(crate) include_usage: Option<bool>,
}

/// warren's extension fields, accepted in every request body.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Routing {
    /// `speed` (default), `cost`, `quality` or `private`.
    pub(crate) warren_strategy: Option<String>,
    /// Chance of a verification re-run on a second operator (default 0.1).
    pub(crate) warren_sample: Option<f64>,
    /// Run on this node's own executor.
    pub(crate) warren_local: Option<bool>,
    /// For embeddings: how many operators to split the batch over (default 2).
    pub(crate) warren_operators: Option<usize>,
}

/// The sampling fields common to chat and text completions.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Sampling {
    pub(crate) max_tokens: Option<u32>,
    pub(crate) max_completion_tokens: Option<u32>,
    pub(crate) temperature: Option<f32>,
    pub(crate) top_p: Option<f32>,
    pub(crate) seed: Option<u64>,
    pub(crate) stop: Option<Stop>,
    pub(crate) n: Option<u32>,
    pub(crate) stream: Option<bool>,
    pub(crate) stream_options: Option<StreamOptions>,
}

/// `POST /chat/completions`. Fields not listed are ignored.
#[derive(Debug, Deserialize)]
pub(crate) struct ChatRequest {
    pub(crate) model: String,
    pub(crate) messages: Vec<InMessage>,
    #[serde(flatten)]
    pub(crate) sampling: Sampling,
    #[serde(flatten)]
    pub(crate) routing: Routing,
}

/// A string or an array of strings: a completion's `prompt` (only one prompt is served per
/// call) and an embeddings request's `input`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Texts {
    /// One text.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// `POST /completions`.
#[derive(Debug, Deserialize)]
pub(crate) struct CompletionRequest {
    pub(crate) model: String,
    pub(crate) prompt: Texts,
    #[serde(flatten)]
    pub(crate) sampling: Sampling,
    #[serde(flatten)]
    pub(crate) routing: Routing,
}

/// `POST /embeddings`.
#[derive(Debug, Deserialize)]
pub(crate) struct EmbeddingsRequest {
    pub(crate) model: String,
    pub(crate) input: Texts,
    pub(crate) encoding_format: Option<String>,
    #[serde(flatten)]
    pub(crate) routing: Routing,
}

/// The chat as the job carries it: roles checked, content parts joined.
pub(crate) fn chat_messages(messages: Vec<InMessage>) -> Result<Vec<ChatMessage>, OpenAiError> {
    if messages.is_empty() {
        return Err(OpenAiError::invalid(
            "messages must hold at least one message",
            Some("messages"),
        ));
    }
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        // OpenAI's newer name for the system role.
        let role = if m.role == "developer" {
            "system".to_string()
        } else {
            m.role
        };
        if !CHAT_ROLES.contains(&role.as_str()) {
            return Err(OpenAiError::invalid(
                format!("unknown role {role:?}: system, developer, user, assistant or tool"),
                Some("messages"),
            ));
        }
        let content = match m.content {
            None => String::new(),
            Some(Content::Text(t)) => t,
            Some(Content::Parts(parts)) => {
                let mut text = String::new();
                for p in parts {
                    match (p.kind.as_str(), p.text) {
                        ("text", Some(t)) => text.push_str(&t),
                        (kind, _) => {
                            return Err(OpenAiError::invalid(
                                format!(
                                    "content parts of type {kind:?} are not supported: text only"
                                ),
                                Some("messages"),
                            ));
                        }
                    }
                }
                text
            }
        };
        out.push(ChatMessage { role, content });
    }
    Ok(out)
}

/// One server-sent event carrying `value` as JSON.
pub(crate) fn sse_data(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

/// The event that ends a stream.
pub(crate) const SSE_DONE: &str = "data: [DONE]\n\n";
/// A comment line that keeps the connection alive while nothing else is sent.
pub(crate) const SSE_KEEPALIVE: &str = ": keep-alive\n\n";

/// Token counts.
pub(crate) fn usage(prompt_tokens: u32, completion_tokens: u32) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    })
}

/// Chat or text completion: the two shapes one generation is answered in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `/chat/completions`.
    Chat,
    /// `/completions`.
    Text,
}

/// What identifies one answer: its id, time and model name.
#[derive(Clone, Debug)]
pub(crate) struct Answer {
    pub(crate) kind: Kind,
    pub(crate) id: String,
    pub(crate) created: u64,
    pub(crate) model: String,
}

impl Answer {
    /// A new answer id with OpenAI's prefix (`chatcmpl-`, `cmpl-`) and 24 random hex digits.
    pub(crate) fn new(kind: Kind, model: &str, created: u64, random: [u8; 12]) -> Self {
        let prefix = match kind {
            Kind::Chat => "chatcmpl-",
            Kind::Text => "cmpl-",
        };
        Self {
            kind,
            id: format!("{prefix}{}", hex::encode(random)),
            created,
            model: model.to_string(),
        }
    }

    /// The whole answer (`chat.completion` or `text_completion`).
    pub(crate) fn complete(&self, text: &str, finish: &str, usage: Value, warren: Value) -> Value {
        let choice = match self.kind {
            Kind::Chat => json!({
                "index": 0,
                "message": { "role": "assistant", "content": text },
                "finish_reason": finish,
                "logprobs": null,
            }),
            Kind::Text => json!({
                "index": 0,
                "text": text,
                "finish_reason": finish,
                "logprobs": null,
            }),
        };
        json!({
            "id": self.id,
            "object": self.object(false),
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": usage,
            "warren": warren,
        })
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.kind, chunk) {
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Text, _) => "text_completion",
        }
    }

    /// A streamed chunk: `role` only in the first (chat), `text` a piece of the answer, `finish`
    /// only in the last.
    pub(crate) fn chunk(&self, role: bool, text: Option<&str>, finish: Option<&str>) -> Value {
        let choice = match self.kind {
            Kind::Chat => {
                let mut delta = serde_json::Map::new();
                if role {
                    delta.insert("role".into(), json!("assistant"));
                }
                if let Some(t) = text {
                    delta.insert("content".into(), json!(t));
                }
                json!({ "index": 0, "delta": delta, "finish_reason": finish, "logprobs": null })
            }
            Kind::Text => json!({
                "index": 0,
                "text": text.unwrap_or(""),
                "finish_reason": finish,
                "logprobs": null,
            }),
        };
        json!({
            "id": self.id,
            "object": self.object(true),
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        })
    }

    /// The chunk after the last when `stream_options.include_usage` is set: no choices, usage.
    pub(crate) fn usage_chunk(&self, usage: Value) -> Value {
        json!({
            "id": self.id,
            "object": self.object(true),
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage,
        })
    }
}

/// A vector as `encoding_format: base64` sends it: its f32 components little-endian, in base64.
pub(crate) fn base64_f32(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The embeddings answer (`encoding_format` `float`, or `base64` when `base64` is set).
pub(crate) fn embeddings(model: &str, vectors: &[Vec<f32>], base64: bool, warren: Value) -> Value {
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                json!(base64_f32(v))
            } else {
                json!(v)
            };
            json!({ "object": "embedding", "index": i, "embedding": embedding })
        })
        .collect();
    json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": { "prompt_tokens": 0, "total_tokens": 0 },
        "warren": warren,
    })
}

/// One model in `GET /models`.
pub(crate) fn model_entry(id: &str, owned_by: &str) -> Value {
    json!({ "id": id, "object": "model", "created": 0, "owned_by": owned_by })
}

/// One model served on the mesh in `GET /models`: its id as `id` (names are not unique across
/// operators), owned by its operator, or `warren-mesh` when several serve it; `created` is the
/// earliest record naming it; `warren` says its name, how many operators serve it, how many are
/// connected here, and names a few.
pub(crate) fn mesh_model_entry(m: &warren_protocol::mesh_models::MeshModel) -> Value {
    let owned_by = match m.operators.as_slice() {
        [one] if m.operator_count == 1 => one.to_string(),
        _ => "warren-mesh".to_string(),
    };
    json!({
        "id": m.id.to_string(),
        "object": "model",
        "created": m.since,
        "owned_by": owned_by,
        "warren": {
            "name": m.name,
            "here": false,
            "operators": m.operator_count,
            "connected": m.connected,
            "operator_ids": m.operators.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_requests_parse_with_string_or_parts_and_extensions() {
        let r: ChatRequest = parse(
            br#"{"model":"m","messages":[{"role":"developer","content":"Be brief."},
                {"role":"user","content":[{"type":"text","text":"Capital "},{"type":"text","text":"of France?"}]},
                {"role":"assistant","content":null}],
                "max_tokens":8,"temperature":0,"top_p":0.9,"seed":3,"stop":"\n","stream":true,
                "stream_options":{"include_usage":true},"user":"ignored","warren_strategy":"quality",
                "warren_sample":1.0,"warren_local":false}"#,
        )
        .unwrap();
        assert_eq!(r.sampling.max_tokens, Some(8));
        assert_eq!(r.sampling.stream, Some(true));
        assert_eq!(r.routing.warren_strategy.as_deref(), Some("quality"));
        assert!(matches!(r.sampling.stop, Some(Stop::One(ref s)) if s == "\n"));
        let m = chat_messages(r.messages).unwrap();
        assert_eq!(m[0].role, "system");
        assert_eq!(m[1].content, "Capital of France?");
        assert_eq!(m[2].content, "");
    }

    #[test]
    fn bad_requests_are_400_in_openai_shape() {
        let e = parse::<ChatRequest>(b"{not json").unwrap_err();
        assert_eq!(e.status, 400);
        let body = e.body();
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not valid")
        );
        assert!(body["error"].get("param").is_some() && body["error"].get("code").is_some());
        assert_eq!(
            parse::<ChatRequest>(br#"{"model":"m"}"#)
                .unwrap_err()
                .status,
            400
        );
        let r: ChatRequest =
            parse(br#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#).unwrap();
        assert_eq!(
            chat_messages(r.messages).unwrap_err().param,
            Some("messages")
        );
        let r: ChatRequest = parse(
            br#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{}}]}]}"#,
        )
        .unwrap();
        assert!(
            chat_messages(r.messages)
                .unwrap_err()
                .message
                .contains("image_url")
        );
        let e = OpenAiError::unknown_model("nope", "not here");
        assert_eq!((e.status, e.code), (404, Some("model_not_found")));
    }

    #[test]
    fn chunks_and_answers_have_openai_shapes() {
        let a = Answer::new(Kind::Chat, "smol", 1_700_000_000, [0xab; 12]);
        assert_eq!(a.id, format!("chatcmpl-{}", "ab".repeat(12)));
        let first = a.chunk(true, Some(""), None);
        assert_eq!(first["object"], "chat.completion.chunk");
        assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
        assert!(first["choices"][0]["finish_reason"].is_null());
        let piece = a.chunk(false, Some("Par"), None);
        assert!(piece["choices"][0]["delta"].get("role").is_none());
        assert_eq!(piece["choices"][0]["delta"]["content"], "Par");
        let last = a.chunk(false, None, Some("stop"));
        assert_eq!(last["choices"][0]["delta"], json!({}));
        assert_eq!(last["choices"][0]["finish_reason"], "stop");
        let whole = a.complete("Paris", "length", usage(10, 2), json!({}));
        assert_eq!(whole["object"], "chat.completion");
        assert_eq!(whole["choices"][0]["message"]["content"], "Paris");
        assert_eq!(whole["usage"]["total_tokens"], 12);
        assert_eq!(a.usage_chunk(usage(1, 1))["choices"], json!([]));
        let t = Answer::new(Kind::Text, "smol", 1, [0; 12]);
        assert!(t.id.starts_with("cmpl-"));
        assert_eq!(t.chunk(false, Some("x"), None)["object"], "text_completion");
        assert_eq!(
            t.complete("x", "stop", usage(1, 1), json!({}))["choices"][0]["text"],
            "x"
        );
    }

    #[test]
    fn sse_framing() {
        assert_eq!(&sse_data(&json!({"a": 1}))[..], b"data: {\"a\":1}\n\n");
        assert!(SSE_DONE.ends_with("\n\n") && SSE_KEEPALIVE.starts_with(':'));
    }

    #[test]
    fn embeddings_in_both_encodings() {
        let v = vec![vec![1.0f32, -2.5], vec![0.0, 0.125]];
        let f = embeddings("m", &v, false, json!(null));
        assert_eq!(f["data"][1]["embedding"], json!([0.0, 0.125]));
        assert_eq!(f["data"][1]["index"], 1);
        let b = embeddings("m", &v, true, json!(null));
        let text = b["data"][0]["embedding"].as_str().unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap();
        assert_eq!(
            bytes,
            [1.0f32.to_le_bytes(), (-2.5f32).to_le_bytes()].concat()
        );
        assert_eq!(model_entry("m", "warren")["object"], "model");
        let op = warren_protocol::keypair_from_secret([3; 32])
            .public()
            .to_peer_id();
        let mut m = warren_protocol::mesh_models::MeshModel {
            id: warren_protocol::ContentId::of_block(warren_protocol::Codec::Raw, b"m"),
            name: "smol".into(),
            operators: vec![op],
            operator_count: 1,
            connected: 1,
            since: 77,
        };
        let e = mesh_model_entry(&m);
        assert_eq!(e["id"], m.id.to_string());
        assert_eq!(e["owned_by"], op.to_string());
        assert_eq!(
            (e["created"].as_u64(), e["warren"]["name"].as_str()),
            (Some(77), Some("smol"))
        );
        m.operator_count = 2;
        assert_eq!(mesh_model_entry(&m)["owned_by"], "warren-mesh");
    }
}
