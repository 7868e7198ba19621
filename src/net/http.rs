//! One HTTP connection: read heads and bodies into a bounded buffer, answer every complete
//! request in it (pipelining), send the answers with one write, repeat. A WebSocket
//! upgrade leaves this loop with the socket and any bytes read past the handshake.

use super::admission::Admission;
use super::drain::Drain;
use crate::config::Config;
use crate::http::chunked::{self, ChunkedError};
use crate::http::request::{self, Framing, Head, HeadError, Method};
use crate::http::response::{self, Status};
use crate::http::route::{self, Route, WsKind};
use crate::metrics::{Endpoint, Metrics, Rejected};
use crate::ws::Joining;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Answers the REST requests of a connection.
// Futures here never leave their core (thread-per-core), so the auto-trait bounds that
// `async fn` in a public trait cannot state are never needed.
#[allow(async_fn_in_trait)]
pub trait Router {
    /// Answers one request whose method the route allows into `out`, and returns the
    /// status it answered with.
    async fn answer(
        &self,
        route: Route<'_>,
        head: &Head<'_, '_>,
        body: &[u8],
        out: &mut Vec<u8>,
    ) -> Status;
}

/// Size and time limits of a request; from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub head_timeout_ms: u64,
    pub head_bytes_max: usize,
    pub body_bytes_max: usize,
}

impl HttpLimits {
    pub fn from_config(config: &Config) -> HttpLimits {
        HttpLimits {
            head_timeout_ms: config.head_timeout_ms,
            head_bytes_max: config.head_bytes_max,
            body_bytes_max: config.body_bytes_max,
        }
    }
}

/// What every HTTP connection of a core shares.
pub struct HttpContext<R> {
    pub router: Rc<R>,
    pub admission: Rc<Admission>,
    pub metrics: Rc<Metrics>,
    pub drain: Rc<Drain>,
    pub limits: HttpLimits,
}

/// A connection's buffer starts this small and grows only for large heads or bodies.
const BUFFER_START_BYTES: usize = 1024;
/// Answers queued for a pipelining client are sent once they reach this size.
const OUT_FLUSH_BYTES: usize = 64 << 10;

/// What became of one request.
enum Step {
    /// Answered; `consumed` bytes of the buffer belonged to it.
    Answered { consumed: usize, close: bool },
    /// The buffer holds no complete request yet; `needed` is the size it must reach.
    NeedMore { needed: usize },
    /// The handshake was accepted; the connection now speaks WebSocket. `greeting` is the
    /// `101` response, sent by the room's home core once the client has joined, so that
    /// a client never hears "connected" before the room would include it.
    Upgrade {
        consumed: usize,
        kind: WsKind,
        room: String,
        greeting: Vec<u8>,
    },
}

/// A connection that is becoming a WebSocket.
struct Upgrade {
    consumed: usize,
    kind: WsKind,
    room: String,
    greeting: Vec<u8>,
}

struct Connection<R> {
    context: Rc<HttpContext<R>>,
    stream: TcpStream,
    buf: Vec<u8>,
    filled: usize,
    out: Vec<u8>,
    /// The client may still be sending bytes we will not read: drain before closing,
    /// so the kernel does not answer them with a reset that destroys our error response.
    linger: bool,
    /// The chunked body of the request at the start of the buffer, while it arrives.
    chunked: Option<ChunkedBody>,
}

/// A chunked body being decoded: `buf[head_len..]` holds the body decoded so far,
/// then raw bytes not yet decoded.
struct ChunkedBody {
    head_len: usize,
    decoder: chunked::Decoder,
}

/// Serves one accepted connection until it closes; returns the socket and its upgrade
/// when it became a WebSocket.
pub async fn serve<R: Router>(
    context: Rc<HttpContext<R>>,
    stream: TcpStream,
) -> Option<(TcpStream, Joining)> {
    let peer = stream.peer_addr().ok()?;
    let metrics = context.metrics.clone();
    let permit = match context.admission.admit(peer.ip()) {
        Ok(permit) => permit,
        Err(why) => {
            metrics.rejected(why);
            let mut out = Vec::new();
            response::error(
                &mut out,
                Status::ServiceUnavailable,
                "server is at its connection limit, try again later",
                true,
            );
            let mut stream = stream;
            let _ = stream.write_all(&out).await;
            return None;
        }
    };
    let _ = stream.set_nodelay(true);
    let timeout = Duration::from_millis(context.limits.head_timeout_ms);
    let _ = stream.set_write_timeout(Some(timeout));
    metrics.opened(Endpoint::Http);
    let mut connection = Connection {
        context,
        stream,
        buf: vec![0; BUFFER_START_BYTES],
        filled: 0,
        out: Vec::new(),
        linger: false,
        chunked: None,
    };
    let upgrade = connection.run().await;
    metrics.closed(Endpoint::Http);
    drop(permit);
    match upgrade {
        Ok(Some(Upgrade {
            consumed,
            kind,
            room,
            greeting,
        })) => {
            let Connection {
                stream,
                buf,
                filled,
                ..
            } = connection;
            let leftover = buf[consumed..filled].to_vec();
            // The head deadline must not follow the socket into its WebSocket life, where
            // silence is allowed up to the idle timeout.
            stream.set_read_timeout(None).ok()?;
            let joining = Joining {
                kind,
                room,
                greeting,
                leftover,
            };
            Some((stream, joining))
        }
        Ok(None) if connection.linger => {
            super::linger::linger(connection.stream).await;
            None
        }
        _ => None,
    }
}

