//! What every scenario shares: the run context, preflight checks, a cheap
//! stop signal, and helpers that turn failures into violations or errors.

use std::cell::Cell;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use event_listener::{Event, EventListener};
use rand::rngs::SmallRng;
use rand::SeedableRng;

use crate::cli::Common;
use crate::http::{Client, HttpError, Response};
use crate::net::Target;
use crate::proto;
use crate::stats::Stats;
use crate::ws::{HsError, WsConn, WsError};

pub struct Ctx {
    pub target: Target,
    pub stats: Rc<Stats>,
    /// Random per run, e.g. `lt-3f9a12c0`; prefixes room names.
    pub run_id: String,
    pub timeout: Duration,
    pub duration: Duration,
    seed: u64,
    seq: Cell<u64>,
    seq_src: Cell<usize>,
}

impl Ctx {
    pub fn new(
        target: Target,
        common: &Common,
        duration_s: f64,
        stats: Rc<Stats>,
        seed: u64,
    ) -> Ctx {
        Ctx {
            target,
            stats,
            run_id: format!("lt-{:08x}", rand::random::<u32>()),
            timeout: Duration::from_secs_f64(common.timeout_s.max(0.001)),
            duration: Duration::from_secs_f64(duration_s),
            seed,
            seq: Cell::new(0),
            seq_src: Cell::new(0),
        }
    }

    /// A fresh deterministic-per-seed RNG for one task.
    pub fn rng(&self) -> SmallRng {
        let n = self.seq.get();
        self.seq.set(n + 1);
        SmallRng::seed_from_u64(self.seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    pub fn http(&self) -> Client {
        Client::new(&self.target, self.timeout)
    }

    /// Record a failed request: transport problems are errors, an unparseable
    /// response is a violation.
    pub fn http_failed(&self, what: &str, e: &HttpError) {
        match e {
            HttpError::Protocol(_) => self
                .stats
                .violation(&format!("{what}: malformed HTTP response"), || {
                    e.to_string()
                }),
            _ => self
                .stats
                .error(&format!("{what}: {}", e.kind()), || e.to_string()),
        }
    }

    pub fn ws_failed(&self, what: &str, at: &str, e: &WsError) {
        let d = || format!("{at}: {e}");
        match e {
            WsError::Protocol(_) => self
                .stats
                .violation(&format!("{what}: WebSocket protocol"), d),
            WsError::Eof => self
                .stats
                .error(&format!("{what}: dropped without close frame"), d),
            WsError::Timeout => self.stats.error(&format!("{what}: timeout"), d),
            WsError::Io(_) => self.stats.error(&format!("{what}: I/O"), d),
        }
    }

    /// Open a WebSocket, recording why if it fails.
    pub async fn ws(
        &self,
        what: &str,
        path: &str,
        src: Option<IpAddr>,
        buf: usize,
    ) -> Option<WsConn> {
        // Short-lived connections (lobby, confirm, festival) rotate over
        // 127.0.0.2..9 so TIME_WAIT ports never run out on one address pair.
        let src = src.or_else(|| {
            crate::net::is_v4_loopback(&self.target.addr).then(|| {
                let n = self.seq_src.get();
                self.seq_src.set(n.wrapping_add(1));
                crate::net::source_addr(n % 8)
            })
        });
        match WsConn::connect(&self.target, path, src, self.timeout, buf).await {
            Ok(c) => Some(c),
            Err(e) => {
                self.hs_failed(what, path, &e);
                None
            }
        }
    }

    pub fn hs_failed(&self, what: &str, path: &str, e: &HsError) {
        match e {
            HsError::Rejected(r) => self.stats.violation(
                &format!("{what}: upgrade refused with {}", r.status()),
                || format!("GET {path}: {} {}", r.status(), r.body_str()),
            ),
            HsError::Bad(s) => self.stats.violation(&format!("{what}: bad handshake"), || {
                format!("GET {path}: {s}")
            }),
            HsError::Timeout => self.stats.error(&format!("{what}: handshake timeout"), || {
                format!("GET {path}")
            }),
            HsError::Io(err) => self
                .stats
                .error(&format!("{what}: connect/handshake I/O"), || {
                    format!("GET {path}: {err}")
                }),
        }
    }

    /// A WebSocket upgrade that must be refused with `status` and an exact
    /// error body.
    pub async fn expect_ws_refused(&self, path: &str, status: u16, msg: &str) {
        match WsConn::connect(&self.target, path, None, self.timeout, 256).await {
            Ok(mut c) => {
                self.stats
                    .violation("upgrade accepted that must be refused", || {
                        format!("GET {path} was upgraded; want {status} {msg:?}")
                    });
                let _ = crate::net::timeout(Duration::from_secs(1), c.close(1000)).await;
            }
            Err(HsError::Rejected(r)) => {
                if let Err(e) = proto::error_response(&r, status, Some(msg)) {
                    self.stats
                        .violation("refused upgrade: wrong error response", || {
                            format!("GET {path}: {e}")
                        });
                }
            }
            Err(e) => self.hs_failed("refused upgrade", path, &e),
        }
    }

    /// Close `ws` with 1000 and wait for the server's echo; records why not
    /// under `what` (and returns false) when it does not come.
    pub async fn close_ws(&self, what: &str, at: &str, ws: &mut WsConn) -> bool {
        let detail = match crate::net::timeout(self.timeout, ws.close(1000)).await {
            Some(Ok(_)) => return true,
            Some(Err(WsError::Eof)) => {
                "server dropped the TCP connection instead of answering our close frame".into()
            }
            Some(Err(e)) => {
                self.ws_failed(&format!("{what} close"), at, &e);
                return false;
            }
            None => format!("no close frame within {:?} of ours", self.timeout),
        };
        self.stats
            .violation(&format!("{what}: close handshake not completed"), || {
                format!("{at}: {detail}")
            });
        false
    }

    /// Check a JSON response; on failure record a violation named `what`.
    pub fn check<T>(&self, what: &str, r: Result<T, String>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.stats.violation(what, || e);
                None
            }
        }
    }
}

