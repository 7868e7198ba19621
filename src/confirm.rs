//! `/ws/confirm?room=<menu item id>`: everybody ready, then order. Clients of one menu
//! item form a batch on its home core; when every connected client has said
//! `{"status":"ready"}` (or a departure makes that so, or the batch times out) the batch
//! is taken out of the map — later joiners start a new one — and one durable order is
//! made per client through the journal owner. Each client gets its own order, then 1000.

use crate::menu::{self, MenuIndex};
use crate::metrics::{Endpoint, Ignored, Rejected};
use crate::runtime::shard::Shard;
use crate::ws::frame::CLOSE_NORMAL;
use crate::ws::slot::Slot;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

struct Batch {
    id: u64,
    /// Clients in join order, with whether each has said it is ready.
    members: Vec<(Rc<Slot>, bool)>,
}

/// The open batches homed on one core, one per menu item at most.
#[derive(Default)]
pub struct Batches {
    batches: RefCell<HashMap<MenuIndex, Batch>>,
    next_id: Cell<u64>,
}

impl Batches {
    pub fn len(&self) -> usize {
        self.batches.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub struct Member {
    menu: MenuIndex,
    batch_id: u64,
}

pub fn join(shard: &Rc<Shard>, room: &str, slot: &Rc<Slot>) -> Result<Member, Rejected> {
    let menu = menu::find(room).expect("the upgrade checked the menu item");
    let config = shard.config();
    let is_new = !shard.ws.confirms.batches.borrow().contains_key(&menu);
    if is_new && shard.ws.rooms_open() >= config.rooms_per_core_max {
        return Err(Rejected::RoomsMax);
    }
    let batches = &shard.ws.confirms;
    let mut map = batches.batches.borrow_mut();
    let batch = map.entry(menu).or_insert_with(|| {
        let id = batches.next_id.get() + 1;
        batches.next_id.set(id);
        shard.metrics.room_delta(Endpoint::Confirm, 1);
        start_timeout(shard, menu, id, config.confirm_timeout_ms);
        Batch {
            id,
            members: Vec::new(),
        }
    });
    if batch.members.len() >= config.room_clients_max {
        return Err(Rejected::RoomFull);
    }
    batch.members.push((slot.clone(), false));
    Ok(Member {
        menu,
        batch_id: batch.id,
    })
}

/// Orders for everyone still in batch `id` once it has been open for `timeout_ms`.
fn start_timeout(shard: &Rc<Shard>, menu: MenuIndex, id: u64, timeout_ms: u64) {
    let shard = Rc::downgrade(shard);
    glommio::spawn_local(async move {
        glommio::timer::sleep(Duration::from_millis(timeout_ms)).await;
        if let Some(shard) = shard.upgrade() {
            let current = shard.ws.confirms.batches.borrow().get(&menu).map(|b| b.id);
            if current == Some(id) {
                order(&shard, menu);
            }
        }
    })
    .detach();
}

/// Orders for the batch of `menu` if everyone in it is ready.
fn order_if_all_ready(shard: &Rc<Shard>, menu: MenuIndex) {
    let all_ready = shard
        .ws
        .confirms
        .batches
        .borrow()
        .get(&menu)
        .is_some_and(|b| !b.members.is_empty() && b.members.iter().all(|(_, ready)| *ready));
    if all_ready {
        order(shard, menu);
    }
}

/// Takes the batch of `menu` out (new joiners start a fresh one) and makes one order per
/// member, concurrently, so the journal commits them together.
fn order(shard: &Rc<Shard>, menu: MenuIndex) {
    let Some(batch) = shard.ws.confirms.batches.borrow_mut().remove(&menu) else {
        return;
    };
    shard.metrics.room_delta(Endpoint::Confirm, -1);
    for (slot, _) in batch.members {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            let text = match shard.create_order(menu, None).await {
                Ok(order) => {
                    let mut json = Vec::with_capacity(160);
                    order.write_json(&shard.config().store_id, &mut json);
                    json
                }
                Err(_) => br#"{"error":"order failed"}"#.to_vec(),
            };
            slot.send_text(&text);
            slot.close(CLOSE_NORMAL);
        })
        .detach();
    }
}

fn is_ready_message(text: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct StatusMessage<'a> {
        #[serde(borrow)]
        status: std::borrow::Cow<'a, str>,
    }
    text.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
        && serde_json::from_slice::<StatusMessage>(text).is_ok_and(|m| m.status == "ready")
}

impl Member {
    pub fn on_text(&mut self, shard: &Rc<Shard>, slot: &Rc<Slot>, text: &[u8]) {
        if !is_ready_message(text) {
            shard.metrics.ignored(Ignored::Unexpected);
            return;
        }
        let newly_ready = {
            let mut map = shard.ws.confirms.batches.borrow_mut();
            let member = map
                .get_mut(&self.menu)
                .filter(|b| b.id == self.batch_id)
                .and_then(|b| b.members.iter_mut().find(|(s, _)| Rc::ptr_eq(s, slot)));
            match member {
                Some((_, ready)) if !*ready => {
                    *ready = true;
                    true
                }
                _ => false,
            }
        };
        if newly_ready {
            order_if_all_ready(shard, self.menu);
        } else {
            shard.metrics.ignored(Ignored::Unexpected);
        }
    }

    /// A client left: the batch shrinks, and may now be all ready.
    pub fn leave(self, shard: &Rc<Shard>, slot: &Rc<Slot>) {
        {
            let mut map = shard.ws.confirms.batches.borrow_mut();
            let Some(batch) = map.get_mut(&self.menu).filter(|b| b.id == self.batch_id) else {
                return;
            };
            batch.members.retain(|(s, _)| !Rc::ptr_eq(s, slot));
            if batch.members.is_empty() {
                map.remove(&self.menu);
                shard.metrics.room_delta(Endpoint::Confirm, -1);
                return;
            }
        }
        order_if_all_ready(shard, self.menu);
    }
}

#[cfg(test)]
mod tests {
    use super::is_ready_message;

    #[test]
    fn only_status_ready_counts() {
        assert!(is_ready_message(br#"{"status":"ready"}"#));
        assert!(is_ready_message(br#" {"status": "ready", "x": 1}"#));
        assert!(!is_ready_message(br#"{"status":"Ready"}"#));
        assert!(!is_ready_message(br#"{"status":1}"#));
        assert!(!is_ready_message(b"ready"));
        assert!(!is_ready_message(br#"["ready"]"#));
    }
}
