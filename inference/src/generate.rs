//! Text generation with a llama-architecture GGUF model (e.g. SmolLM2), its tokenizer read from
//! the same file.
//!
//! Decoding is greedy (`temperature == 0`) or sampled from a seeded RNG, so the same request on the
//! same backend yields the same tokens: that is what lets a second operator verify a first.

use std::io::Cursor;

use candle_core::quantized::gguf_file;
use candle_core::quantized::tokenizer::TokenizerFromGguf;
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::quantized_llama::ModelWeights;
use tokenizers::Tokenizer;

use crate::backend::Backend;
use crate::chat::{Prompt, StopScan, render_chat, scan_stop};
use crate::error::{self, Error, Result};
use crate::files::ModelFile;
use crate::llama::{Llama, MAX_SEQ_LEN};
use crate::requant;

/// The decoder a generator runs.
#[derive(Clone, Debug)]
enum Weights {
    /// warren's copy of the llama decoder, with its own `Q4_1` kernel on the CPU.
    Own(Llama),
    /// candle's (mixture-of-experts files, and the GPU).
    Candle(ModelWeights),
}

impl Weights {
    fn forward(&mut self, x: &Tensor, pos: usize) -> candle_core::Result<Tensor> {
        match self {
            Self::Own(m) => m.forward(x, pos),
            Self::Candle(m) => m.forward(x, pos),
        }
    }

    fn clear_kv_cache(&mut self) {
        match self {
            Self::Own(m) => m.clear_kv_cache(),
            Self::Candle(m) => m.clear_kv_cache(),
        }
    }
}

/// How to decode.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateParams {
    /// Most new tokens to produce.
    pub max_tokens: u32,
    /// 0 for greedy decoding; otherwise the softmax temperature.
    pub temperature: f32,
    /// Seed of the sampler's RNG (unused when greedy).
    pub seed: u64,
    /// Nucleus sampling threshold in (0, 1] (unused when greedy); `None` samples from all tokens.
    pub top_p: Option<f32>,
    /// Stop once the text contains one of these; the text ends before it.
    pub stop: Vec<String>,
}

impl GenerateParams {
    /// Greedy decoding of at most `max_tokens` tokens.
    pub fn greedy(max_tokens: u32) -> Self {
        Self {
            max_tokens,
            temperature: 0.0,
            seed: 0,
            top_p: None,
            stop: Vec::new(),
        }
    }
}

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// An end-of-sequence token or a stop string (or the caller cancelled).
    Stop,
    /// `max_tokens` ran out.
    Length,
}

impl Finish {
    /// `stop` or `length`, as OpenAI's `finish_reason` and the job result say it.
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// What a generation produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generation {
    /// The new token ids, in order (the stop token excluded).
    pub tokens: Vec<u32>,
    /// Their text.
    pub text: String,
    /// Tokens of the prompt after templating.
    pub prompt_tokens: u32,
    /// Why it ended.
    pub finish: Finish,
}

/// A loaded generation model. Cheap to clone: weights are shared, each clone has its own KV cache.
#[derive(Clone)]
pub struct Generator {
    name: String,
    weights: Weights,
    tokenizer: Tokenizer,
    device: Device,
    backend: Backend,
    stop_tokens: Vec<u32>,
    chat_template: bool,
    template: Option<String>,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("name", &self.name)
            .field("backend", &self.backend)
            .field("stop_tokens", &self.stop_tokens)
            .field("chat_template", &self.chat_template)
            .finish()
    }
}

