//! Chant lines for `POST /api/v1/chant` (SPEC.md §4): one dramatic incantation
//! per call, from Gemini when a key is configured and its answer passes the
//! rules, otherwise from the built-in generator. The endpoint never fails and
//! never waits longer than the configured timeout.
//!
//! One [`Chanter`] lives on each executor. A backend call runs on glommio's
//! blocking thread pool (ureq is blocking) and is raced against a glommio
//! timer, so the executor thread is never blocked. At most
//! [`MAX_BACKEND_CALLS_IN_FLIGHT`] calls per core may be unfinished at once;
//! further requests get the built-in line at once rather than queueing behind
//! a slow model.

pub mod gemini;
pub mod generator;
pub mod groups;
pub mod rules;

use std::cell::{Cell, RefCell};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::menu::{self, MenuIndex};
use gemini::GeminiClient;
use generator::Generator;

/// Backend calls per core that may be unfinished at once. A call counts until
/// its blocking work ends, even after its request gave up waiting, so a hung
/// model cannot pile up work on the blocking pool.
pub const MAX_BACKEND_CALLS_IN_FLIGHT: usize = 8;

/// Where chant lines come from.
#[derive(Clone, PartialEq, Eq)]
pub struct ChantConfig {
    /// Gemini API key; `None` (or empty) serves only built-in lines.
    pub gemini_api_key: Option<String>,
    /// Base URL of the Gemini API, without the `/v1beta/...` path.
    pub gemini_url: String,
    /// Model name, placed in the request path.
    pub gemini_model: String,
    /// How long a request waits for the model before serving a built-in line.
    pub timeout_ms: u64,
}

impl Default for ChantConfig {
    fn default() -> Self {
        Self {
            gemini_api_key: None,
            gemini_url: "https://generativelanguage.googleapis.com".to_owned(),
            gemini_model: "gemini-2.5-flash".to_owned(),
            timeout_ms: 3_000,
        }
    }
}

impl fmt::Debug for ChantConfig {
    /// Says whether a key is set, never what it is, so the config can be logged.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = self.gemini_api_key.as_ref().map(|_| "<redacted>");
        f.debug_struct("ChantConfig")
            .field("gemini_api_key", &key)
            .field("gemini_url", &self.gemini_url)
            .field("gemini_model", &self.gemini_model)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// The configured language model and how long to wait for it.
#[derive(Debug)]
struct Backend {
    client: Arc<GeminiClient>,
    timeout: Duration,
}

/// Decrements the in-flight count when a backend call's blocking work ends,
/// however it ends.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves chant lines on one executor.
#[derive(Debug)]
pub struct Chanter {
    generator: RefCell<Generator>,
    backend: Option<Backend>,
    /// Shared with the blocking threads, which end the calls.
    backend_calls_in_flight: Arc<AtomicUsize>,
    fallbacks: Cell<u64>,
    backend_successes: Cell<u64>,
}

impl Chanter {
    /// A chanter whose built-in lines follow `seed`; give each core its own.
    pub fn new(config: ChantConfig, seed: u64) -> Self {
        let timeout = Duration::from_millis(config.timeout_ms);
        let backend = config
            .gemini_api_key
            .filter(|key| !key.is_empty())
            .map(|key| Backend {
                client: Arc::new(GeminiClient::new(
                    &config.gemini_url,
                    &config.gemini_model,
                    key,
                    timeout,
                )),
                timeout,
            });
        Self {
            generator: RefCell::new(Generator::new(seed)),
            backend,
            backend_calls_in_flight: Arc::new(AtomicUsize::new(0)),
            fallbacks: Cell::new(0),
            backend_successes: Cell::new(0),
        }
    }

    /// Never fails: the backend's line when configured and valid, else the built-in one.
    pub async fn line(&self, menu: MenuIndex) -> String {
        self.line_or(menu, || self.builtin(menu)).await
    }

    /// The line of one lobby group: the backend's when configured and valid, else the
    /// built-in generator's line for `group_seed` (the same on every core).
    pub async fn group_line(&self, menu: MenuIndex, group_seed: u64) -> String {
        self.line_or(menu, || Generator::new(group_seed).line(menu))
            .await
    }

    async fn line_or(&self, menu: MenuIndex, builtin: impl FnOnce() -> String) -> String {
        let Some(backend) = &self.backend else {
            return builtin();
        };
        match self.ask_backend(backend, menu).await {
            Ok(line) => {
                self.backend_successes.set(self.backend_successes.get() + 1);
                line
            }
            Err(reason) => {
                log::debug!("chant backend not used for item {menu}: {reason}");
                self.fallbacks.set(self.fallbacks.get() + 1);
                builtin()
            }
        }
    }

    /// Requests served a built-in line although a backend is configured:
    /// failures, timeouts, answers breaking the rules, and calls refused for
    /// too many in flight.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.get()
    }

    /// Requests served the backend's line.
    pub fn backend_successes(&self) -> u64 {
        self.backend_successes.get()
    }

    fn builtin(&self, menu: MenuIndex) -> String {
        self.generator.borrow_mut().line(menu)
    }

