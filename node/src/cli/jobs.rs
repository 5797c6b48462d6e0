//! The CLI side of `warren model`, `warren infer`, `warren embed` and `warren jobs`: talks to the
//! local node's API (see `api::jobs`) and formats what comes back.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::Context;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::ModelCommand;
use crate::cli::client::ApiClient;
use crate::inference::{EmbedOutcome, JobView, ModelView};

fn model_line(m: &ModelView) -> String {
    let placed = m.placed.as_ref().map_or(String::new(), |p| {
        format!(
            ", rf {}: {} copies on {} peers{}",
            p.rf,
            p.copies,
            p.holders.len(),
            if p.failed > 0 {
                format!(", {} failed (repair retries)", p.failed)
            } else {
                String::new()
            }
        )
    });
    format!(
        "{}  {}  {} ({}, {} bytes{placed})\n",
        m.model, m.name, m.kind, m.architecture, m.bytes
    )
}

fn show<T: serde::Serialize>(
    json: bool,
    v: &T,
    text: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(v)?);
    } else {
        print!("{}", text(v));
    }
    Ok(())
}

pub(crate) async fn model(api: &ApiClient, cmd: ModelCommand) -> anyhow::Result<()> {
    match cmd {
        ModelCommand::Add {
            paths,
            name,
            rf,
            out,
        } => {
            let paths: Vec<_> = paths
                .iter()
                .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
                .collect();
            let m: ModelView = api
                .post_json(
                    "/v1/models/add",
                    &serde_json::json!({ "name": name, "paths": paths, "rf": rf }),
                )
                .await?;
            show(out.json, &m, model_line)
        }
        ModelCommand::Serve { model, out } => {
            let m: ModelView = api
                .post_json("/v1/models/serve", &serde_json::json!({ "model": model }))
                .await?;
            show(out.json, &m, |m| format!("serving {}", model_line(m)))
        }
        ModelCommand::List(out) => {
            let ms: Vec<ModelView> = api.get("/v1/models").await?;
            show(out.json, &ms, |ms| ms.iter().map(model_line).collect())
        }
    }
}

pub(crate) async fn infer(
    api: &ApiClient,
    path: &str,
    body: &serde_json::Value,
    json: bool,
) -> anyhow::Result<()> {
    let resp = api.post_json_stream(path, body).await?;
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    let mut stdout = std::io::stdout();
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk.context("answer cut off")?);
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let v: serde_json::Value = serde_json::from_slice(&line).context("bad answer line")?;
            if let Some(text) = v.get("text").and_then(|t| t.as_str()) {
                if !json {
                    print!("{text}");
                    stdout.flush()?;
                }
            } else if let Some(done) = v.get("done") {
                if json {
                    println!("{}", serde_json::to_string_pretty(done)?);
                } else {
                    println!();
                    eprintln!(
                        "[{} tokens on {} ({}), digest {}]",
                        done["tokens"].as_array().map(|t| t.len()).unwrap_or(0),
                        done["operator"].as_str().unwrap_or("this node"),
                        done["backend"].as_str().unwrap_or("?"),
                        done["digest"].as_str().unwrap_or("?"),
                    );
                }
                return Ok(());
            } else if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
                anyhow::bail!("{e}");
            }
        }
    }
    anyhow::bail!("the node's answer ended before the job did")
}

/// Options of `warren embed`.
pub(crate) struct EmbedOpts {
    pub(crate) model: String,
    pub(crate) strategy: String,
    pub(crate) operators: usize,
    pub(crate) sample: f64,
    pub(crate) batch: usize,
    pub(crate) local: bool,
    pub(crate) anon: bool,
}

fn read_texts(input: &Path) -> anyhow::Result<Vec<String>> {
    let file = std::fs::File::open(input).with_context(|| format!("{}", input.display()))?;
    let mut texts = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not JSON", input.display(), i + 1))?;
        let text = match &v {
            serde_json::Value::String(s) => s.clone(),
            other => other
                .get("text")
                .and_then(|t| t.as_str())
                .map(str::to_owned)
                .with_context(|| format!("{}:{}: no \"text\"", input.display(), i + 1))?,
        };
        texts.push(text);
    }
    Ok(texts)
}

pub(crate) async fn embed(
    api: &ApiClient,
    o: &EmbedOpts,
    input: &Path,
    output: &Path,
    json: bool,
) -> anyhow::Result<()> {
    let texts = read_texts(input)?;
    let bar = ProgressBar::new(texts.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} texts {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(output).with_context(|| format!("{}", output.display()))?,
    );
    let mut summary =
        serde_json::json!({ "texts": texts.len(), "parts": [], "checks": [], "faulty": [] });
    for batch in texts.chunks(o.batch.max(1)) {
        let r: EmbedOutcome = if o.anon {
            let v: serde_json::Value = api
                .post_json(
                    "/v1/anon/embed",
                    &serde_json::json!({ "model": o.model, "texts": batch }),
                )
                .await?;
            EmbedOutcome {
                vectors: serde_json::from_value(v["vectors"].clone())?,
                parts: Vec::new(),
                checks: Vec::new(),
                faulty: Vec::new(),
                backend: v["backend"].as_str().unwrap_or_default().to_string(),
            }
        } else {
            api.post_json(
                "/v1/embed",
                &serde_json::json!({
                    "model": o.model, "texts": batch, "strategy": o.strategy,
                    "operators": o.operators, "sample": o.sample, "local": o.local,
                }),
            )
            .await?
        };
        for (text, v) in batch.iter().zip(&r.vectors) {
            serde_json::to_writer(
                &mut out,
                &serde_json::json!({ "text": text, "embedding": v }),
            )?;
            out.write_all(b"\n")?;
        }
        for (key, items) in [
            ("parts", serde_json::to_value(&r.parts)?),
            ("checks", serde_json::to_value(&r.checks)?),
            ("faulty", serde_json::to_value(&r.faulty)?),
        ] {
            if let (Some(all), Some(new)) = (summary[key].as_array_mut(), items.as_array()) {
                all.extend(new.iter().cloned());
            }
        }
        bar.inc(batch.len() as u64);
    }
    out.flush()?;
    bar.finish_and_clear();
    show(json, &summary, |s| {
        let mut t = format!("embedded {} texts into {}\n", texts.len(), output.display());
        for p in s["parts"].as_array().into_iter().flatten() {
            t.push_str(&format!(
                "  items {}..{} on {}\n",
                p["start"],
                p["end"],
                p["peer"].as_str().unwrap_or("?")
            ));
        }
        for c in s["checks"].as_array().into_iter().flatten() {
            t.push_str(&format!(
                "  check {} re-ran on {}: {}\n",
                c["original"].as_str().unwrap_or("?"),
                c["verifier"].as_str().unwrap_or("?"),
                c["verdict"].as_str().unwrap_or("?")
            ));
        }
        for f in s["faulty"].as_array().into_iter().flatten() {
            t.push_str(&format!(
                "  FAULTY operator {} (results discarded and redone)\n",
                f.as_str().unwrap_or("?")
            ));
        }
        t
    })
}

pub(crate) async fn jobs(api: &ApiClient, json: bool) -> anyhow::Result<()> {
    let jobs: Vec<JobView> = api.get("/v1/jobs").await?;
    show(json, &jobs, |js| {
        let mut s = String::new();
        for j in js {
            s.push_str(&format!(
                "{}  {:<8} {:<6} {:>5} items {:>7} ms  {}  {}\n",
                j.id,
                j.kind,
                j.role,
                j.items,
                j.ms,
                j.peer.as_deref().unwrap_or("-"),
                j.outcome
            ));
        }
        s
    })
}