impl Generator {
    /// Loads a GGUF file (weights and tokenizer), checking its hash when one is given.
    pub fn load(name: &str, file: &ModelFile, backend: Backend) -> Result<Self> {
        let device = backend.device()?;
        let bytes = file.read()?;
        let mut reader = Cursor::new(bytes);
        let c = error::candle(name);
        let content = gguf_file::Content::read(&mut reader).map_err(&c)?;
        let arch = content
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        if arch != "llama" {
            return Err(Error::Load {
                model: name.to_string(),
                detail: format!("architecture {arch:?} is not llama"),
            });
        }
        let tokenizer = Tokenizer::from_gguf(&content).map_err(&c)?;
        let template = content
            .metadata
            .get("tokenizer.chat_template")
            .and_then(|v| v.to_string().ok())
            .cloned();
        let chat_template = template
            .as_deref()
            .is_some_and(|t| t.contains("<|im_start|>"));
        let token_text = |key: &str| {
            content
                .metadata
                .get(key)
                .and_then(|v| v.to_u32().ok())
                .and_then(|id| tokenizer.id_to_token(id))
                .unwrap_or_default()
        };
        let bos_token = token_text("tokenizer.ggml.bos_token_id");
        let eos_token = token_text("tokenizer.ggml.eos_token_id");
        let mut stop_tokens = Vec::new();
        if let Some(eos) = content
            .metadata
            .get("tokenizer.ggml.eos_token_id")
            .and_then(|v| v.to_u32().ok())
        {
            stop_tokens.push(eos);
        }
        for special in ["<|im_end|>", "<|endoftext|>"] {
            if let Some(id) = tokenizer.token_to_id(special)
                && !stop_tokens.contains(&id)
            {
                stop_tokens.push(id);
            }
        }
        // On the CPU, dense models run on warren's copy of the decoder, whose `Q4_1` layers use
        // warren's own kernel (`qmatrix`); the other block types that candle multiplies in scalar
        // code are converted once to one it multiplies with SIMD (see `requant`).
        // WARREN_NO_OWN_KERNELS=1 keeps candle's decoder and converts `Q4_1` too (the path before
        // the kernel, for the side-by-side figure of `gen_speed`); WARREN_NO_REQUANT=1 converts
        // nothing. Model workers start with a cleared environment, so neither reaches them.
        let cpu = backend == Backend::Cpu;
        let own =
            cpu && std::env::var_os("WARREN_NO_OWN_KERNELS").is_none() && Llama::supports(&content);
        let slow: &[candle_core::quantized::GgmlDType] = if own {
            &requant::SLOW_BESIDES_Q4_1
        } else {
            &requant::SLOW_ON_CPU
        };
        let converted = if cpu && std::env::var_os("WARREN_NO_REQUANT").is_none() {
            requant::for_cpu_of(slow, name, &content, &mut reader)?
        } else {
            None
        };
        let load = |content: gguf_file::Content, reader: &mut Cursor<Vec<u8>>| {
            if own {
                Llama::from_gguf(content, reader, &device, true).map(Weights::Own)
            } else {
                ModelWeights::from_gguf(content, reader, &device).map(Weights::Candle)
            }
        };
        let weights = match converted {
            Some(bytes) => {
                let mut reader = Cursor::new(bytes);
                let content = gguf_file::Content::read(&mut reader).map_err(&c)?;
                load(content, &mut reader).map_err(&c)?
            }
            None => load(content, &mut reader).map_err(&c)?,
        };
        Ok(Self {
            name: name.to_string(),
            weights,
            tokenizer,
            device,
            backend,
            stop_tokens,
            chat_template,
            template,
            bos_token,
            eos_token,
        })
    }

    /// The backend the model runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The text fed to the model for a user prompt: wrapped in the ChatML template when the
    /// model's GGUF declares one, else the prompt itself.
    pub fn templated(&self, prompt: &str) -> String {
        if self.chat_template {
            format!("<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n")
        } else {
            prompt.to_string()
        }
    }

    /// The text fed to the model for `prompt` (see [`Prompt`]).
    pub fn input_text(&self, prompt: &Prompt) -> String {
        match prompt {
            Prompt::User(p) => self.templated(p),
            Prompt::Raw(p) => p.clone(),
            Prompt::Chat(messages) => {
                render_chat(
                    self.template.as_deref(),
                    messages,
                    &self.bos_token,
                    &self.eos_token,
                )
                .0
            }
        }
    }

