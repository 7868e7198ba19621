//! Client for Gemini's `generateContent` REST endpoint, the optional source of
//! chant lines (the original system asked Gemini for every line).
//!
//! Everything here blocks: [`GeminiClient::generate`] is meant to run on
//! glommio's blocking thread pool, never on an executor thread. Answers are
//! returned as the model wrote them; judging them is the caller's business.

use std::fmt;
use std::io::Read;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::menu::MenuItem;

/// Largest response body read; a `generateContent` answer for one short line
/// is a few KiB, and a misbehaving endpoint must not make us buffer without bound.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024;

/// Header carrying the API key, so it never appears in a URL or a log line.
const API_KEY_HEADER: &str = "x-goog-api-key";

/// Why no answer text came back.
#[derive(Debug)]
pub enum GeminiError {
    /// The call was still queued for a blocking thread when its deadline passed,
    /// so it was not made at all.
    DeadlinePassed,
    /// The endpoint answered with a status other than 200.
    Status(u16),
    /// Connecting, sending or receiving failed, or timed out.
    Transport(String),
    /// The body was not the JSON shape `generateContent` documents.
    Malformed(&'static str),
}

impl fmt::Display for GeminiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DeadlinePassed => write!(f, "deadline passed before the call started"),
            Self::Status(code) => write!(f, "HTTP status {code}"),
            Self::Transport(detail) => write!(f, "transport error: {detail}"),
            Self::Malformed(what) => write!(f, "malformed response: {what}"),
        }
    }
}

impl std::error::Error for GeminiError {}

/// A configured endpoint and key; cheap to share between threads.
pub struct GeminiClient {
    agent: ureq::Agent,
    endpoint: String,
    api_key: String,
}

impl fmt::Debug for GeminiClient {
    /// Leaves the key out, so the client can be logged.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeminiClient")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl GeminiClient {
    /// A client for `model` under `base_url` (e.g.
    /// `https://generativelanguage.googleapis.com`). `timeout` bounds
    /// connecting and each call as a whole, so a hung endpoint frees the
    /// blocking thread instead of holding it forever.
    pub fn new(base_url: &str, model: &str, api_key: String, timeout: Duration) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(timeout)
            .timeout(timeout)
            .build();
        Self {
            agent,
            endpoint: endpoint(base_url, model),
            api_key,
        }
    }

    /// Asks for one chant line for `item`, giving up at `deadline`. Returns the
    /// answer text untrimmed and unchecked.
    pub fn generate(&self, item: &MenuItem, deadline: Instant) -> Result<String, GeminiError> {
        let remaining = deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
            .ok_or(GeminiError::DeadlinePassed)?;
        let response = self
            .agent
            .post(&self.endpoint)
            .timeout(remaining)
            .set(API_KEY_HEADER, &self.api_key)
            .send_json(request_body(&prompt(item)));
        let response = match response {
            Ok(response) => response,
            Err(ureq::Error::Status(code, _)) => return Err(GeminiError::Status(code)),
            Err(ureq::Error::Transport(transport)) => {
                return Err(GeminiError::Transport(transport.to_string()))
            }
        };
        if response.status() != 200 {
            return Err(GeminiError::Status(response.status()));
        }
        let mut body = Vec::new();
        response
            .into_reader()
            .take(MAX_RESPONSE_BYTES)
            .read_to_end(&mut body)
            .map_err(|err| GeminiError::Transport(err.to_string()))?;
        let body: Value =
            serde_json::from_slice(&body).map_err(|_| GeminiError::Malformed("not JSON"))?;
        answer_text(&body).map(str::to_owned)
    }
}

/// `{base_url}/v1beta/models/{model}:generateContent`, tolerating a trailing
/// slash on the base URL.
pub fn endpoint(base_url: &str, model: &str) -> String {
    format!(
        "{}/v1beta/models/{model}:generateContent",
        base_url.trim_end_matches('/')
    )
}

