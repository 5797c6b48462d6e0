//! Times greedy generation of the local executor on a GGUF file: `cargo run --release -p
//! warren-inference --example gen_speed -- MODEL.gguf [TOKENS] [ROUNDS]`. Prints tokens/s of each
//! round (prefill included, as `warren-bench infer` times a job) and the text of the last one.
//! `WARREN_NO_OWN_KERNELS=1` runs the path before warren's `Q4_1` kernel (candle's decoder, `Q4_1`
//! converted to `Q8_0` at load) for a side-by-side figure. `WARREN_BACKEND=cuda` runs it on
//! the GPU of a CUDA build (`scripts/check-cuda.sh`).
use std::time::Instant;

use warren_inference::generate::Generator;
use warren_inference::{Backend, GenerateParams, ModelFile};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: gen_speed MODEL.gguf [TOKENS] [ROUNDS]")?;
    let tokens: u32 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(64);
    let rounds: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(3);
    let backend = match std::env::var("WARREN_BACKEND") {
        Ok(name) => Backend::parse(&name).ok_or("WARREN_BACKEND is cpu or cuda")?,
        Err(_) => Backend::Cpu,
    };
    let started = Instant::now();
    let mut g = Generator::load("bench", &ModelFile::unchecked(path), backend)?;
    println!(
        "{}: load {:.2} s",
        backend.as_str(),
        started.elapsed().as_secs_f64()
    );
    let mut last = String::new();
    for round in 0..rounds {
        let started = Instant::now();
        let out = g.generate(
            "Write a short story about a lighthouse keeper.",
            &GenerateParams::greedy(tokens),
            |_| true,
        )?;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "round {round}: {} tokens in {secs:.3} s = {:.1} tokens/s ({} prompt tokens)",
            out.tokens.len(),
            out.tokens.len() as f64 / secs,
            out.prompt_tokens
        );
        last = out.text;
    }
    println!("text: {last:?}");
    Ok(())
}
