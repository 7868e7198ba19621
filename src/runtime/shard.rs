//! One core's world: its configuration, its share of the connections, the rooms homed
//! here, and the way to talk to the other cores. Everything in it is touched by this
//! core only (`Rc`, `Cell`, `RefCell`); what crosses cores goes through [`CoreMsg`].

use super::mesh::{CoreMsg, Handoff, Reply, Request};
use crate::config::Config;
use crate::menu::MenuIndex;
use crate::metrics::{Metrics, Snapshot};
use crate::orders::book::{OrderBook, OrderError};
use crate::orders::index::OrderIndex;
use crate::orders::{Order, Status};
use futures_channel::oneshot;
use glommio::channels::channel_mesh::{Receivers, Senders};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The core that owns the order journal.
pub const JOURNAL_OWNER: usize = 0;

/// State every core shares read-only (or through atomics touched once per connection).
pub struct Shared {
    pub config: Config,
    pub staff_token: String,
    pub index: Arc<OrderIndex>,
    /// Open connections over all cores, for `--connections-max`.
    pub connections: AtomicUsize,
    /// The most connections open at once since memory was last given back.
    pub connections_peak: AtomicUsize,
}

pub struct Shard {
    pub id: usize,
    pub cores: usize,
    pub shared: Arc<Shared>,
    pub metrics: Metrics,
    /// Only on [`JOURNAL_OWNER`].
    pub book: Option<Rc<OrderBook>>,
    mesh: Senders<CoreMsg>,
    next_call_id: Cell<u64>,
    calls: RefCell<HashMap<u64, oneshot::Sender<Reply>>>,
    per_ip: RefCell<HashMap<IpAddr, u32>>,
    pub ws: crate::ws::registry::Registry,
    pub chanter: crate::chant::Chanter,
    /// Set once shutdown began on this core; HTTP connections stop keeping alive.
    pub drain: super::shutdown::Drain,
}

