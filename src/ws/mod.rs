//! WebSockets (RFC 6455): the handshake, the frame codec, message reassembly, the
//! upgrade rules of SPEC.md §2, the [`slot::Slot`] through which a room talks to a
//! connection it never touches, and the core's two rings of its own: [`fanout`] writes
//! broadcasts, [`inbound`] receives what clients send. The connection loop is `net::ws`.

pub mod fanout;
pub mod frame;
pub mod handshake;
pub mod inbound;
pub mod message;
pub mod slot;
pub mod upgrade;

use crate::http::route::WsKind;

/// An accepted upgrade on its way to its room, possibly on another core.
#[derive(Debug)]
pub struct Joining {
    pub kind: WsKind,
    pub room: String,
    /// The `101 Switching Protocols` response, not yet sent: the room's home core sends
    /// it once the client has joined, so a client never hears "connected" before the
    /// room would include it.
    pub greeting: Vec<u8>,
    /// Bytes the client sent after its handshake that were already read.
    pub leftover: Vec<u8>,
}