/// Checks every scenario starts with: health endpoints and the menu.
/// Returns false when the server is not reachable at all.
pub async fn preflight(ctx: &Ctx) -> bool {
    let mut c = ctx.http();
    for path in ["/healthz", "/api/v1/healthz", "/ws/health"] {
        match c.request("GET", path, &[], None).await {
            Ok(r) => {
                let v = proto::json_response(&r, 200);
                match v {
                    Ok(v) if v == serde_json::json!({"status":"ok"}) => {}
                    Ok(v) => ctx
                        .stats
                        .violation("preflight: health body", || format!("GET {path}: {v}")),
                    Err(e) => ctx
                        .stats
                        .violation("preflight: health response", || format!("GET {path}: {e}")),
                }
            }
            Err(e) => {
                ctx.stats.error("preflight: server unreachable", || {
                    format!("GET {} {path}: {e}", ctx.target.url)
                });
                return false;
            }
        }
    }
    match c.request("GET", "/api/v1/stores/menu", &[], None).await {
        Ok(r) => {
            if let Err(e) = proto::json_response(&r, 200).and_then(|v| proto::check_menu(&v)) {
                ctx.stats.violation("preflight: menu", || e);
            }
        }
        Err(e) => ctx.http_failed("preflight: menu", &e),
    }
    true
}

/// Check a REST response, recording the violation under `what`.
pub fn check_json(ctx: &Ctx, what: &str, r: &Response, status: u16) -> Option<serde_json::Value> {
    ctx.check(what, proto::json_response(r, status))
}

/// A one-shot stop signal that thousands of connections race their reads
/// against.
pub struct Stop {
    fired: Cell<bool>,
    event: Event,
}

impl Stop {
    pub fn new() -> Rc<Stop> {
        Rc::new(Stop {
            fired: Cell::new(false),
            event: Event::new(),
        })
    }

    pub fn fire(&self) {
        self.fired.set(true);
        self.event.notify(usize::MAX);
    }

    pub fn fired(&self) -> bool {
        self.fired.get()
    }

    /// A future that resolves once fired. Made before looking at
    /// [`Stop::fired`], it misses no firing; a connection makes one and races
    /// it (`&mut`) against each of its reads.
    pub fn listen(&self) -> EventListener {
        self.event.listen()
    }
}

/// Sleep until `t` (no-op if past).
pub async fn sleep_until(t: Instant) {
    crate::net::sleep(t.saturating_duration_since(Instant::now())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_signal_wakes_all() {
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(128 << 10)
            .make()
            .unwrap();
        ex.run(async {
            let stop = Stop::new();
            let done = Rc::new(Cell::new(0));
            let mut tasks = Vec::new();
            for _ in 0..6 {
                let (s, d) = (stop.clone(), done.clone());
                tasks.push(glommio::spawn_local(async move {
                    let stopped = s.listen();
                    if !s.fired() {
                        stopped.await;
                    }
                    d.set(d.get() + 1);
                }));
            }
            crate::net::sleep(Duration::from_millis(5)).await;
            assert_eq!(done.get(), 0);
            stop.fire();
            for t in tasks {
                t.await;
            }
            assert_eq!(done.get(), 6);
            assert!(stop.fired());
        });
    }
}
