//! One WebSocket on its home core. What the client sends arrives through the core's
//! receive ring ([`Inbound`]), which hands each buffer to the connection as it comes,
//! so an idle connection holds no read buffer; only the bytes of an unfinished frame
//! are kept. The connection's task does the writing, from two places: the slot's
//! outbox of personal frames, and the room's newest broadcast frame, which is shared
//! bytes written as-is (conflation: a client that fell behind skips straight to the
//! newest).

use super::admission::Permit;
use super::sockets::Sockets;
use crate::limits::{
    CLOSE_GOING_AWAY, CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR, CLOSE_TRY_AGAIN_LATER,
    WS_SEND_BUFFER_BYTES,
};
use crate::metrics::{Endpoint, Ignored, Metrics, Rejected};
use crate::ws::fanout::{Fanout, Registration};
use crate::ws::frame::{self, HeaderError, Opcode};
use crate::ws::inbound::{Inbound, Reader, Reading};
use crate::ws::message::{Event, Reassembler};
use crate::ws::slot::Slot;
use futures_lite::{AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;
use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

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
    /// The core's receive ring, through which every connection reads.
    pub inbound: Rc<Inbound>,
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

/// A connection's state, shared by its task (which writes) and the core's receive
/// ring (which reads).
struct Connection<M> {
    context: Rc<WsContext>,
    slot: Rc<Slot>,
    member: M,
    /// The start of a frame that has not fully arrived.
    partial: Vec<u8>,
    reassembler: Reassembler,
    /// Bytes of the slot's outbox already written.
    outbox_written: usize,
    /// A close frame is queued; no more input is acted on.
    closing: bool,
    /// The client closed its side or the socket failed: nothing more will be read.
    input_ended: bool,
    ending: Ending,
}

impl<M: Member> Connection<M> {
    fn new(context: Rc<WsContext>, slot: Rc<Slot>, member: M) -> Connection<M> {
        let reassembler = Reassembler::new(context.message_bytes_max);
        Connection {
            context,
            slot,
            member,
            partial: Vec::new(),
            reassembler,
            outbox_written: 0,
            closing: false,
            input_ended: false,
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

    /// Acts on every complete frame in what arrived, keeping the start of an
    /// unfinished one for the bytes that complete it.
    fn on_input(&mut self, bytes: &mut [u8]) {
        if self.closing {
            return;
        }
        self.slot.last_heard_ms.set(self.context.sockets.now_ms());
        if self.partial.is_empty() {
            let consumed = self.on_bytes(bytes);
            self.partial.extend_from_slice(&bytes[consumed..]);
            return;
        }
        let mut partial = std::mem::take(&mut self.partial);
        partial.extend_from_slice(bytes);
        let consumed = self.on_bytes(&mut partial);
        partial.drain(..consumed);
        if partial.is_empty() {
            // Split frames are rare: hold no memory between them.
            partial = Vec::new();
        }
        self.partial = partial;
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
    fn poll_output(
        &mut self,
        stream: &mut TcpStream,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        self.slot.take_socket_back();
        loop {
            let rest = self.slot.broadcast_rest().borrow_mut().take();
            if let Some((frame, offset)) = rest {
                match Pin::new(&mut *stream).poll_write(cx, &frame[offset..]) {
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
                    match Pin::new(&mut *stream).poll_write(cx, &outbox[self.outbox_written..]) {
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
                    self.slot.lend_socket(stream.as_raw_fd());
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

impl<M: Member> Reader for RefCell<Connection<M>> {
    fn on_bytes(&self, bytes: &mut [u8]) {
        let mut connection = self.borrow_mut();
        connection.on_input(bytes);
        if connection.closing {
            // A close frame to send: only the task writes.
            connection.slot.wake();
        }
    }

    fn on_end(&self) {
        let mut connection = self.borrow_mut();
        connection.input_ended = true;
        connection.slot.wake();
    }
}

/// A connection's task: all its writing, and noticing its end.
struct Task<M> {
    connection: Rc<RefCell<Connection<M>>>,
    stream: TcpStream,
}

impl<M: Member> Future for Task<M> {
    type Output = Ending;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Ending> {
        let this = self.get_mut();
        let mut connection = this.connection.borrow_mut();
        connection.slot.register(cx.waker());
        connection.on_notes();
        if connection.input_ended && !connection.closing {
            return Poll::Ready(Ending::ByClient);
        }
        match connection.poll_output(&mut this.stream, cx) {
            Poll::Ready(Ok(())) if connection.closing => {
                Poll::Ready(std::mem::replace(&mut connection.ending, Ending::ByClient))
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
    mut leftover: Vec<u8>,
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
    let socket = stream.as_raw_fd();
    let registration = context.fanout.register(socket);
    let connection = Rc::new(RefCell::new(Connection::new(context.clone(), slot, member)));
    if !leftover.is_empty() {
        connection.borrow_mut().on_input(&mut leftover);
    }
    let reading = context.inbound.start(socket, connection.clone());
    let task = Task { connection, stream };
    glommio::spawn_local(live(task, reading, registration, permit, endpoint)).detach();
}

/// The task of one WebSocket. It is most of what an idle WebSocket costs, so it holds
/// the connection, what ties its socket to the core's rings, and its permit, and
/// nothing else: nothing from the handshake, and the rare step after our close frame
/// (lingering) is boxed.
async fn live<M: Member>(
    mut task: Task<M>,
    reading: Reading,
    registration: Registration,
    permit: Permit,
    endpoint: Endpoint,
) {
    let ending = (&mut task).await;
    let Task { connection, stream } = task;
    // Both rings let go of the socket before it closes.
    drop(reading);
    drop(registration);
    let Connection {
        context,
        slot,
        member,
        ..
    } = Rc::into_inner(connection)
        .expect("the receive ring let go of the connection when its reading stopped")
        .into_inner();
    slot.take_socket_back();
    member.leave();
    context.sockets.drop_slot(&slot);
    context.metrics.closed(endpoint);
    drop(permit);
    if ending == Ending::ByServer {
        // After our close frame the client may still answer it.
        Box::pin(super::linger::linger(stream)).await;
    }
}
