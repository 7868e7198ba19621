//! One WebSocket on its home core: a hand-written future that reads and writes the same
//! socket in one task. Reads land in the core's shared scratch buffer, so an idle
//! connection holds no read buffer; only the bytes of an unfinished frame are kept.
//! Writes come from two places: the slot's outbox of personal frames, and the room's
//! newest broadcast frame, which is shared bytes written as-is (conflation: a client
//! that fell behind skips straight to the newest).

use super::admission::Permit;
use super::sockets::Sockets;
use crate::limits::{
    CLOSE_GOING_AWAY, CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR, CLOSE_TRY_AGAIN_LATER,
    WS_SEND_BUFFER_BYTES,
};
use crate::metrics::{Endpoint, Ignored, Metrics, Rejected};
use crate::ws::fanout::{Fanout, Registration};
use crate::ws::frame::{self, HeaderError, Opcode};
use crate::ws::message::{Event, Reassembler};
use crate::ws::slot::Slot;
use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;
use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

/// Reads per wake-up before the connection yields to its neighbours.
const READS_PER_POLL_MAX: usize = 8;

/// What a connection is a member of (a meter room, a lobby, a batch, a screen feed),
/// as the connection sees it.
pub trait Member: Unpin {
    /// A text message from the client.
    fn on_text(&mut self, text: &[u8]);

    /// Every ping interval: let go of what a quiet client no longer needs.
    fn on_heartbeat(&mut self) {}

    /// The newest shared broadcast this client has not been sent yet.
    fn newest_broadcast(&mut self) -> Option<Rc<[u8]>> {
        None
    }

    /// The connection is gone.
    fn leave(self);
}

/// What every WebSocket of a core shares.
pub struct WsContext {
    pub sockets: Rc<Sockets>,
    /// The core's broadcast ring, where each connection registers its socket.
    pub fanout: Rc<Fanout>,
    pub metrics: Rc<Metrics>,
    pub message_bytes_max: usize,
}

/// How a connection ended, which decides whether to wait for the client's close frame.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// The client closed (close frame answered, or EOF) or the socket failed.
    ByClient,
    /// We sent a close frame; the client may still answer it.
    ByServer,
}

struct Connection<M> {
    context: Rc<WsContext>,
    stream: TcpStream,
    /// Given back before the stream closes (the ring's table would hold it open).
    registration: Registration,
    slot: Rc<Slot>,
    member: M,
    /// The start of a frame that has not fully arrived.
    partial: Vec<u8>,
    reassembler: Reassembler,
    /// Bytes of the slot's outbox already written.
    outbox_written: usize,
    /// A close frame is queued; no more input is acted on.
    closing: bool,
    ending: Ending,
}

impl<M: Member> Connection<M> {
    fn new(
        context: Rc<WsContext>,
        stream: TcpStream,
        slot: Rc<Slot>,
        member: M,
        leftover: Vec<u8>,
    ) -> Connection<M> {
        let reassembler = Reassembler::new(context.message_bytes_max);
        let registration = context.fanout.register(stream.as_raw_fd());
        Connection {
            context,
            stream,
            registration,
            slot,
            member,
            partial: leftover,
            reassembler,
            outbox_written: 0,
            closing: false,
            ending: Ending::ByClient,
        }
    }

