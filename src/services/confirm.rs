//! `/ws/confirm?room=<menu item id>`: everybody ready, then order. Clients of one menu
//! item form a batch on its home core; when every connected client has said
//! `{"status":"ready"}` (or a departure makes that so, or the batch times out) the batch
//! is taken out of the map — later joiners start a new one — and one durable order is
//! made per client through the order desk. Each client gets its own order, then 1000.

use super::orders::OrderDesk;
use super::RoomBudget;
use crate::http::route::WsKind;
use crate::limits::CLOSE_NORMAL;
use crate::menu::{self, MenuIndex};
use crate::metrics::{Ignored, Metrics, Rejected};
use crate::ws::slot::Slot;
use std::cell::{Cell, RefCell};
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::time::Duration;

/// How batches behave; from the configuration.
#[derive(Debug, Clone)]
pub struct BatchSettings {
    /// A batch orders for everyone this long after it opened.
    pub timeout_ms: u64,
    pub clients_max: usize,
    /// For the order JSON each client receives.
    pub store_id: String,
}

struct Batch {
    id: u64,
    /// Clients in join order, with whether each has said it is ready.
    members: Vec<(Rc<Slot>, bool)>,
}

/// The open batches homed on one core, one per menu item at most.
pub struct Batches {
    batches: RefCell<HashMap<MenuIndex, Batch>>,
    next_id: Cell<u64>,
    settings: BatchSettings,
    desk: Rc<dyn OrderDesk>,
    metrics: Rc<Metrics>,
    budget: Rc<RoomBudget>,
}

pub struct Member {
    batches: Rc<Batches>,
    menu: MenuIndex,
    batch_id: u64,
    slot: Rc<Slot>,
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

impl Batches {
    pub fn new(
        settings: BatchSettings,
        desk: Rc<dyn OrderDesk>,
        metrics: Rc<Metrics>,
        budget: Rc<RoomBudget>,
    ) -> Batches {
        Batches {
            batches: RefCell::new(HashMap::new()),
            next_id: Cell::new(0),
            settings,
            desk,
            metrics,
            budget,
        }
    }