impl<R: Router> Connection<R> {
    /// Runs until close; `Some` when the connection became a WebSocket.
    async fn run(&mut self) -> io::Result<Option<Upgrade>> {
        let timeout = Duration::from_millis(self.context.limits.head_timeout_ms);
        let mut deadline = Instant::now() + timeout;
        loop {
            match self.step().await {
                Step::Answered { consumed, close } => {
                    self.consume(consumed);
                    deadline = Instant::now() + timeout;
                    if close {
                        self.flush().await?;
                        return Ok(None);
                    }
                    if self.out.len() >= OUT_FLUSH_BYTES {
                        self.flush().await?;
                    }
                }
                Step::Upgrade {
                    consumed,
                    kind,
                    room,
                    greeting,
                } => {
                    self.flush().await?;
                    return Ok(Some(Upgrade {
                        consumed,
                        kind,
                        room,
                        greeting,
                    }));
                }
                Step::NeedMore { needed } => {
                    self.flush().await?;
                    if needed > self.buf.len() {
                        self.buf.resize(needed, 0);
                    } else if self.filled == 0 && self.buf.len() > BUFFER_START_BYTES {
                        // Between requests: give back what a large one needed.
                        self.buf = vec![0; BUFFER_START_BYTES];
                    }
                    let Some(remaining) = deadline
                        .checked_duration_since(Instant::now())
                        .filter(|d| !d.is_zero())
                    else {
                        return self.timed_out().await;
                    };
                    // Between requests, shutdown closes the connection (SPEC §5).
                    let idle = self.filled == 0;
                    if idle && self.context.drain.is_draining() {
                        return Ok(None);
                    }
                    self.stream.set_read_timeout(Some(remaining))?;
                    let read = self.stream.read(&mut self.buf[self.filled..]);
                    let read = if idle {
                        let drain = self.context.drain.wait();
                        let read = futures_lite::future::or(async { Some(read.await) }, async {
                            drain.await;
                            None
                        });
                        match read.await {
                            Some(read) => read,
                            None => return Ok(None),
                        }
                    } else {
                        read.await
                    };
                    match read {
                        Ok(0) => return Ok(None),
                        Ok(n) => self.filled += n,
                        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                            return self.timed_out().await
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }

    /// The head (or body) did not arrive in time: say so if a request had begun.
    async fn timed_out(&mut self) -> io::Result<Option<Upgrade>> {
        if self.filled > 0 {
            self.context.metrics.rejected(Rejected::HeadTimeout);
            response::error(
                &mut self.out,
                Status::RequestTimeout,
                "request not received in time",
                true,
            );
            self.flush().await?;
        }
        Ok(None)
    }

    fn consume(&mut self, consumed: usize) {
        self.buf.copy_within(consumed..self.filled, 0);
        self.filled -= consumed;
    }

    async fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            let result = self.stream.write_all(&self.out).await;
            self.out.clear();
            result?;
        }
        Ok(())
    }

    /// Decodes what has arrived of a chunked body in place: `Ok(Some(body_len))` once it
    /// is complete (the next request then follows the body in the buffer), `Ok(None)`
    /// while more must be read.
    fn decode_chunked(&mut self) -> Result<Option<usize>, ChunkedError> {
        let Some(body) = &mut self.chunked else {
            return Ok(None);
        };
        let head_len = body.head_len;
        let left = body
            .decoder
            .decode_in_place(&mut self.buf[head_len..self.filled])?;
        self.filled = head_len + left.len;
        if !left.done {
            return Ok(None);
        }
        let body_len = body.decoder.body_bytes();
        self.chunked = None;
        Ok(Some(body_len))
    }

    /// Parses and answers the first request in the buffer, if it is complete.
    async fn step(&mut self) -> Step {
        let started = Instant::now();
        let head_max = self.context.limits.head_bytes_max;
        let body_max = self.context.limits.body_bytes_max;
        let mut chunked_len = None;
        // Twice at most: a chunked body found in the head is decoded before the head is
        // looked at again (decoding moves bytes the head's fields would borrow).
        loop {
            if self.chunked.is_some() {
                match self.decode_chunked() {
                    Ok(Some(body_len)) => chunked_len = Some(body_len),
                    Ok(None) => {
                        // All of the input was taken in, so the buffer must grow to
                        // read more; it holds at most the head and the decoded body.
                        return Step::NeedMore {
                            needed: self.buf.len().max(self.filled + 1).next_power_of_two(),
                        };
                    }
                    Err(error) => {
                        self.chunked = None;
                        return match error {
                            ChunkedError::Malformed(why) => self.fail(Status::BadRequest, why),
                            ChunkedError::TooLarge => self.fail(
                                Status::PayloadTooLarge,
                                "request body is larger than the limit",
                            ),
                            ChunkedError::TrailersTooLarge => self.fail(
                                Status::HeadersTooLarge,
                                "request trailers are larger than the limit",
                            ),
                        };
                    }
                }
            }
            let data = &self.buf[..self.filled];
            let mut storage = request::header_storage();
            let mut head = match request::parse(data, &mut storage) {
                Ok(head) => head,
                Err(HeadError::Partial) => {
                    if self.filled >= head_max {
                        return self.fail(
                            Status::HeadersTooLarge,
                            "request head is larger than the limit",
                        );
                    }
                    return Step::NeedMore {
                        needed: (self.filled + 1).max(self.buf.len()).min(head_max),
                    };
                }
                Err(HeadError::TooManyHeaders) => {
                    return self.fail(Status::HeadersTooLarge, "too many header lines")
                }
                Err(HeadError::NotImplemented(why)) => {
                    return self.fail(Status::NotImplemented, why)
                }
                Err(HeadError::Malformed(why)) => return self.fail(Status::BadRequest, why),
            };
            if head.head_len > head_max {
                return self.fail(
                    Status::HeadersTooLarge,
                    "request head is larger than the limit",
                );
            }
            let body_len = match (head.framing, chunked_len) {
                (Framing::Length(length), _) => {
                    if length > body_max {
                        return self.fail(
                            Status::PayloadTooLarge,
                            "request body is larger than the limit",
                        );
                    }
                    if self.filled < head.head_len + length {
                        return Step::NeedMore {
                            needed: head.head_len + length,
                        };
                    }
                    length
                }
                (Framing::Chunked, Some(body_len)) => body_len,
                (Framing::Chunked, None) => {
                    // Trailers get a budget of their own, as large as a head's.
                    self.chunked = Some(ChunkedBody {
                        head_len: head.head_len,
                        decoder: chunked::Decoder::new(body_max, head_max),
                    });
                    continue;
                }
            };
            let total = head.head_len + body_len;
            // Shutting down: answer this request, then close.
            head.close |= self.context.drain.is_draining();
            let body = &data[head.head_len..total];
            return respond(&self.context, &mut self.out, &head, body, total, started).await;
        }
    }

    /// Answers an error after which the byte stream cannot be trusted, and closes.
    fn fail(&mut self, status: Status, message: &str) -> Step {
        response::error(&mut self.out, status, message, true);
        self.linger = true;
        self.context
            .metrics
            .http_request("invalid", status.code(), 0);
        Step::Answered {
            consumed: self.filled,
            close: true,
        }
    }
}

/// Routes a complete request and writes its answer; `total` bytes of the buffer were
/// the request.
async fn respond<R: Router>(
    context: &HttpContext<R>,
    out: &mut Vec<u8>,
    head: &request::Head<'_, '_>,
    body: &[u8],
    total: usize,
    started: Instant,
) -> Step {
    let close = head.close;
    let Some(route) = route::find(head.path) else {
        if head.method == Method::Options {
            response::preflight(out, close);
            context
                .metrics
                .http_request("preflight", 204, elapsed_us(started));
        } else {
            response::error(out, Status::NotFound, "no such path", close);
            context
                .metrics
                .http_request("unknown", 404, elapsed_us(started));
        }
        return Step::Answered {
            consumed: total,
            close,
        };
    };
    let status = if head.method == Method::Options {
        response::preflight(out, close);
        Status::NoContent
    } else if !route.allowed().contains(&head.method) {
        response::error_with_headers(
            out,
            Status::MethodNotAllowed,
            "method not allowed on this path",
            route.allow_header(),
            close,
        );
        Status::MethodNotAllowed
    } else if let Route::WebSocket(kind) = route {
        let answered_before = out.len();
        match crate::ws::upgrade::answer(kind, head, out) {
            Ok(room) => {
                context
                    .metrics
                    .http_request(route.label(), 101, elapsed_us(started));
                let greeting = out.split_off(answered_before);
                return Step::Upgrade {
                    consumed: total,
                    kind,
                    room,
                    greeting,
                };
            }
            Err(status) => status,
        }
    } else {
        context.router.answer(route, head, body, out).await
    };
    context
        .metrics
        .http_request(route.label(), status.code(), elapsed_us(started));
    Step::Answered {
        consumed: total,
        close,
    }
}

fn elapsed_us(started: Instant) -> u64 {
    started.elapsed().as_micros() as u64
}