/// Holds one connection slot; gives it back when dropped.
pub struct ConnectionPermit {
    shard: Rc<Shard>,
    ip: IpAddr,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.shard
            .shared
            .connections
            .fetch_sub(1, Ordering::Relaxed);
        let mut per_ip = self.shard.per_ip.borrow_mut();
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

impl Shard {
    pub fn new(
        id: usize,
        cores: usize,
        shared: Arc<Shared>,
        mesh: Senders<CoreMsg>,
        book: Option<Rc<OrderBook>>,
    ) -> Shard {
        let ws = crate::ws::registry::Registry::new(&shared.config);
        let config = &shared.config;
        let chant_config = crate::chant::ChantConfig {
            gemini_api_key: config.gemini_api_key.clone(),
            gemini_url: config.gemini_url.clone(),
            gemini_model: config.gemini_model.clone(),
            timeout_ms: config.chant_timeout_ms,
        };
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let chanter = crate::chant::Chanter::new(chant_config, seed);
        Shard {
            id,
            cores,
            shared,
            metrics: Metrics::default(),
            book,
            mesh,
            next_call_id: Cell::new(1),
            calls: RefCell::new(HashMap::new()),
            per_ip: RefCell::new(HashMap::new()),
            ws,
            chanter,
            drain: super::shutdown::Drain::default(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Takes a connection slot for a client, or says which limit refused it.
    pub fn admit(
        self: &Rc<Self>,
        ip: IpAddr,
    ) -> Result<ConnectionPermit, crate::metrics::Rejected> {
        let config = self.config();
        let mut per_ip = self.per_ip.borrow_mut();
        let from_ip = per_ip.get(&ip).copied().unwrap_or(0);
        if from_ip as usize >= config.connections_per_ip_max {
            return Err(crate::metrics::Rejected::PerIpMax);
        }
        let total = self.shared.connections.fetch_add(1, Ordering::Relaxed);
        if total >= config.connections_max {
            self.shared.connections.fetch_sub(1, Ordering::Relaxed);
            return Err(crate::metrics::Rejected::ConnectionsMax);
        }
        self.shared
            .connections_peak
            .fetch_max(total + 1, Ordering::Relaxed);
        per_ip.insert(ip, from_ip + 1);
        Ok(ConnectionPermit {
            shard: self.clone(),
            ip,
        })
    }

    /// Creates an order through the journal owner.
    pub async fn create_order(
        &self,
        menu: MenuIndex,
        key: Option<&[u8]>,
    ) -> Result<Order, OrderError> {
        if let Some(book) = &self.book {
            return book.create(menu, key).await;
        }
        let request = Request::Create {
            menu,
            idempotency_key: key.map(Box::from),
        };
        match self.call(JOURNAL_OWNER, request).await {
            Some(Reply::Order(result)) => result,
            _ => Err(OrderError::Unavailable),
        }
    }

    /// Moves an order to `to` through the journal owner.
    pub async fn advance_order(&self, number: u64, to: Status) -> Result<Order, OrderError> {
        if let Some(book) = &self.book {
            return book.advance(number, to).await;
        }
        match self
            .call(JOURNAL_OWNER, Request::Advance { number, to })
            .await
        {
            Some(Reply::Order(result)) => result,
            _ => Err(OrderError::Unavailable),
        }
    }

    /// Every core's metrics, merged.
    pub async fn metrics_all(&self) -> Snapshot {
        let mut total = self.local_snapshot();
        for peer in (0..self.cores).filter(|&p| p != self.id) {
            if let Some(Reply::Metrics(snapshot)) = self.call(peer, Request::Metrics).await {
                total.merge(*snapshot);
            }
        }
        total
    }

    fn local_snapshot(&self) -> Snapshot {
        let mut snapshot = self.metrics.snapshot();
        snapshot.chant_fallbacks = self.chanter.fallbacks();
        snapshot.chant_backend_successes = self.chanter.backend_successes();
        if let Some(book) = &self.book {
            let stats = book.stats();
            snapshot.journal = Some(crate::metrics::JournalFigures {
                syncs: stats.syncs,
                records: stats.records,
                sync_latency_us: stats.sync_latency_us,
            });
        }
        snapshot
    }

    /// Sends a WebSocket to its home core. Returns false if the core is gone.
    pub async fn hand_off(&self, home: usize, handoff: Handoff) -> bool {
        let fd = handoff.fd;
        let sent = self
            .mesh
            .send_to(home, CoreMsg::Adopt(handoff))
            .await
            .is_ok();
        if !sent {
            // SAFETY: the descriptor was duplicated for this hand-off and nobody else owns it.
            unsafe { libc::close(fd) };
        }
        sent
    }

    async fn call(&self, peer: usize, request: Request) -> Option<Reply> {
        let call_id = self.next_call_id.get();
        self.next_call_id.set(call_id + 1);
        let (sender, receiver) = oneshot::channel();
        self.calls.borrow_mut().insert(call_id, sender);
        let message = CoreMsg::Call {
            from: self.id,
            call_id,
            request,
        };
        if self.mesh.send_to(peer, message).await.is_err() {
            self.calls.borrow_mut().remove(&call_id);
            return None;
        }
        receiver.await.ok()
    }

    /// Serves messages from every other core until the mesh closes.
    pub fn listen_to_peers(self: &Rc<Self>, receivers: Receivers<CoreMsg>) {
        let receivers = Rc::new(receivers);
        for peer in (0..self.cores).filter(|&p| p != self.id) {
            let shard = self.clone();
            let receivers = receivers.clone();
            glommio::spawn_local(async move {
                while let Ok(Some(message)) = receivers.recv_from(peer).await {
                    shard.clone().on_message(message);
                }
            })
            .detach();
        }
    }

    fn on_message(self: Rc<Self>, message: CoreMsg) {
        match message {
            CoreMsg::Adopt(handoff) => crate::ws::adopt(self, handoff),
            CoreMsg::Reply { call_id, reply } => {
                if let Some(waiter) = self.calls.borrow_mut().remove(&call_id) {
                    let _ = waiter.send(reply);
                }
            }
            CoreMsg::Call {
                from,
                call_id,
                request,
            } => {
                glommio::spawn_local(async move {
                    let reply = match request {
                        Request::Create {
                            menu,
                            idempotency_key,
                        } => {
                            Reply::Order(self.create_order(menu, idempotency_key.as_deref()).await)
                        }
                        Request::Advance { number, to } => {
                            Reply::Order(self.advance_order(number, to).await)
                        }
                        Request::Metrics => Reply::Metrics(Box::new(self.local_snapshot())),
                    };
                    let _ = self
                        .mesh
                        .send_to(from, CoreMsg::Reply { call_id, reply })
                        .await;
                })
                .detach();
            }
        }
    }
}
