//! WebSockets (RFC 6455) for `/ws`, `/ws/stay` and `/ws/confirm`: the handshake, the
//! frame codec, and the life of a connection on its room's home core.

pub mod conn;
pub mod frame;
pub mod handshake;
pub mod message;
pub mod registry;
pub mod role;
pub mod slot;
pub mod upgrade;

use crate::http::route::WsKind;
use crate::metrics::{Endpoint, Rejected};
use crate::runtime::mesh::Handoff;
use crate::runtime::shard::Shard;
use crate::screens::live as screens;
use conn::{Connection, Ending};
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use role::Role;
use std::os::fd::{AsRawFd, FromRawFd};
use std::rc::Rc;

/// Close code for "try again later": a limit refused the connection.
pub const CLOSE_TRY_AGAIN_LATER: u16 = 1013;

/// The core a room lives on: a stable hash (FNV-1a) of endpoint and name. The screens'
/// feeds live with the journal, which tells them about every order change.
pub fn home_core(kind: WsKind, room: &str, cores: usize) -> usize {
    if !kind.has_rooms() {
        return crate::runtime::shard::JOURNAL_OWNER;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in [kind as u8].iter().chain(room.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % cores as u64) as usize
}

fn endpoint(kind: WsKind) -> Endpoint {
    match kind {
        WsKind::Meter => Endpoint::Meter,
        WsKind::Stay => Endpoint::Stay,
        WsKind::Confirm => Endpoint::Confirm,
        WsKind::Kitchen | WsKind::Board => Endpoint::Screen,
    }
}

/// An accepted upgrade on its way to its room.
#[derive(Debug)]
pub struct Joining {
    pub kind: WsKind,
    pub room: String,
    /// The `101 Switching Protocols` response, not yet sent.
    pub greeting: Vec<u8>,
    /// Bytes the client sent after its handshake that were already read.
    pub leftover: Vec<u8>,
}

/// Takes a freshly upgraded socket to its room: here, or on its home core.
pub async fn start(shard: Rc<Shard>, stream: TcpStream, joining: Joining) {
    let home = home_core(joining.kind, &joining.room, shard.cores);
    if home == shard.id {
        serve(shard, stream, joining).await;
        return;
    }
    // SAFETY: dup(2) of a descriptor we own; the copy travels to the home core.
    let fd = unsafe { libc::dup(stream.as_raw_fd()) };
    drop(stream);
    if fd >= 0 {
        Box::pin(shard.hand_off(home, Handoff { fd, joining })).await;
    }
}

/// A socket handed over by another core.
pub fn adopt(shard: Rc<Shard>, handoff: Handoff) {
    // SAFETY: the sender duplicated this descriptor for us and closed its own copy.
    let stream = unsafe { TcpStream::from_raw_fd(handoff.fd) };
    glommio::spawn_local(serve(shard, stream, handoff.joining)).detach();
}

/// Completes the handshake and closes at once: a limit refused the client.
async fn refuse(shard: &Shard, mut stream: TcpStream, mut greeting: Vec<u8>, why: Rejected) {
    shard.metrics.rejected(why);
    frame::encode_close(
        CLOSE_TRY_AGAIN_LATER,
        "server busy, try again later",
        &mut greeting,
    );
    let _ = stream.write_all(&greeting).await;
}

/// The whole life of a WebSocket on its home core. The client joins its room first and
/// only then hears `101`, so every broadcast after its handshake reaches it.
///
/// This task is most of what an idle WebSocket costs, so rare steps (refusal, lingering
/// after our close frame) are boxed rather than carried in its state, and nothing from
/// the handshake outlives the join.
async fn serve(shard: Rc<Shard>, stream: TcpStream, joining: Joining) {
    let Joining {
        kind,
        room,
        greeting,
        leftover,
    } = joining;
    let Ok(peer) = stream.peer_addr() else { return };
    let permit = match shard.admit(peer.ip()) {
        Ok(permit) => permit,
        Err(why) => return Box::pin(refuse(&shard, stream, greeting, why)).await,
    };
    let slot = shard.ws.new_slot();
    slot.outbox().borrow_mut().extend_from_slice(&greeting);
    let joined = match kind {
        WsKind::Meter => crate::meter::room::join(&shard, &room, &slot).map(Role::Meter),
        WsKind::Stay => crate::lobby::join(&shard, &room, &slot).map(Role::Stay),
        WsKind::Confirm => crate::confirm::join(&shard, &room, &slot).map(Role::Confirm),
        WsKind::Kitchen => screens::join(&shard, screens::Screen::Kitchen, &slot).map(Role::Screen),
        WsKind::Board => screens::join(&shard, screens::Screen::Board, &slot).map(Role::Screen),
    };
    let role = match joined {
        Ok(role) => role,
        Err(why) => {
            shard.ws.drop_slot(&slot);
            return Box::pin(refuse(&shard, stream, greeting, why)).await;
        }
    };
    drop((room, greeting));
    let endpoint = endpoint(kind);
    shard.metrics.opened(endpoint);
    let mut connection = Connection::new(shard.clone(), stream, slot.clone(), role, leftover);
    let ending = (&mut connection).await;
    let (role, stream) = connection.into_parts();
    role.leave(&shard, &slot);
    shard.ws.drop_slot(&slot);
    shard.metrics.closed(endpoint);
    drop(permit);
    if ending == Ending::ByServer {
        // After our close frame the client may still answer it.
        Box::pin(crate::http::conn::linger(stream)).await;
    }
}
