//! Acceptance tests on the real models fetched by `scripts/fetch-models.sh` (MiniLM embeddings,
//! SmolLM2 generation). Short inputs and few tokens keep them fast on a CPU.

use std::path::PathBuf;

use warren_inference::embed::{EmbedFiles, Embedder, cosine};
use warren_inference::generate::Generator;
use warren_inference::{Backend, Detokenizer, GenerateParams, ModelFile, Prompt};
use warren_protocol::inference::ChatMessage;

fn models_dir() -> PathBuf {
    let dir = std::env::var_os("WARREN_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models"));
    assert!(
        dir.join("smollm2-135m-instruct").exists() && dir.join("all-minilm-l6-v2").exists(),
        "models missing in {}: run scripts/fetch-models.sh",
        dir.display()
    );
    dir
}

#[test]
fn minilm_embeddings_separate_paraphrases_from_unrelated_text() {
    let dir = models_dir().join("all-minilm-l6-v2");
    let files = EmbedFiles {
        weights: ModelFile::unchecked(dir.join("model.safetensors")),
        tokenizer: ModelFile::unchecked(dir.join("tokenizer.json")),
        config: ModelFile::unchecked(dir.join("config.json")),
    };
    let e = Embedder::load("minilm", &files, Backend::Cpu).unwrap();
    let texts: Vec<String> = [
        "The cat sits on the mat.",
        "A cat is sitting on the mat.",
        "The stock market fell sharply on Monday.",
        "How do I reset my password?",
        "How can I reset my password?",
        "A man is eating food.",
        "A man is eating a piece of bread.",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let v = e.embed(&texts).unwrap();
    assert_eq!(v.len(), 7);
    assert!(v.iter().all(|x| x.len() == 384));
    for x in &v {
        let norm: f32 = x.iter().map(|a| a * a).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "unit length, got {norm}");
    }
    let para = cosine(&v[0], &v[1]);
    let para2 = cosine(&v[3], &v[4]);
    let unrelated = cosine(&v[0], &v[2]);
    let unrelated2 = cosine(&v[2], &v[3]);
    eprintln!("paraphrase {para:.3} {para2:.3}, unrelated {unrelated:.3} {unrelated2:.3}");
    assert!(
        para > 0.9 && para2 > 0.9,
        "paraphrase cosine {para} / {para2}"
    );
    // The sentence-transformers documentation gives 0.7553 for this pair with this model.
    let reference = cosine(&v[5], &v[6]);
    assert!(
        (reference - 0.7553).abs() < 0.005,
        "reference pair {reference}"
    );
    assert!(
        unrelated < 0.3 && unrelated2 < 0.3,
        "unrelated {unrelated} / {unrelated2}"
    );

    // Batching (and so padding) does not change a text's vector beyond float noise.
    let alone = e.embed(&texts[2..3]).unwrap();
    let diff = alone[0]
        .iter()
        .zip(&v[2])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff < 1e-4, "padding changed the vector by {diff}");
}

#[test]
fn smollm2_answers_coherently_and_greedy_repeats() {
    let path = models_dir().join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    let mut g =
        Generator::load("smollm2", &ModelFile::unchecked(path.clone()), Backend::Cpu).unwrap();
    let params = GenerateParams::greedy(12);
    let prompt = "What is the capital of France?";
    let mut streamed = String::new();
    let a = g
        .generate(prompt, &params, |piece| {
            streamed.push_str(piece);
            true
        })
        .unwrap();
    eprintln!("answer: {:?}", a.text);
    assert!(a.text.contains("Paris"), "answer {:?}", a.text);
    assert_eq!(streamed, a.text);
    let b = g.generate(prompt, &params, |_| true).unwrap();
    assert_eq!(a.tokens, b.tokens, "greedy decoding is deterministic");

    // A requester decodes the tokens itself: the same pieces, the same text, stop strings too.
    let d = Detokenizer::load("smollm2", &path).unwrap();
    // Its parameter count, from the tensor infos (SmolLM2-135M: 134.5 M, embeddings tied).
    eprintln!("parameters: {}", d.parameters());
    let (x, y) = ("The capital of France is", " Paris.");
    let n = d.count_tokens([x]);
    assert!((4..=8).contains(&n), "{n} tokens in {x:?}");
    assert_eq!(d.count_tokens([x, y]), n + d.count_tokens([y]));
    assert!(
        (130_000_000..140_000_000).contains(&d.parameters()),
        "{} parameters",
        d.parameters()
    );
    let mut pieces = Vec::new();
    g.generate(prompt, &params, |p| {
        pieces.push(p.to_string());
        true
    })
    .unwrap();
    assert_eq!(d.pieces(&a.tokens, &[]).unwrap(), pieces);
    let stopped = GenerateParams {
        stop: vec![" of".into()],
        ..params.clone()
    };
    let s = g.generate(prompt, &stopped, |_| true).unwrap();
    assert_eq!(d.pieces(&s.tokens, &stopped.stop).unwrap().concat(), s.text);
    assert!(!s.text.contains(" of"), "{:?}", s.text);

    // A chat rendered with the GGUF's own template (which adds SmolLM's system prompt).
    let chat = Prompt::Chat(vec![
        ChatMessage {
            role: "user".into(),
            content: "Hi!".into(),
        },
        ChatMessage {
            role: "assistant".into(),
            content: "Hello! How can I help?".into(),
        },
        ChatMessage {
            role: "user".into(),
            content: prompt.into(),
        },
    ]);
    let text = g.input_text(&chat);
    assert!(
        text.starts_with("<|im_start|>system\nYou are a helpful AI assistant named SmolLM"),
        "{text}"
    );
    let c = g.generate_prompt(&chat, &params, |_| true).unwrap();
    eprintln!("chat answer: {:?} ({:?})", c.text, c.finish);
    assert!(c.text.contains("Paris"), "chat answer {:?}", c.text);
    assert!(c.prompt_tokens > a.prompt_tokens);
}