    /// Generates from a user prompt (see [`Generator::generate_prompt`]).
    pub fn generate(
        &mut self,
        prompt: &str,
        params: &GenerateParams,
        on_text: impl FnMut(&str) -> bool,
    ) -> Result<Generation> {
        self.generate_prompt(&Prompt::User(prompt.to_string()), params, on_text)
    }

    /// Generates from `prompt`, calling `on_text` with each new piece of text as soon as it
    /// decodes (never a piece of a stop string); `on_text` returning `false` cancels (the tokens
    /// so far are returned).
    pub fn generate_prompt(
        &mut self,
        prompt: &Prompt,
        params: &GenerateParams,
        mut on_text: impl FnMut(&str) -> bool,
    ) -> Result<Generation> {
        let name = self.name.clone();
        let c = error::candle(&name);
        let t = error::tokenizer(&name);
        // Raw text brings its own special tokens; templated text gets the tokenizer's.
        let encoding = self
            .tokenizer
            .encode(self.input_text(prompt), true)
            .map_err(&t)?;
        let prompt_ids = encoding.get_ids().to_vec();
        if prompt_ids.is_empty() {
            return Err(Error::Tokenizer {
                model: name.clone(),
                detail: "the prompt encodes to no tokens".to_string(),
            });
        }
        let total = prompt_ids.len() + params.max_tokens as usize;
        if total > MAX_SEQ_LEN {
            return Err(Error::OverLimit {
                job: String::new(),
                what: "prompt plus max tokens",
                got: total as u64,
                limit: MAX_SEQ_LEN as u64,
            });
        }
        let sampling = match params.top_p {
            _ if params.temperature <= 0.0 => Sampling::ArgMax,
            Some(p) if p < 1.0 => Sampling::TopP {
                p: f64::from(p),
                temperature: f64::from(params.temperature),
            },
            _ => Sampling::All {
                temperature: f64::from(params.temperature),
            },
        };
        let mut sampler = LogitsProcessor::from_sampling(params.seed, sampling);
        let mut tokens = Vec::new();
        let mut emitted = 0usize;
        let mut text = String::new();
        let mut input = prompt_ids.clone();
        let mut pos = 0usize;
        let mut finish = Finish::Length;
        self.weights.clear_kv_cache();
        for _ in 0..params.max_tokens {
            let x = Tensor::new(input.as_slice(), &self.device)
                .and_then(|x| x.unsqueeze(0))
                .map_err(&c)?;
            let logits = self
                .weights
                .forward(&x, pos)
                .and_then(|l| l.squeeze(0))
                .map_err(&c)?;
            pos += input.len();
            let next = sampler.sample(&logits).map_err(&c)?;
            if self.stop_tokens.contains(&next) {
                finish = Finish::Stop;
                break;
            }
            tokens.push(next);
            input = vec![next];
            // Decode everything so far and emit what is new once it ends on a whole character
            // and cannot be the start of a stop string.
            let so_far = self.tokenizer.decode(&tokens, true).map_err(&t)?;
            if so_far.ends_with('\u{fffd}') {
                text = so_far;
                continue;
            }
            let (shown, stopped) = match scan_stop(&so_far, &params.stop) {
                StopScan::Hit(at) => (at, true),
                StopScan::Safe(n) => (n, false),
            };
            if let Some(piece) = so_far.get(emitted..shown)
                && !piece.is_empty()
            {
                if !on_text(piece) {
                    text = so_far;
                    emitted = text.len();
                    finish = Finish::Stop;
                    break;
                }
                emitted = shown;
            }
            text = so_far;
            if stopped {
                text.truncate(shown);
                finish = Finish::Stop;
                break;
            }
        }
        if let Some(rest) = text.get(emitted..)
            && !rest.is_empty()
        {
            on_text(rest);
        }
        Ok(Generation {
            tokens,
            text,
            prompt_tokens: prompt_ids.len() as u32,
            finish,
        })
    }
}

/// A generation model's tokenizer alone, read from its GGUF file's metadata (the weights are not
/// read): what a requester needs to turn an operator's tokens into text itself rather than trust
/// the text the operator sent along.
#[derive(Clone)]
pub struct Detokenizer {
    name: String,
    tokenizer: Tokenizer,
    parameters: u64,
}