    /// Queues a close frame; after it is sent the connection ends.
    fn begin_close(&mut self, code: u16, reason: &str, ending: Ending) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.ending = ending;
        self.slot.take_socket_back();
        // The close frame is exempt from the outbox bound: it is the last thing sent.
        frame::encode_close(code, reason, &mut self.slot.outbox().borrow_mut());
    }

    /// Reads what the socket has and acts on every complete frame.
    fn poll_input(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        for _ in 0..READS_PER_POLL_MAX {
            if self.closing {
                return Poll::Pending;
            }
            let context = self.context.clone();
            let scratch_cell = context.sockets.scratch();
            let mut scratch = scratch_cell.borrow_mut();
            let kept = self.partial.len();
            scratch[..kept].copy_from_slice(&self.partial);
            let read = match Pin::new(&mut self.stream).poll_read(cx, &mut scratch[kept..]) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            };
            self.slot.last_heard_ms.set(context.sockets.now_ms());
            let consumed = self.on_bytes(&mut scratch[..kept + read]);
            let rest = &scratch[consumed..kept + read];
            self.partial.clear();
            if rest.is_empty() {
                if self.partial.capacity() > 0 {
                    self.partial = Vec::new();
                }
            } else {
                self.partial.extend_from_slice(rest);
            }
        }
        // More may be waiting: let the other connections run first.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Handles every complete frame in `buf`; returns how many bytes they took.
    fn on_bytes(&mut self, buf: &mut [u8]) -> usize {
        let mut pos = 0;
        while !self.closing {
            let header =
                match frame::parse_client_header(&buf[pos..], self.reassembler.max_message_bytes())
                {
                    Ok(header) => header,
                    Err(HeaderError::NeedMore) => break,
                    Err(e) => {
                        let code = e.close_code().unwrap_or(CLOSE_PROTOCOL_ERROR);
                        self.begin_close(code, e.reason(), Ending::ByServer);
                        break;
                    }
                };
            let end = pos + header.frame_len();
            if end > buf.len() {
                break;
            }
            let payload = &mut buf[pos + header.header_len..end];
            frame::unmask(payload, header.mask);
            match self.reassembler.push(&header, payload) {
                Ok(None) => {}
                Ok(Some(event)) => self.on_event(event),
                Err(e) => self.begin_close(e.code, e.reason, Ending::ByServer),
            }
            pos = end;
        }
        pos
    }

    fn on_event(&mut self, event: Event<'_>) {
        let metrics = &self.context.metrics;
        match event {
            Event::Text(text) => {
                metrics.ws_in();
                self.member.on_text(text.as_bytes());
            }
            Event::Binary(_) => {
                metrics.ws_in();
                metrics.ignored(Ignored::Unexpected);
            }
            Event::Ping(payload) => self.slot.push_frame(Opcode::Pong, payload),
            Event::Pong => {}
            Event::Close { code, .. } => {
                let reply = code.unwrap_or(CLOSE_NORMAL);
                self.begin_close(reply, "", Ending::ByClient);
            }
        }
    }

    /// Writes, in this order: the rest of a broadcast frame already begun (its bytes
    /// must stay together), personal frames, then the newest broadcast. Ready when
    /// nothing is left; then, unless closing, the socket is lent to the room, which
    /// writes the next broadcasts itself until there is something to queue again.
    fn poll_output(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.slot.take_socket_back();
        loop {
            let rest = self.slot.broadcast_rest().borrow_mut().take();
            if let Some((frame, offset)) = rest {
                match Pin::new(&mut self.stream).poll_write(cx, &frame[offset..]) {
                    Poll::Ready(Ok(n)) if offset + n == frame.len() => {
                        self.context.metrics.ws_out(1);
                    }
                    Poll::Ready(Ok(n)) => {
                        *self.slot.broadcast_rest().borrow_mut() = Some((frame, offset + n));
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        *self.slot.broadcast_rest().borrow_mut() = Some((frame, offset));
                        return Poll::Pending;
                    }
                }
                continue;
            }
            let outbox_cell = self.slot.outbox();
            let outbox_len = outbox_cell.borrow().len();
            if self.outbox_written < outbox_len {
                let written = {
                    let outbox = outbox_cell.borrow();
                    match Pin::new(&mut self.stream).poll_write(cx, &outbox[self.outbox_written..])
                    {
                        Poll::Ready(Ok(n)) => n,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return Poll::Pending,
                    }
                };
                self.outbox_written += written;
                if self.outbox_written == outbox_len {
                    self.context.metrics.ws_out(1);
                    self.outbox_written = 0;
                    // Personal frames are rare: hold no memory between them.
                    *outbox_cell.borrow_mut() = Vec::new();
                }
                continue;
            }
            if self.closing {
                return Poll::Ready(Ok(()));
            }
            match self.member.newest_broadcast() {
                Some(frame) => *self.slot.broadcast_rest().borrow_mut() = Some((frame, 0)),
                None => {
                    self.slot.lend_socket(self.stream.as_raw_fd());
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }

    /// Acts on what the room or the heartbeat sweep asked for.
    fn on_notes(&mut self) {
        let slot = &self.slot;
        if slot.overflowed() {
            // Not reading at all: nothing more can be delivered, not even a close frame.
            slot.take_socket_back();
            self.closing = true;
            self.ending = Ending::ByClient;
            slot.outbox().borrow_mut().clear();
            self.outbox_written = 0;
            return;
        }
        if slot.expired.get() {
            self.begin_close(CLOSE_GOING_AWAY, "idle timeout", Ending::ByServer);
        } else if let Some(code) = slot.close_code() {
            self.begin_close(code, "", Ending::ByServer);
        } else if slot.ping_due.replace(false) {
            slot.push_frame(Opcode::Ping, b"");
            self.member.on_heartbeat();
        }
    }
}

impl<M: Member> Future for Connection<M> {
    type Output = Ending;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Ending> {
        let this = self.get_mut();
        this.slot.register(cx.waker());
        this.on_notes();
        let input = this.poll_input(cx);
        match input {
            Poll::Ready(Ok(())) | Poll::Ready(Err(_)) if !this.closing => {
                return Poll::Ready(Ending::ByClient)
            }
            _ => {}
        }
        if this.slot.overflowed() && !this.closing {
            this.on_notes();
        }
        match this.poll_output(cx) {
            Poll::Ready(Ok(())) if this.closing => {
                Poll::Ready(std::mem::replace(&mut this.ending, Ending::ByClient))
            }
            Poll::Ready(Ok(())) => Poll::Pending,
            Poll::Ready(Err(_)) => Poll::Ready(Ending::ByClient),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Bounds what the kernel queues for a client that reads slowly (see
/// [`WS_SEND_BUFFER_BYTES`]). Without it, autotuning would let megabytes of averages
/// pile up per socket instead of conflating them.
fn bound_send_buffer(stream: &TcpStream) {
    let bytes = WS_SEND_BUFFER_BYTES as libc::c_int;
    // SAFETY: setsockopt reads an int of the given size from a valid pointer.
    let failed = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    } != 0;
    if failed {
        log::debug!(
            "cannot bound a WebSocket's send buffer: {}",
            io::Error::last_os_error()
        );
    }
}

/// Completes the handshake and closes at once, in a task of its own: a limit refused
/// the client.
pub fn refuse(metrics: &Metrics, mut stream: TcpStream, mut greeting: Vec<u8>, why: Rejected) {
    metrics.rejected(why);
    frame::encode_close(
        CLOSE_TRY_AGAIN_LATER,
        "server busy, try again later",
        &mut greeting,
    );
    glommio::spawn_local(async move {
        let _ = stream.write_all(&greeting).await;
    })
    .detach();
}

/// Starts the life of an admitted WebSocket on its room's home core. `join` puts the
/// client in its room first and only then does it hear the `greeting` (`101`), so
/// every broadcast after its handshake reaches it. Everything up to the join happens
/// here, at once; the connection then gets a task of its own.
pub fn serve<M: Member + 'static>(
    context: Rc<WsContext>,
    stream: TcpStream,
    permit: Permit,
    greeting: Vec<u8>,
    leftover: Vec<u8>,
    endpoint: Endpoint,
    join: impl FnOnce(&Rc<Slot>) -> Result<M, Rejected>,
) {
    bound_send_buffer(&stream);
    let slot = context.sockets.new_slot();
    slot.outbox().borrow_mut().extend_from_slice(&greeting);
    let member = match join(&slot) {
        Ok(member) => member,
        Err(why) => {
            context.sockets.drop_slot(&slot);
            return refuse(&context.metrics, stream, greeting, why);
        }
    };
    drop(greeting);
    context.metrics.opened(endpoint);
    let connection = Connection::new(context, stream, slot, member, leftover);
    glommio::spawn_local(live(connection, permit, endpoint)).detach();
}

/// The task of one WebSocket. It is most of what an idle WebSocket costs, so it holds
/// the connection and its permit and nothing else: nothing from the handshake, and
/// the rare step after our close frame (lingering) is boxed.
async fn live<M: Member>(mut connection: Connection<M>, permit: Permit, endpoint: Endpoint) {
    let ending = (&mut connection).await;
    let Connection {
        context,
        stream,
        registration,
        slot,
        member,
        ..
    } = connection;
    slot.take_socket_back();
    drop(registration);
    member.leave();
    context.sockets.drop_slot(&slot);
    context.metrics.closed(endpoint);
    drop(permit);
    if ending == Ending::ByServer {
        // After our close frame the client may still answer it.
        Box::pin(super::linger::linger(stream)).await;
    }
}