    pub fn len(&self) -> usize {
        self.batches.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_open(&self, room: &str) -> bool {
        menu::find(room).is_some_and(|menu| self.batches.borrow().contains_key(&menu))
    }

    /// Adds a client to the open batch of menu item `room` (checked by the upgrade).
    pub fn join(self: &Rc<Self>, room: &str, slot: &Rc<Slot>) -> Result<Member, Rejected> {
        let menu = menu::find(room).expect("the upgrade checked the menu item");
        let mut map = self.batches.borrow_mut();
        let batch = match map.entry(menu) {
            Entry::Occupied(open) => open.into_mut(),
            Entry::Vacant(vacant) => {
                self.budget.open(WsKind::Confirm, room)?;
                let id = self.next_id.get() + 1;
                self.next_id.set(id);
                self.start_timeout(menu, id);
                vacant.insert(Batch {
                    id,
                    members: Vec::new(),
                })
            }
        };
        if batch.members.len() >= self.settings.clients_max {
            return Err(Rejected::RoomFull);
        }
        batch.members.push((slot.clone(), false));
        Ok(Member {
            batches: self.clone(),
            menu,
            batch_id: batch.id,
            slot: slot.clone(),
        })
    }

    /// Orders for everyone still in batch `id` once it has been open for the timeout.
    fn start_timeout(self: &Rc<Self>, menu: MenuIndex, id: u64) {
        let batches: Weak<Batches> = Rc::downgrade(self);
        let timeout = Duration::from_millis(self.settings.timeout_ms);
        glommio::spawn_local(async move {
            glommio::timer::sleep(timeout).await;
            let Some(batches) = batches.upgrade() else {
                return;
            };
            let current = batches.batches.borrow().get(&menu).map(|b| b.id);
            if current == Some(id) {
                batches.order(menu);
            }
        })
        .detach();
    }

    /// Orders for the batch of `menu` if everyone in it is ready.
    fn order_if_all_ready(&self, menu: MenuIndex) {
        let all_ready =
            self.batches.borrow().get(&menu).is_some_and(|b| {
                !b.members.is_empty() && b.members.iter().all(|(_, ready)| *ready)
            });
        if all_ready {
            self.order(menu);
        }
    }

    /// Takes the batch of `menu` out (new joiners start a fresh one) and makes one order
    /// per member, concurrently, so the journal commits them together.
    fn order(&self, menu: MenuIndex) {
        let Some(batch) = self.batches.borrow_mut().remove(&menu) else {
            return;
        };
        self.budget.close(WsKind::Confirm, menu::item(menu).id);
        for (slot, _) in batch.members {
            let created = self.desk.create(menu, None);
            let store_id = self.settings.store_id.clone();
            glommio::spawn_local(async move {
                let text = match created.await {
                    Ok(order) => {
                        let mut json = Vec::with_capacity(160);
                        order.write_json(&store_id, &mut json);
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
}

impl Member {
    pub fn on_text(&mut self, text: &[u8]) {
        let batches = &self.batches;
        if !is_ready_message(text) {
            batches.metrics.ignored(Ignored::Unexpected);
            return;
        }
        let newly_ready = {
            let mut map = batches.batches.borrow_mut();
            let member = map
                .get_mut(&self.menu)
                .filter(|b| b.id == self.batch_id)
                .and_then(|b| {
                    b.members
                        .iter_mut()
                        .find(|(s, _)| Rc::ptr_eq(s, &self.slot))
                });
            match member {
                Some((_, ready)) if !*ready => {
                    *ready = true;
                    true
                }
                _ => false,
            }
        };
        if newly_ready {
            batches.order_if_all_ready(self.menu);
        } else {
            batches.metrics.ignored(Ignored::Unexpected);
        }
    }

    /// A client left: the batch shrinks, and may now be all ready.
    pub fn leave(self) {
        let batches = &self.batches;
        {
            let mut map = batches.batches.borrow_mut();
            let Some(batch) = map.get_mut(&self.menu).filter(|b| b.id == self.batch_id) else {
                return;
            };
            batch.members.retain(|(s, _)| !Rc::ptr_eq(s, &self.slot));
            if batch.members.is_empty() {
                map.remove(&self.menu);
                drop(map);
                batches
                    .budget
                    .close(WsKind::Confirm, menu::item(self.menu).id);
                return;
            }
        }
        batches.order_if_all_ready(self.menu);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::orders::memory::MemoryDesk;
    use crate::services::testing::{budget, metrics, slot, texts};

    fn batches(timeout_ms: u64) -> (Rc<Batches>, Rc<MemoryDesk>) {
        let desk = Rc::new(MemoryDesk::default());
        let settings = BatchSettings {
            timeout_ms,
            clients_max: 10,
            store_id: "store-001".into(),
        };
        let batches = Rc::new(Batches::new(settings, desk.clone(), metrics(), budget(10)));
        (batches, desk)
    }

    /// Lets the spawned order tasks run until `orders` orders exist (or a long while
    /// passed, so a broken test fails instead of hanging).
    async fn settle_at(desk: &MemoryDesk, orders: usize) {
        for _ in 0..5_000 {
            if desk.orders.borrow().len() >= orders {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        // The tasks that made them still have to deliver them.
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }

    #[test]
    fn only_status_ready_counts() {
        assert!(is_ready_message(br#"{"status":"ready"}"#));
        assert!(is_ready_message(br#" {"status": "ready", "x": 1}"#));
        assert!(!is_ready_message(br#"{"status":"Ready"}"#));
        assert!(!is_ready_message(br#"{"status":1}"#));
        assert!(!is_ready_message(b"ready"));
        assert!(!is_ready_message(br#"["ready"]"#));
    }

    #[test]
    fn everyone_ready_gives_each_client_its_own_order_then_1000() {
        glommio::LocalExecutor::default().run(async {
            let (batches, desk) = batches(60_000);
            let (a, b) = (slot(), slot());
            let mut alice = batches.join("giiku-sai", &a).unwrap();
            let mut bob = batches.join("giiku-sai", &b).unwrap();
            alice.on_text(br#"{"status":"ready"}"#);
            alice.on_text(br#"{"status":"ready"}"#);
            settle_at(&desk, 0).await;
            assert!(desk.orders.borrow().is_empty(), "bob is not ready yet");
            bob.on_text(br#"{"status":"ready"}"#);
            settle_at(&desk, 2).await;
            assert_eq!(desk.orders.borrow().len(), 2);
            let (ta, tb) = (texts(&a), texts(&b));
            assert_ne!(ta, tb, "two different orders");
            assert!(ta[0].starts_with(r#"{"id":"store-001-"#));
            assert!(ta[0].contains(r#""menu_item_id":"giiku-sai""#));
            assert_eq!(a.close_code(), Some(CLOSE_NORMAL));
            assert!(batches.is_empty());
            alice.leave();
            bob.leave();
            assert!(batches.is_empty());
        });
    }

    #[test]
    fn a_departure_that_leaves_everyone_ready_orders_for_the_rest() {
        glommio::LocalExecutor::default().run(async {
            let (batches, desk) = batches(60_000);
            let (a, b) = (slot(), slot());
            let mut alice = batches.join("giiku-ten", &a).unwrap();
            let bob = batches.join("giiku-ten", &b).unwrap();
            alice.on_text(br#"{"status":"ready"}"#);
            bob.leave();
            settle_at(&desk, 1).await;
            assert_eq!(desk.orders.borrow().len(), 1);
            assert_eq!(texts(&a).len(), 1);
        });
    }

    #[test]
    fn a_batch_times_out_into_orders_and_later_joiners_start_a_new_one() {
        glommio::LocalExecutor::default().run(async {
            let (batches, desk) = batches(10);
            let (a, b) = (slot(), slot());
            let _alice = batches.join("giiku-camp", &a).unwrap();
            glommio::timer::sleep(Duration::from_millis(10)).await;
            settle_at(&desk, 1).await;
            assert_eq!(desk.orders.borrow().len(), 1, "ordered at the timeout");
            let mut bob = batches.join("giiku-camp", &b).unwrap();
            assert_eq!(batches.len(), 1, "a fresh batch");
            bob.on_text(br#"{"status":"ready"}"#);
            settle_at(&desk, 2).await;
            assert_eq!(desk.orders.borrow().len(), 2);
        });
    }

    #[test]
    fn a_failed_order_is_reported_and_closed() {
        glommio::LocalExecutor::default().run(async {
            let (batches, desk) = batches(60_000);
            desk.failing.set(true);
            let a = slot();
            let mut alice = batches.join("giiku-haku", &a).unwrap();
            alice.on_text(br#"{"status":"ready"}"#);
            for _ in 0..5_000 {
                if a.close_code().is_some() {
                    break;
                }
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            assert_eq!(texts(&a), [r#"{"error":"order failed"}"#]);
            assert_eq!(a.close_code(), Some(CLOSE_NORMAL));
        });
    }

    #[test]
    fn a_ready_message_during_ordering_is_for_no_batch() {
        glommio::LocalExecutor::default().run(async {
            let (batches, desk) = batches(60_000);
            let a = slot();
            let mut alice = batches.join("giiku-sai", &a).unwrap();
            alice.on_text(br#"{"status":"ready"}"#);
            // The batch is gone (ordering); a repeat is ignored, not a second order.
            alice.on_text(br#"{"status":"ready"}"#);
            settle_at(&desk, 1).await;
            assert_eq!(desk.orders.borrow().len(), 1);
        });
    }
}
