//! One WebSocket on its home core: a hand-written future that reads and writes the same
//! socket in one task. Reads land in the core's shared scratch buffer, so an idle
//! connection holds no read buffer; only the bytes of an unfinished frame are kept.
//! Writes come from two places: the slot's outbox of personal frames, and the room's
//! newest broadcast frame, which is shared bytes written as-is (conflation: a client
//! that fell behind skips straight to the newest).

use super::frame::{self, HeaderError, Opcode};
use super::message::{Event, Reassembler};
use super::role::Role;
use super::slot::Slot;
use crate::metrics::Ignored;
use crate::runtime::shard::Shard;
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

/// Reads per wake-up before the connection yields to its neighbours.
const READS_PER_POLL_MAX: usize = 8;

/// How a connection ended, which decides whether to wait for the client's close frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// The client closed (close frame answered, or EOF) or the socket failed.
    ByClient,
    /// We sent a close frame; the client may still answer it.
    ByServer,
}

pub struct Connection {
    shard: Rc<Shard>,
    stream: TcpStream,
    slot: Rc<Slot>,
    pub role: Role,
    /// The start of a frame that has not fully arrived.
    partial: Vec<u8>,
    reassembler: Reassembler,
    /// Bytes of the slot's outbox already written.
    outbox_written: usize,
    /// A broadcast frame being written, and how far.
    broadcast: Option<(Rc<[u8]>, usize)>,
    /// A close frame is queued; no more input is acted on.
    closing: bool,
    ending: Ending,
}

impl Connection {
    pub fn new(
        shard: Rc<Shard>,
        stream: TcpStream,
        slot: Rc<Slot>,
        role: Role,
        leftover: Vec<u8>,
    ) -> Connection {
        let reassembler = Reassembler::new(shard.config().ws_message_bytes_max);
        Connection {
            shard,
            stream,
            slot,
            role,
            partial: leftover,
            reassembler,
            outbox_written: 0,
            broadcast: None,
            closing: false,
            ending: Ending::ByClient,
        }
    }

    /// What is left once the connection ended: its role (to leave the room) and socket.
    pub fn into_parts(self) -> (Role, TcpStream) {
        (self.role, self.stream)
    }

    /// Queues a close frame; after it is sent the connection ends.
    fn begin_close(&mut self, code: u16, reason: &str, ending: Ending) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.ending = ending;
        // The close frame is exempt from the outbox bound: it is the last thing sent.
        frame::encode_close(code, reason, &mut self.slot.outbox().borrow_mut());
    }

    /// Reads what the socket has and acts on every complete frame.
    fn poll_input(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        for _ in 0..READS_PER_POLL_MAX {
            if self.closing {
                return Poll::Pending;
            }
            let shard = self.shard.clone();
            let scratch_cell = shard.ws.scratch();
            let mut scratch = scratch_cell.borrow_mut();
            let kept = self.partial.len();
            scratch[..kept].copy_from_slice(&self.partial);
            let read = match Pin::new(&mut self.stream).poll_read(cx, &mut scratch[kept..]) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            };
            self.slot.last_heard_ms.set(self.shard.ws.now_ms());
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
                        let code = e.close_code().unwrap_or(frame::CLOSE_PROTOCOL_ERROR);
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
        let metrics = &self.shard.metrics;
        match event {
            Event::Text(text) => {
                metrics.ws_in();
                self.role.on_text(&self.shard, &self.slot, text.as_bytes());
            }
            Event::Binary(_) => {
                metrics.ws_in();
                metrics.ignored(Ignored::Unexpected);
            }
            Event::Ping(payload) => self.slot.push_frame(Opcode::Pong, payload),
            Event::Pong => {}
            Event::Close { code, .. } => {
                let reply = code.unwrap_or(frame::CLOSE_NORMAL);
                self.begin_close(reply, "", Ending::ByClient);
            }
        }
    }

    /// Writes personal frames first, then the newest broadcast. Ready when nothing is left.
    fn poll_output(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
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
                    self.shard.metrics.ws_out(1);
                    self.outbox_written = 0;
                    // Personal frames are rare: hold no memory between them.
                    *outbox_cell.borrow_mut() = Vec::new();
                }
                continue;
            }
            if self.closing {
                return Poll::Ready(Ok(()));
            }
            if self.broadcast.is_none() {
                match self.role.newest_broadcast(&self.shard) {
                    Some(frame) => self.broadcast = Some((frame, 0)),
                    None => return Poll::Ready(Ok(())),
                }
            }
            let Some((frame, offset)) = &mut self.broadcast else {
                unreachable!()
            };
            match Pin::new(&mut self.stream).poll_write(cx, &frame[*offset..]) {
                Poll::Ready(Ok(n)) => {
                    *offset += n;
                    if *offset == frame.len() {
                        self.broadcast = None;
                        self.shard.metrics.ws_out(1);
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Acts on what the room or the heartbeat sweep asked for.
    fn on_notes(&mut self) {
        let slot = &self.slot;
        if slot.overflowed() {
            // Not reading at all: nothing more can be delivered, not even a close frame.
            self.closing = true;
            self.ending = Ending::ByClient;
            slot.outbox().borrow_mut().clear();
            self.outbox_written = 0;
            return;
        }
        if slot.expired.get() {
            self.begin_close(frame::CLOSE_GOING_AWAY, "idle timeout", Ending::ByServer);
        } else if let Some(code) = slot.close_code() {
            self.begin_close(code, "", Ending::ByServer);
        } else if slot.ping_due.replace(false) {
            slot.push_frame(Opcode::Ping, b"");
            self.role.on_heartbeat(&self.shard);
        }
    }
}

impl Future for Connection {
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
