//! What a WebSocket is for, which decides what its messages mean and what it receives.

use super::slot::Slot;
use crate::confirm;
use crate::lobby;
use crate::meter::room;
use crate::runtime::shard::Shard;
use std::rc::Rc;

pub enum Role {
    Meter(room::Member),
    Stay(lobby::Member),
    Confirm(confirm::Member),
    Screen(crate::screens::live::Member),
}

impl Role {
    /// A text message from the client.
    pub fn on_text(&mut self, shard: &Rc<Shard>, slot: &Rc<Slot>, text: &[u8]) {
        match self {
            Role::Meter(member) => member.on_text(shard, text),
            Role::Stay(_) => shard.metrics.ignored(crate::metrics::Ignored::Unexpected),
            Role::Confirm(member) => member.on_text(shard, slot, text),
            Role::Screen(member) => member.on_text(shard, slot, text),
        }
    }

    /// Every ping interval: let go of what a quiet client no longer needs.
    pub fn on_heartbeat(&mut self, shard: &Shard) {
        if let Role::Meter(member) = self {
            member.forget_expired(shard);
        }
    }

    /// The newest room broadcast this client has not been sent yet.
    pub fn newest_broadcast(&mut self, shard: &Shard) -> Option<Rc<[u8]>> {
        match self {
            Role::Meter(member) => member.newest_broadcast(shard),
            Role::Stay(_) | Role::Confirm(_) | Role::Screen(_) => None,
        }
    }

    /// The connection is gone: take it out of its room, lobby or batch.
    pub fn leave(self, shard: &Rc<Shard>, slot: &Rc<Slot>) {
        match self {
            Role::Meter(member) => member.leave(shard),
            Role::Stay(member) => member.leave(shard, slot),
            Role::Confirm(member) => member.leave(shard, slot),
            Role::Screen(member) => member.leave(shard, slot),
        }
    }
}
