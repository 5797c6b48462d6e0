//! The worker process itself: `warren __worker …` (hidden; started by the node, never by hand).
//!
//! ```text
//! warren __worker model MEMORY      stdin: the model file (opened by the node), stdout: the pipe
//! warren __worker relay MEMORY      stdin: nothing; decodes relay requests and encodes uploads
//! warren __worker check FILE ADDR PROGRAM [--unconfined]
//!                                   confines itself (unless --unconfined), runs the probes and
//!                                   prints {"confined": …, "probes": …} as JSON
//! ```
//!
//! A model worker takes its two descriptors, confines itself ([`super::confine::confine`]) and
//! says [`FromWorker::Ready`] — or [`FromWorker::Refused`] and exits — then answers requests one
//! at a time until the pipe closes. It holds one model, loaded from the descriptor and checked
//! against the hash the node sends. Nothing it does can reach a file, a socket or a program.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::sync::Arc;

use serde_bytes::ByteBuf;
use warren_inference::embed::EmbedFiles;
use warren_inference::files::Source;
use warren_inference::{Backend, Executor, GenerateParams, Limits, ModelFile};

use super::confine::{Probes, confine};
use super::wire::{self, Failure, FromWorker, Params, Prompt, ToWorker};

/// The hidden subcommand that runs a worker.
pub const SUBCOMMAND: &str = "__worker";