/// The instruction sent to the model: the intent of the original system's
/// prompt, plus the rules its answer will be checked against, so that fewer
/// answers are thrown away.
pub fn prompt(item: &MenuItem) -> String {
    let MenuItem { event, flavour, .. } = item;
    format!(
        "{event}の{flavour}味のかき氷を注文するための、短くて劇的な中二病風の詠唱を一つだけ作ってください。\
         条件：日本語のみで書き、英字・数字・記号・絵文字は使わないこと。\
         「{event}」と「{flavour}」をそのままの表記で必ず含めること。\
         二十字以上四十字以下の一文を一行で書くこと。\
         最後は「せよ」「解き放て」「目覚めよ」のような力強い命令形で終え、「！」か「。」で締めること。\
         引用符、括弧、説明は付けず、詠唱の本文だけを出力すること。"
    )
}

/// `{"contents":[{"parts":[{"text": prompt}]}]}`.
pub fn request_body(prompt: &str) -> Value {
    json!({ "contents": [{ "parts": [{ "text": prompt }] }] })
}

/// `candidates[0].content.parts[0].text` of a `generateContent` response.
pub fn answer_text(body: &Value) -> Result<&str, GeminiError> {
    body.get("candidates")
        .and_then(|candidates| candidates.get(0))
        .ok_or(GeminiError::Malformed("no candidate"))?
        .get("content")
        .and_then(|content| content.get("parts"))
        .and_then(|parts| parts.get(0))
        .and_then(|part| part.get("text"))
        .and_then(Value::as_str)
        .ok_or(GeminiError::Malformed("candidate without text"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::menu::MENU;

    #[test]
    fn endpoint_puts_the_model_in_the_path() {
        assert_eq!(
            endpoint("https://generativelanguage.googleapis.com/", "gemini-2.5-flash"),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(
            endpoint("http://127.0.0.1:9", "m"),
            "http://127.0.0.1:9/v1beta/models/m:generateContent"
        );
    }

    #[test]
    fn prompt_names_the_event_and_flavour() {
        for item in &MENU {
            let prompt = prompt(item);
            assert!(prompt.contains(item.event) && prompt.contains(item.flavour));
            assert!(prompt.contains("中二病") && prompt.contains("詠唱"));
        }
    }

    #[test]
    fn request_body_has_the_documented_shape() {
        let body = request_body("唱えよ");
        assert_eq!(body["contents"][0]["parts"][0]["text"], "唱えよ");
    }

    #[test]
    fn answer_text_reads_the_first_part_of_the_first_candidate() {
        let body = json!({
            "candidates": [{
                "content": { "parts": [{ "text": "一つ目" }, { "text": "二つ目" }], "role": "model" },
                "finishReason": "STOP"
            }],
            "modelVersion": "gemini-2.5-flash"
        });
        assert_eq!(answer_text(&body).unwrap(), "一つ目");
    }

    #[test]
    fn answer_text_rejects_other_shapes() {
        for body in [
            json!({}),
            json!({ "candidates": [] }),
            json!({ "candidates": [{ "finishReason": "SAFETY" }] }),
            json!({ "candidates": [{ "content": { "parts": [] } }] }),
            json!({ "candidates": [{ "content": { "parts": [{ "text": 7 }] } }] }),
            json!({ "error": { "code": 400, "message": "API key not valid" } }),
        ] {
            assert!(
                matches!(answer_text(&body), Err(GeminiError::Malformed(_))),
                "{body}"
            );
        }
    }

    #[test]
    fn a_call_whose_deadline_passed_in_the_queue_is_not_made() {
        // Port 9 (discard) on loopback: were a connection attempted, the error
        // would be a transport error, not DeadlinePassed.
        let client = GeminiClient::new(
            "http://127.0.0.1:9",
            "m",
            "k".into(),
            Duration::from_secs(1),
        );
        let result = client.generate(&MENU[0], Instant::now());
        assert!(
            matches!(result, Err(GeminiError::DeadlinePassed)),
            "{result:?}"
        );
    }

    #[test]
    fn debug_output_leaves_the_key_out() {
        let client = GeminiClient::new(
            "http://127.0.0.1:9",
            "m",
            "secret-key".into(),
            Duration::from_secs(1),
        );
        assert!(!format!("{client:?}").contains("secret-key"));
    }
}