/// The parameter count of a GGUF model: the element counts of its tensors, summed (read from
/// the tensor infos of the header, whatever their quantization). A credit receipt prices a token
/// of the model at 2 × this many FLOPs (spec/credits.md, "Rate card").
pub fn gguf_parameters(content: &gguf_file::Content) -> u64 {
    content
        .tensor_infos
        .values()
        .map(|t| t.shape.dims().iter().map(|&d| d as u64).product::<u64>())
        .fold(0u64, u64::saturating_add)
}

impl std::fmt::Debug for Detokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detokenizer")
            .field("name", &self.name)
            .finish()
    }
}

impl Detokenizer {
    /// Reads the tokenizer of the GGUF file at `path` (header and metadata only).
    pub fn load(name: &str, path: &std::path::Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut reader = std::io::BufReader::new(file);
        let c = error::candle(name);
        let content = gguf_file::Content::read(&mut reader).map_err(&c)?;
        let tokenizer = Tokenizer::from_gguf(&content).map_err(&c)?;
        Ok(Self {
            name: name.to_string(),
            tokenizer,
            parameters: gguf_parameters(&content),
        })
    }

    /// The model's parameter count ([`gguf_parameters`]).
    pub fn parameters(&self) -> u64 {
        self.parameters
    }

    /// The tokens of `texts` (a prompt, the messages of a chat) without the chat template's own:
    /// a lower bound, counted by the requester, of the prompt tokens an operator processes.
    pub fn count_tokens<'a>(&self, texts: impl IntoIterator<Item = &'a str>) -> u64 {
        texts
            .into_iter()
            .filter_map(|t| self.tokenizer.encode(t, false).ok())
            .map(|e| e.len() as u64)
            .sum()
    }

    /// The text of `tokens` as [`Generator::generate_prompt`] produces it, in the pieces it
    /// streams them (each ends on a whole character and is never part of a stop string): the
    /// generated text is their concatenation, cut before the first of `stop`.
    pub fn pieces(&self, tokens: &[u32], stop: &[String]) -> Result<Vec<String>> {
        let t = error::tokenizer(&self.name);
        let mut pieces = Vec::new();
        let mut emitted = 0usize;
        let mut text = String::new();
        for i in 1..=tokens.len() {
            let so_far = self.tokenizer.decode(&tokens[..i], true).map_err(&t)?;
            if so_far.ends_with('\u{fffd}') {
                text = so_far;
                continue;
            }
            let (shown, stopped) = match scan_stop(&so_far, stop) {
                StopScan::Hit(at) => (at, true),
                StopScan::Safe(n) => (n, false),
            };
            if let Some(piece) = so_far.get(emitted..shown)
                && !piece.is_empty()
            {
                pieces.push(piece.to_string());
                emitted = shown;
            }
            text = so_far;
            if stopped {
                text.truncate(shown);
                break;
            }
        }
        if let Some(rest) = text.get(emitted..)
            && !rest.is_empty()
        {
            pieces.push(rest.to_string());
        }
        Ok(pieces)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::GgmlDType;

    #[test]
    fn parameters_are_the_tensor_elements_summed() {
        let info = |dims: &[usize], dtype| gguf_file::TensorInfo {
            ggml_dtype: dtype,
            shape: dims.into(),
            offset: 0,
        };
        let content = gguf_file::Content {
            magic: gguf_file::VersionedMagic::GgufV3,
            metadata: Default::default(),
            tensor_infos: [
                ("token_embd.weight", info(&[1000, 64], GgmlDType::Q4_1)),
                ("blk.0.attn_q.weight", info(&[64, 64], GgmlDType::Q8_0)),
                ("output_norm.weight", info(&[64], GgmlDType::F32)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            tensor_data_offset: 0,
        };
        assert_eq!(gguf_parameters(&content), 64_000 + 4096 + 64);
    }
}