    /// The backend's answer, trimmed and checked, or why there is none.
    async fn ask_backend(&self, backend: &Backend, menu: MenuIndex) -> Result<String, String> {
        let in_flight = self.backend_calls_in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlight(Arc::clone(&self.backend_calls_in_flight));
        if in_flight >= MAX_BACKEND_CALLS_IN_FLIGHT {
            return Err(format!("{in_flight} calls already in flight"));
        }
        let client = Arc::clone(&backend.client);
        let item = menu::item(menu);
        let deadline = Instant::now() + backend.timeout;
        let call = glommio::executor().spawn_blocking(move || {
            let _in_flight_until_done = guard;
            client.generate(item, deadline)
        });
        let answer = glommio::timer::timeout(backend.timeout, async move { Ok(call.await) })
            .await
            .map_err(|_| format!("no answer within {:?}", backend.timeout))?
            .map_err(|err| err.to_string())?;
        let line = answer.trim();
        rules::check_line(line, menu).map_err(|violation| format!("answer {violation}"))?;
        Ok(line.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::rc::Rc;
    use std::sync::mpsc;
    use std::thread;

    use glommio::LocalExecutorBuilder;
    use serde_json::{json, Value};

    use super::*;
    use crate::menu::MENU;

    const TEST_KEY: &str = "test-key-123";
    const TEST_MODEL: &str = "test-model";
    const TEST_TIMEOUT_MS: u64 = 300;
    /// How long the fake server keeps accepting: bounds every test's server thread.
    const SERVER_LIFETIME: Duration = Duration::from_secs(10);
    /// How long a hanging connection is held open without an answer.
    const HANG: Duration = Duration::from_secs(3);
    /// Far above the 300 ms timeout, far below "forever".
    const GENEROUS: Duration = Duration::from_secs(5);

    /// What the fake Gemini does with each request.
    #[derive(Clone)]
    enum Reply {
        Answer(&'static str),
        Status(u16),
        Hang,
    }

    /// One request as the fake server saw it.
    struct Seen {
        head: String,
        body: Value,
    }

    /// Serves `reply` on a loopback port until `SERVER_LIFETIME` has passed;
    /// returns its base URL and the requests it receives.
    fn fake_gemini(reply: Reply) -> (String, mpsc::Receiver<Seen>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (seen_tx, seen_rx) = mpsc::channel();
        thread::spawn(move || {
            let until = Instant::now() + SERVER_LIFETIME;
            while Instant::now() < until {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (reply, seen_tx) = (reply.clone(), seen_tx.clone());
                        thread::spawn(move || answer(stream, reply, seen_tx));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        (url, seen_rx)
    }

    fn answer(mut stream: TcpStream, reply: Reply, seen_tx: mpsc::Sender<Seen>) {
        stream.set_nonblocking(false).unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        let head_end = loop {
            if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        };
        let head = String::from_utf8_lossy(&request[..head_end]).to_lowercase();
        let body_len: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .map_or(0, |len| len.trim().parse().unwrap());
        while request.len() < head_end + body_len {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        let body = serde_json::from_slice(&request[head_end..head_end + body_len]).unwrap();
        let _ = seen_tx.send(Seen { head, body });
        let (status, body) = match reply {
            Reply::Answer(text) => (
                "200 OK",
                json!({"candidates": [{"content": {"parts": [{"text": text}], "role": "model"}}]}),
            ),
            Reply::Status(code) => (
                if code == 500 {
                    "500 Internal Server Error"
                } else {
                    "400 Bad Request"
                },
                json!({"error": {"code": code, "message": "fake failure"}}),
            ),
            Reply::Hang => {
                thread::sleep(HANG);
                return;
            }
        };
        let body = body.to_string();
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
    }

    fn chanter_for(url: &str) -> Chanter {
        let config = ChantConfig {
            gemini_api_key: Some(TEST_KEY.to_owned()),
            gemini_url: url.to_owned(),
            gemini_model: TEST_MODEL.to_owned(),
            timeout_ms: TEST_TIMEOUT_MS,
        };
        Chanter::new(config, 1)
    }

    fn on_executor<T: 'static>(test: impl std::future::Future<Output = T> + 'static) -> T {
        LocalExecutorBuilder::default().make().unwrap().run(test)
    }

    #[test]
    fn without_a_key_every_line_is_built_in() {
        on_executor(async {
            for key in [None, Some(String::new())] {
                let config = ChantConfig {
                    gemini_api_key: key,
                    ..ChantConfig::default()
                };
                let chanter = Chanter::new(config, 3);
                for menu in 0..MENU.len() as MenuIndex {
                    let line = chanter.line(menu).await;
                    assert_eq!(rules::check_line(&line, menu), Ok(()), "{line}");
                }
                assert_eq!((chanter.fallbacks(), chanter.backend_successes()), (0, 0));
            }
        });
    }

    #[test]
    fn a_valid_answer_is_served_trimmed_and_the_request_is_well_formed() {
        let answer = "  技育展の蒼き波動よ、ブルーハワイの氷となりて降臨せよ！\n";
        let (url, seen) = fake_gemini(Reply::Answer(answer));
        let chanter = on_executor(async move {
            let chanter = chanter_for(&url);
            assert_eq!(chanter.line(2).await, answer.trim());
            chanter
        });
        assert_eq!((chanter.backend_successes(), chanter.fallbacks()), (1, 0));

        let request = seen.recv_timeout(GENEROUS).unwrap();
        let request_line = request.head.lines().next().unwrap();
        assert_eq!(
            request_line,
            format!("post /v1beta/models/{TEST_MODEL}:generatecontent http/1.1")
        );
        assert!(request
            .head
            .contains(&format!("\r\nx-goog-api-key: {TEST_KEY}\r\n")));
        let prompt = request.body["contents"][0]["parts"][0]["text"]
            .as_str()
            .unwrap();
        assert!(
            prompt.contains("技育展") && prompt.contains("ブルーハワイ"),
            "{prompt}"
        );
    }

    #[test]
    fn an_answer_breaking_the_rules_is_replaced_by_a_built_in_line() {
        let answer = "Behold! 技育祭のストロベリーよ、目覚めよ！";
        let (url, _seen) = fake_gemini(Reply::Answer(answer));
        let chanter = on_executor(async move {
            let chanter = chanter_for(&url);
            let line = chanter.line(0).await;
            assert_ne!(line, answer);
            assert_eq!(rules::check_line(&line, 0), Ok(()), "{line}");
            chanter
        });
        assert_eq!((chanter.backend_successes(), chanter.fallbacks()), (0, 1));
    }

    #[test]
    fn an_http_error_falls_back() {
        let (url, _seen) = fake_gemini(Reply::Status(500));
        let chanter = on_executor(async move {
            let chanter = chanter_for(&url);
            let line = chanter.line(1).await;
            assert_eq!(rules::check_line(&line, 1), Ok(()), "{line}");
            chanter
        });
        assert_eq!((chanter.backend_successes(), chanter.fallbacks()), (0, 1));
    }

    #[test]
    fn an_unreachable_backend_falls_back() {
        // Bound and dropped at once: nothing listens on the port any more.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let chanter = on_executor(async move {
            let chanter = chanter_for(&format!("http://127.0.0.1:{port}"));
            let line = chanter.line(3).await;
            assert_eq!(rules::check_line(&line, 3), Ok(()), "{line}");
            chanter
        });
        assert_eq!((chanter.backend_successes(), chanter.fallbacks()), (0, 1));
    }

    #[test]
    fn a_backend_that_never_answers_falls_back_after_the_timeout() {
        let (url, seen) = fake_gemini(Reply::Hang);
        let started = Instant::now();
        let chanter = on_executor(async move {
            let chanter = chanter_for(&url);
            let line = chanter.line(0).await;
            assert_eq!(rules::check_line(&line, 0), Ok(()), "{line}");
            chanter
        });
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(TEST_TIMEOUT_MS),
            "{waited:?}"
        );
        assert!(waited < GENEROUS, "{waited:?}");
        assert_eq!((chanter.backend_successes(), chanter.fallbacks()), (0, 1));
        assert!(
            seen.recv_timeout(GENEROUS).is_ok(),
            "the call never reached the server"
        );
    }

    #[test]
    fn beyond_the_in_flight_bound_the_built_in_line_is_served_at_once() {
        let (url, _seen) = fake_gemini(Reply::Hang);
        on_executor(async move {
            let chanter = Rc::new(chanter_for(&url));
            let finished = Rc::new(Cell::new(0));
            let waiting: Vec<_> = (0..MAX_BACKEND_CALLS_IN_FLIGHT)
                .map(|_| {
                    let (chanter, finished) = (Rc::clone(&chanter), Rc::clone(&finished));
                    glommio::spawn_local(async move {
                        chanter.line(0).await;
                        finished.set(finished.get() + 1);
                    })
                })
                .collect();
            // Lets every spawned call start and take its place in flight.
            glommio::timer::sleep(Duration::from_millis(20)).await;
            assert_eq!(
                chanter.backend_calls_in_flight.load(Ordering::Acquire),
                MAX_BACKEND_CALLS_IN_FLIGHT
            );

            let line = chanter.line(0).await;
            assert_eq!(rules::check_line(&line, 0), Ok(()), "{line}");
            assert_eq!(finished.get(), 0, "the refused call waited for the others");
            assert_eq!(chanter.fallbacks(), 1);

            for call in waiting {
                call.await;
            }
            assert_eq!(chanter.fallbacks(), 1 + MAX_BACKEND_CALLS_IN_FLIGHT as u64);

            // Calls count until their blocking work ends, which ureq's own
            // timeout bounds.
            let until = Instant::now() + GENEROUS;
            while chanter.backend_calls_in_flight.load(Ordering::Acquire) > 0 {
                assert!(Instant::now() < until, "blocking calls never finished");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        });
    }

    #[test]
    fn config_debug_output_leaves_the_key_out() {
        let config = ChantConfig {
            gemini_api_key: Some("secret-key".into()),
            ..ChantConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("secret-key") && shown.contains("redacted"),
            "{shown}"
        );
    }
}
