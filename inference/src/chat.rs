//! Prompts and chat templates: what a generation job feeds its model, and where it stops.
//!
//! A chat ([`Prompt::Chat`]) is rendered with the model's own Jinja chat template, the
//! `tokenizer.chat_template` string of its GGUF, by MiniJinja (with Python-style string methods
//! and `raise_exception`, which Hugging Face templates use), with a fuel limit since the template
//! comes from the model's publisher. A model without a template, or whose template fails to
//! render, gets ChatML. Pure functions: no I/O.

use minijinja::{Environment, ErrorKind, Value};
use warren_protocol::inference::ChatMessage;

/// Instructions a chat template may run per render (a template from a stranger's file must not
/// spin for long).
pub const TEMPLATE_FUEL: u64 = 2_000_000;

/// What a generation job asks the model to continue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prompt {
    /// One user message: wrapped in ChatML when the model declares a ChatML template, else fed
    /// as it is (what `warren infer` sends).
    User(String),
    /// Fed to the model as it is (OpenAI's `/completions`).
    Raw(String),
    /// A conversation, rendered with the model's chat template.
    Chat(Vec<ChatMessage>),
}

impl Prompt {
    /// Bytes of text the caller sent (message contents together for a chat).
    pub fn len(&self) -> usize {
        match self {
            Prompt::User(p) | Prompt::Raw(p) => p.len(),
            Prompt::Chat(m) => m.iter().map(|m| m.content.len()).sum(),
        }
    }

    /// Whether there is no text at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The ChatML rendering of a chat, ending with the assistant's open turn.
pub fn chatml(messages: &[ChatMessage]) -> String {
    let mut out = String::new();
    for m in messages {
        out.push_str("<|im_start|>");
        out.push_str(&m.role);
        out.push('\n');
        out.push_str(&m.content);
        out.push_str("<|im_end|>\n");
    }
    out.push_str("<|im_start|>assistant\n");
    out
}

/// The template's variables.
fn context(messages: &[ChatMessage], bos_token: &str, eos_token: &str) -> Value {
    let messages: Vec<Value> = messages
        .iter()
        .map(|m| {
            Value::from_pairs([
                ("role", Value::from(m.role.as_str())),
                ("content", Value::from(m.content.as_str())),
            ])
        })
        .collect();
    Value::from_pairs([
        ("messages", Value::from(messages)),
        ("add_generation_prompt", Value::from(true)),
        ("bos_token", Value::from(bos_token)),
        ("eos_token", Value::from(eos_token)),
    ])
}

/// Renders `messages` with a Jinja chat `template` (variables `messages`,
/// `add_generation_prompt = true`, `bos_token`, `eos_token`).
pub fn render_template(
    template: &str,
    messages: &[ChatMessage],
    bos_token: &str,
    eos_token: &str,
) -> Result<String, minijinja::Error> {
    let mut env = Environment::new();
    env.set_fuel(Some(TEMPLATE_FUEL));
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |msg: String| -> Result<String, _> {
        Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
    });
    env.render_str(template, context(messages, bos_token, eos_token))
}

/// The text for a chat: the model's template when it has one that renders, else ChatML. The
/// `bool` says whether the model's template was used.
pub fn render_chat(
    template: Option<&str>,
    messages: &[ChatMessage],
    bos_token: &str,
    eos_token: &str,
) -> (String, bool) {
    if let Some(t) = template
        && let Ok(text) = render_template(t, messages, bos_token, eos_token)
    {
        return (text, true);
    }
    (chatml(messages), false)
}

/// Where the text generated so far stands against the stop strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopScan {
    /// A stop string starts at this byte: the answer is the text before it.
    Hit(usize),
    /// No stop string yet; the first this many bytes can be shown (what follows could be the
    /// start of one).
    Safe(usize),
}

/// Scans `text` for the earliest of `stops`.
pub fn scan_stop(text: &str, stops: &[String]) -> StopScan {
    let hit = stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min();
    if let Some(at) = hit {
        return StopScan::Hit(at);
    }
    // Hold back the longest tail of `text` that is the beginning of a stop string.
    let mut safe = text.len();
    for s in stops.iter().filter(|s| !s.is_empty()) {
        let longest = s.len().saturating_sub(1).min(text.len());
        for n in (1..=longest).rev() {
            let at = text.len() - n;
            if text.is_char_boundary(at) && s.as_bytes().starts_with(&text.as_bytes()[at..]) {
                safe = safe.min(at);
                break;
            }
        }
    }
    StopScan::Safe(safe)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(role: &str, content: &str) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    /// SmolLM2-135M-Instruct's template, as its GGUF carries it.
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn renders_a_real_template() {
        let chat = [
            m("system", "Be brief."),
            m("user", "Hi"),
            m("assistant", "Hello."),
            m("user", "Capital of France?"),
        ];
        let (text, used) = render_chat(Some(SMOLLM2), &chat, "", "");
        assert!(used);
        assert_eq!(
            text,
            chatml(&chat),
            "SmolLM2's template is ChatML when a system message is given"
        );
        let (text, _) = render_chat(Some(SMOLLM2), &chat[1..2], "", "");
        assert_eq!(
            text,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn python_methods_and_exceptions_work_and_bad_templates_fall_back() {
        let t = "{{ bos_token }}{% for m in messages %}{% if m.role == 'tool' %}{{ raise_exception('no tools') }}{% endif %}[{{ m.role.upper() }}] {{ m.content.strip() }}\n{% endfor %}";
        let (text, used) = render_chat(Some(t), &[m("user", "  hi  ")], "<s>", "</s>");
        assert!(used);
        assert_eq!(text, "<s>[USER] hi\n");
        let err = render_template(t, &[m("tool", "x")], "", "").unwrap_err();
        assert!(err.to_string().contains("no tools"), "{err}");
        let (text, used) = render_chat(Some(t), &[m("tool", "x")], "", "");
        assert!(!used);
        assert_eq!(text, chatml(&[m("tool", "x")]));
        assert!(!render_chat(Some("{% for"), &[m("user", "x")], "", "").1);
        assert!(!render_chat(None, &[m("user", "x")], "", "").1);
    }

    #[test]
    fn a_spinning_template_runs_out_of_fuel() {
        let t = "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}";
        assert!(render_template(t, &[m("user", "x")], "", "").is_err());
    }

    #[test]
    fn stop_strings_are_found_and_held_back() {
        let stops = vec!["\n\n".to_string(), "END".to_string()];
        assert_eq!(scan_stop("hello", &stops), StopScan::Safe(5));
        assert_eq!(scan_stop("hello\n", &stops), StopScan::Safe(5));
        assert_eq!(scan_stop("hello E", &stops), StopScan::Safe(6));
        assert_eq!(scan_stop("hello EN", &stops), StopScan::Safe(6));
        assert_eq!(scan_stop("hello END more", &stops), StopScan::Hit(6));
        assert_eq!(scan_stop("a\n\nb END", &stops), StopScan::Hit(1));
        assert_eq!(scan_stop("héll", &["llx".to_string()]), StopScan::Safe(3));
        assert_eq!(scan_stop("anything", &[]), StopScan::Safe(8));
        assert_eq!(scan_stop("é", &["é!".to_string()]), StopScan::Safe(0));
    }

    #[test]
    fn prompt_lengths() {
        assert_eq!(
            Prompt::Chat(vec![m("user", "ab"), m("assistant", "c")]).len(),
            3
        );
        assert!(Prompt::Raw(String::new()).is_empty());
    }
}
