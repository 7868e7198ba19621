//! Which service a WebSocket path leads to, and what its messages mean there: the
//! mapping from an accepted upgrade to a membership in a meter room, a lobby, a confirm
//! batch or a screen feed, seen by the connection loop as one [`Member`].

use crate::http::route::WsKind;
use crate::metrics::Rejected;
use crate::net::ws::Member;
use crate::services::{confirm, lobby, rooms, screens};
use crate::ws::slot::Slot;
use std::rc::Rc;

/// The services homed on one core that WebSockets join. Only the journal owner's core
/// has screens.
pub struct Services {
    pub rooms: Rc<rooms::Rooms>,
    pub lobbies: Rc<lobby::Lobbies>,
    pub confirms: Rc<confirm::Batches>,
    pub screens: Option<Rc<screens::Viewers>>,
}

pub enum Role {
    Meter(rooms::Member),
    Stay(lobby::Member),
    Confirm(confirm::Member),
    Screen(screens::Member),
}

impl Services {
    /// Puts a connection into the room, lobby, batch or feed its path names.
    pub fn join(&self, kind: WsKind, room: &str, slot: &Rc<Slot>) -> Result<Role, Rejected> {
        let screen = |which| {
            let viewers = self
                .screens
                .as_ref()
                .expect("screens are homed on the journal owner");
            viewers.join(which, slot).map(Role::Screen)
        };
        match kind {
            WsKind::Meter => self.rooms.join(room, slot).map(Role::Meter),
            WsKind::Stay => self.lobbies.join(room, slot).map(Role::Stay),
            WsKind::Confirm => self.confirms.join(room, slot).map(Role::Confirm),
            WsKind::Kitchen => screen(screens::Screen::Kitchen),
            WsKind::Board => screen(screens::Screen::Board),
        }
    }
}

impl Services {
    /// Whether the room, lobby or batch `room` of `kind` is open on this core.
    pub fn is_open(&self, kind: WsKind, room: &str) -> bool {
        match kind {
            WsKind::Meter => self.rooms.members(room) > 0,
            WsKind::Stay => self.lobbies.is_open(room),
            WsKind::Confirm => self.confirms.is_open(room),
            WsKind::Kitchen | WsKind::Board => true,
        }
    }
}

impl Member for Role {
    fn on_text(&mut self, text: &[u8]) {
        match self {
            Role::Meter(member) => member.on_text(text),
            Role::Stay(member) => member.on_text(text),
            Role::Confirm(member) => member.on_text(text),
            Role::Screen(member) => member.on_text(text),
        }
    }

    fn on_heartbeat(&mut self) {
        if let Role::Meter(member) = self {
            member.forget_expired();
        }
    }

    fn newest_broadcast(&mut self) -> Option<Rc<[u8]>> {
        match self {
            Role::Meter(member) => member.newest_broadcast(),
            Role::Stay(_) | Role::Confirm(_) | Role::Screen(_) => None,
        }
    }

    fn leave(self) {
        match self {
            Role::Meter(member) => member.leave(),
            Role::Stay(member) => member.leave(),
            Role::Confirm(member) => member.leave(),
            Role::Screen(member) => member.leave(),
        }
    }
}