/// Runs the worker with the arguments after [`SUBCOMMAND`].
pub fn main(args: &[String]) -> ExitCode {
    match args.first().map(String::as_str) {
        Some("model") => {
            let memory = args.get(1).and_then(|m| m.parse().ok()).unwrap_or(1 << 30);
            match model(memory) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("warren worker: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some("relay") => {
            let memory = args
                .get(1)
                .and_then(|m| m.parse().ok())
                .unwrap_or(256 << 20);
            match super::relay_child::relay(memory) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("warren worker: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some("check") if args.len() >= 4 => {
            let confined = if args.get(4).is_some_and(|a| a == "--unconfined") {
                Err("not asked to confine".to_string())
            } else {
                confine(1 << 30)
            };
            let probes = Probes::run(std::path::Path::new(&args[1]), &args[2], &args[3]);
            let out = serde_json::json!({ "confined": confined, "probes": probes });
            println!("{out}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("warren {SUBCOMMAND}: started by the node, not by hand");
            ExitCode::from(2)
        }
    }
}

pub(super) fn dup(fd: impl AsFd) -> std::io::Result<File> {
    Ok(File::from(fd.as_fd().try_clone_to_owned()?))
}

/// Confines this worker (`memory` bytes at most) and tells the node on `pipe`: `Ready` with the
/// Landlock ABI, or `Refused` with why (then the worker ends with that error).
pub(super) fn confine_and_say(pipe: &mut File, memory: u64) -> Result<u32, String> {
    let abi = match confine(memory) {
        Ok(abi) => abi,
        Err(why) => {
            let _ = wire::write(pipe, &FromWorker::Refused { why: why.clone() });
            return Err(why);
        }
    };
    wire::write(pipe, &FromWorker::Ready { landlock: abi }).map_err(|e| e.to_string())?;
    Ok(abi)
}

/// A model worker's life (see the module doc).
fn model(memory: u64) -> Result<(), String> {
    let model = Arc::new(dup(std::io::stdin()).map_err(|e| format!("stdin: {e}"))?);
    let mut pipe = dup(std::io::stdout()).map_err(|e| format!("stdout: {e}"))?;
    confine_and_say(&mut pipe, memory)?;
    let executor = Executor::new(
        Backend::Cpu,
        Limits {
            max_concurrent_jobs: 1,
            memory_budget_bytes: u64::MAX,
            ..Limits::default()
        },
    );
    let mut loaded = String::new();
    loop {
        let request = match wire::read::<ToWorker>(&mut pipe) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(e) => return Err(format!("pipe: {e}")),
        };
        let answer = match request {
            ToWorker::LoadGenerator { id, blake3 } => {
                let file =
                    ModelFile::from_source("model", Source::Open(model.clone()), hash(&blake3));
                let r = executor
                    .load_generator(&id, &file)
                    .map(|()| FromWorker::Loaded);
                loaded = id;
                r
            }
            ToWorker::LoadEmbedder {
                id,
                blake3,
                tokenizer,
                config,
            } => {
                let bytes = |name: &str, b: ByteBuf| {
                    let b: Arc<[u8]> = Arc::from(b.into_vec());
                    let h = *::blake3::hash(&b).as_bytes();
                    ModelFile::from_source(name, Source::Bytes(b), h)
                };
                let files = EmbedFiles {
                    weights: ModelFile::from_source(
                        "weights",
                        Source::Open(model.clone()),
                        hash(&blake3),
                    ),
                    tokenizer: bytes("tokenizer.json", tokenizer),
                    config: bytes("config.json", config),
                };
                let r = executor
                    .load_embedder(&id, &files)
                    .map(|()| FromWorker::Loaded);
                loaded = id;
                r
            }
            ToWorker::Generate {
                job,
                model_id,
                prompt,
                params,
            } => generate(
                &executor, &mut pipe, &loaded, job, &model_id, prompt, params,
            ),
            ToWorker::Embed { job, texts } => executor
                .try_slot()
                .and_then(|slot| executor.embed(&slot, &job, &loaded, &texts))
                .map(|out| FromWorker::Embedded {
                    dim: out.vectors.first().map(|v| v.len()).unwrap_or(0) as u32,
                    vectors: ByteBuf::from(
                        out.vectors
                            .iter()
                            .flatten()
                            .flat_map(|x| x.to_le_bytes())
                            .collect::<Vec<u8>>(),
                    ),
                    digest: ByteBuf::from(out.digest.to_vec()),
                }),
            ToWorker::Decode { .. } | ToWorker::Encode { .. } => {
                Err(warren_inference::Error::Worker {
                    detail: "a model worker does no relay work".into(),
                })
            }
            ToWorker::Go | ToWorker::Stop => continue,
        };
        let answer = answer.unwrap_or_else(|e| FromWorker::Failed(failure(&e)));
        wire::write(&mut pipe, &answer).map_err(|e| format!("pipe: {e}"))?;
        pipe.flush().map_err(|e| format!("pipe: {e}"))?;
    }
}

fn hash(b: &[u8]) -> [u8; 32] {
    b.try_into().unwrap_or([0; 32])
}

/// One generation job: each text piece goes out and waits for `Go` or `Stop`.
fn generate(
    executor: &Executor,
    pipe: &mut File,
    id: &str,
    job: String,
    model_id: &[u8],
    prompt: Prompt,
    params: Params,
) -> Result<FromWorker, warren_inference::Error> {
    let prompt = match prompt {
        Prompt::User(p) => warren_inference::Prompt::User(p),
        Prompt::Raw(p) => warren_inference::Prompt::Raw(p),
        Prompt::Chat(m) => warren_inference::Prompt::Chat(m),
    };
    let params = GenerateParams {
        max_tokens: params.max_tokens,
        temperature: params.temperature,
        seed: params.seed,
        top_p: params.top_p,
        stop: params.stop,
    };
    let slot = executor.try_slot()?;
    let out = executor.generate(&slot, &job, id, model_id, &prompt, &params, |piece| {
        wire::write(pipe, &FromWorker::Text(piece.to_string())).is_ok()
            && matches!(wire::read::<ToWorker>(pipe), Ok(Some(ToWorker::Go)))
    })?;
    Ok(FromWorker::Generated {
        tokens: out.generation.tokens,
        text: out.generation.text,
        prompt_tokens: out.generation.prompt_tokens,
        finish: out.generation.finish.as_str().to_string(),
        digest: ByteBuf::from(out.digest.to_vec()),
    })
}

pub(super) fn failure(e: &warren_inference::Error) -> Failure {
    use warren_inference::Error;
    let (code, over) = match e {
        Error::OverLimit {
            what, got, limit, ..
        } => ("limit", Some((what.to_string(), *got, *limit))),
        Error::Busy { .. } => ("busy", None),
        Error::Load { .. } => ("unknown-model", None),
        _ => ("error", None),
    };
    let mut detail = e.to_string();
    let mut n = detail.len().min(4096);
    while !detail.is_char_boundary(n) {
        n -= 1;
    }
    detail.truncate(n);
    Failure {
        code: code.to_string(),
        detail,
        over,
    }
}
