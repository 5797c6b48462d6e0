//! The hex test vectors of `spec/inference-jobs.md`, checked against the code.
//!
//! Same conventions as `spec_vectors.rs`: a vector is an HTML comment marker line
//! (`<!-- vector: NAME -->`, or `<!-- vector: NAME error: KIND -->` for bytes the decoder must
//! refuse) followed by a fenced `hex` block. Every valid vector must equal what the code encodes
//! from the fixed inputs below and decode back to them; every error vector must be refused. To
//! regenerate the blocks after a deliberate format change:
//! `cargo test -p warren-protocol --test inference_vectors -- --ignored --nocapture print_vectors`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed check

use warren_protocol::inference::{
    ChatMessage, EmbedRequest, EmbedResult, GenerateRequest, GenerateResult, JobFailure,
    MODEL_MANIFEST_VERSION, ModelFileEntry, ModelManifest, TokenChunk, frame, role,
};
use warren_protocol::spec_text::{SpecVector, extract_vectors};
use warren_protocol::{Codec, ContentId, Envelope, State};

const PAGE: &str = include_str!("../../spec/inference-jobs.md");

fn model() -> ContentId {
    ContentId::of_block(Codec::Raw, b"model manifest")
}

fn file() -> ContentId {
    ContentId::of_block(Codec::Raw, b"weights")
}

fn messages() -> Vec<(&'static str, Vec<u8>)> {
    let generate =
        GenerateRequest::plain(model(), "What is the capital of France?".into(), 12, 0.0, 0);
    let mut chat = GenerateRequest::plain(model(), String::new(), 12, 0.5, 7);
    chat.messages = Some(vec![
        ChatMessage {
            role: "system".into(),
            content: "Be brief.".into(),
        },
        ChatMessage {
            role: "user".into(),
            content: "Capital of France?".into(),
        },
    ]);
    chat.top_p = Some(0.5);
    chat.stop = vec![".".into()];
    chat.usage = true;
    let envelope = Envelope::new(
        [7; 16],
        warren_protocol::inference::event("generate", State::Requested).unwrap(),
        1_700_000_000_000,
        generate.encode().unwrap(),
    );
    vec![
        ("generate-request", generate.encode().unwrap()),
        (
            "token-chunk",
            TokenChunk {
                index: 0,
                text: "The".into(),
            }
            .encode()
            .unwrap(),
        ),
        (
            "generate-result",
            GenerateResult {
                tokens: vec![504, 3575],
                text: "The capital".into(),
                backend: "cpu".into(),
                digest: vec![0xab; 32],
                compute_ms: 250,
                prompt_tokens: None,
                finish: None,
            }
            .encode()
            .unwrap(),
        ),
        ("generate-request-chat", chat.encode().unwrap()),
        (
            "generate-result-usage",
            GenerateResult {
                tokens: vec![504, 3575],
                text: "The capital".into(),
                backend: "cpu".into(),
                digest: vec![0xab; 32],
                compute_ms: 250,
                prompt_tokens: Some(31),
                finish: Some("length".into()),
            }
            .encode()
            .unwrap(),
        ),
        (
            "embed-request",
            EmbedRequest {
                model: model(),
                texts: vec!["a cat".into(), "a dog".into()],
            }
            .encode()
            .unwrap(),
        ),
        (
            "embed-result",
            EmbedResult {
                dim: 2,
                vectors: EmbedResult::pack(&[vec![1.0, 0.0], vec![0.6, 0.8]]),
                backend: "cpu".into(),
                compute_ms: 3,
            }
            .encode()
            .unwrap(),
        ),
        (
            "job-failure",
            JobFailure {
                code: "busy".into(),
                reason: "executor busy: 2 of 2 job slots in use".into(),
            }
            .encode()
            .unwrap(),
        ),
        (
            "model-manifest",
            ModelManifest {
                version: MODEL_MANIFEST_VERSION,
                name: "tiny".into(),
                kind: "generate".into(),
                architecture: "llama".into(),
                files: vec![ModelFileEntry {
                    role: role::GGUF.into(),
                    name: "tiny.gguf".into(),
                    size: 7,
                    blake3: blake3_of_weights(),
                    content: file(),
                }],
            }
            .encode()
            .unwrap(),
        ),
        (
            "framed-request",
            frame(&envelope.encode().unwrap()).unwrap(),
        ),
    ]
}

fn blake3_of_weights() -> Vec<u8> {
    // BLAKE3("weights"), written out so the page states it.
    hex::decode("3edc5c4a5df8c79ef4f8dbdc373cd21ca041ccf39fe5693250d004092094dc4a").unwrap()
}

fn decodes(name: &str, bytes: &[u8]) -> bool {
    match name {
        n if n.starts_with("generate-request") => GenerateRequest::decode(bytes).is_ok(),
        n if n.starts_with("token-chunk") => TokenChunk::decode(bytes).is_ok(),
        n if n.starts_with("generate-result") => GenerateResult::decode(bytes).is_ok(),
        n if n.starts_with("embed-request") => EmbedRequest::decode(bytes).is_ok(),
        n if n.starts_with("embed-result") => EmbedResult::decode(bytes).is_ok(),
        n if n.starts_with("job-failure") => JobFailure::decode(bytes).is_ok(),
        n if n.starts_with("model-manifest") => ModelManifest::decode(bytes).is_ok(),
        n if n.starts_with("framed-request") => {
            let len = warren_protocol::inference::frame_len(bytes[..4].try_into().unwrap());
            len.is_ok_and(|l| l == bytes.len() - 4)
                && Envelope::decode(&bytes[4..])
                    .is_ok_and(|e| GenerateRequest::decode(&e.payload).is_ok())
        }
        other => panic!("no decoder for vector {other}"),
    }
}

fn vectors() -> Vec<SpecVector> {
    extract_vectors(PAGE).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn valid_vectors_match_the_code() {
    let page = vectors();
    for (name, bytes) in messages() {
        let v = page
            .iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("spec/inference-jobs.md has no vector {name}"));
        assert_eq!(v.error, None, "{name}");
        assert_eq!(
            hex::encode(&v.bytes),
            hex::encode(&bytes),
            "vector {name} differs from the code"
        );
        assert!(decodes(name, &v.bytes), "vector {name} does not decode");
    }
}

#[test]
fn error_vectors_are_refused() {
    let errors: Vec<_> = vectors()
        .into_iter()
        .filter(|v| v.error.is_some())
        .collect();
    assert!(errors.len() >= 3);
    for v in errors {
        assert!(
            !decodes(&v.name, &v.bytes),
            "vector {} was accepted",
            v.name
        );
    }
}

fn plain(bytes: &[u8]) -> String {
    bytes.chunks(16).map(|c| hex::encode(c) + "\n").collect()
}

#[test]
#[ignore = "generator: prints the vector blocks for spec/inference-jobs.md"]
fn print_vectors() {
    println!("model id {}\nfile id {}\n", model(), file());
    for (name, bytes) in messages() {
        println!("<!-- vector: {name} -->\n```hex\n{}```\n", plain(&bytes));
    }
    let mut trailing = messages()[0].1.clone();
    trailing.push(0);
    println!(
        "<!-- vector: generate-request-trailing error: trailing -->\n```hex\n{}```\n",
        plain(&trailing)
    );
    let zero = GenerateRequest::plain(model(), "hi".into(), 1, 0.0, 0)
        .encode()
        .unwrap();
    println!(
        "<!-- vector: generate-request-one-token -->\n```hex\n{}```\n",
        plain(&zero)
    );
}
