//! One core's world, built in one place: its connections' bookkeeping, the services
//! homed here and the handles they are given, and the way to the other cores.
//! Everything in it is touched by this core only (`Rc`, `Cell`, `RefCell`); what
//! crosses cores goes through [`super::calls`].

use super::calls::{CallError, Peers};
use crate::api::ws::Services;
use crate::api::{Api, Scrape};
use crate::chant::groups::GroupLines;
use crate::chant::{ChantConfig, Chanter};
use crate::clock::{unix_now_ms, Clock};
use crate::config::Config;
use crate::menu::MenuIndex;
use crate::metrics::{CoreFigures, JournalFigures, Metrics, Snapshot};
use crate::net::admission::{Admission, ConnectionCounts};
use crate::net::drain::Drain;
use crate::net::http::{HttpContext, HttpLimits};
use crate::net::sockets::{HeartbeatSettings, Sockets};
use crate::net::ws::WsContext;
use crate::orders::book::{OrderBook, OrderError};
use crate::orders::index::OrderIndex;
use crate::orders::{Order, Status};
use crate::placement::Placement;
use crate::services::confirm::{BatchSettings, Batches};
use crate::services::lobby::{GroupListener, Lobbies, LobbySettings};
use crate::services::orders::{LocalDesk, OrderDesk};
use crate::services::rooms::{RoomSettings, Rooms};
use crate::services::screens::{ScreenSettings, Viewers};
use crate::services::RoomBudget;
use crate::ws::fanout::Fanout;
use crate::ws::inbound::Inbound;
use futures_lite::future::BoxedLocal;
use glommio::channels::channel_mesh::Senders;
use std::rc::{Rc, Weak};
use std::sync::Arc;

/// The core that owns the order journal.
pub const JOURNAL_OWNER: usize = 0;

/// What every core shares read-only (or through atomics touched once per connection).
pub struct Shared {
    pub config: Config,
    pub staff_token: String,
    pub index: Arc<OrderIndex>,
    pub connections: Arc<ConnectionCounts>,
    /// Which core each room lives on.
    pub placement: Arc<Placement>,
    /// The chant line of each menu item's newest lobby group.
    pub group_lines: Arc<GroupLines>,
}

pub struct Core {
    pub id: usize,
    pub cores: usize,
    pub shared: Arc<Shared>,
    pub metrics: Rc<Metrics>,
    pub sockets: Rc<Sockets>,
    pub admission: Rc<Admission>,
    pub drain: Rc<Drain>,
    /// Only on [`JOURNAL_OWNER`].
    pub book: Option<Rc<OrderBook>>,
    pub services: Services,
    /// The rooms, lobbies and batches open here, shared by the services.
    pub budget: Rc<RoomBudget>,
    pub http: Rc<HttpContext<Api>>,
    pub ws: Rc<WsContext>,
    chanter: Rc<Chanter>,
    pub(super) peers: Peers,
    /// On the journal owner: one unit from each other core once its connections are gone.
    pub(super) peers_drained: glommio::sync::Semaphore,
}

impl Core {
    pub fn new(
        id: usize,
        shared: Arc<Shared>,
        mesh: Senders<super::calls::Envelope>,
        book: Option<Rc<OrderBook>>,
        fanout: Fanout,
        inbound: Rc<Inbound>,
    ) -> Rc<Core> {
        Rc::new_cyclic(|core: &Weak<Core>| {
            let config = &shared.config;
            let clock = Rc::new(Clock::real());
            let metrics = Rc::new(Metrics::default());
            let budget = Rc::new(RoomBudget::new(
                config.rooms_per_core_max,
                shared.placement.clone(),
                id,
                clock.clone(),
                metrics.clone(),
            ));
            let desk: Rc<dyn OrderDesk> = match &book {
                Some(book) => Rc::new(LocalDesk(book.clone())),
                None => Rc::new(RemoteDesk(core.clone())),
            };
            let chanter = Rc::new(chanter(config, id));
            let fanout = Rc::new(fanout);
            let services = Services {
                rooms: Rc::new(Rooms::new(
                    RoomSettings::from_config(config),
                    clock.clone(),
                    metrics.clone(),
                    budget.clone(),
                    fanout.clone(),
                )),
                lobbies: Rc::new(Lobbies::new(
                    LobbySettings {
                        size: config.lobby_size,
                        delay_s: config.lobby_delay_s,
                    },
                    metrics.clone(),
                    budget.clone(),
                    Rc::new(ChantGroups {
                        chanter: chanter.clone(),
                        lines: shared.group_lines.clone(),
                    }),
                )),
                confirms: Rc::new(Batches::new(
                    BatchSettings {
                        timeout_ms: config.confirm_timeout_ms,
                        clients_max: config.room_clients_max,
                        store_id: config.store_id.clone(),
                    },
                    desk.clone(),
                    metrics.clone(),
                    budget.clone(),
                )),
                screens: book.as_ref().map(|_| {
                    let settings = ScreenSettings {
                        store_id: config.store_id.clone(),
                        staff_token: shared.staff_token.clone(),
                        viewers_max: config.room_clients_max,
                    };
                    Rc::new(Viewers::new(
                        settings,
                        shared.index.clone(),
                        metrics.clone(),
                    ))
                }),
            };
            let admission = Rc::new(Admission::new(
                shared.connections.clone(),
                config.connections_max,
                config.connections_per_ip_max,
            ));
            let sockets = Rc::new(Sockets::new(
                clock,
                HeartbeatSettings {
                    ping_interval_ms: config.ws_ping_interval_ms,
                    idle_timeout_ms: config.ws_idle_timeout_ms,
                },
                shared.placement.clone(),
                id,
            ));
            let drain = Rc::new(Drain::default());
            let api = Api {
                store_id: config.store_id.clone(),
                staff_token: shared.staff_token.clone(),
                index: shared.index.clone(),
                desk,
                chanter: chanter.clone(),
                group_lines: shared.group_lines.clone(),
                scrape: Rc::new(ScrapeAll(core.clone())),
            };
            let http = Rc::new(HttpContext {
                router: Rc::new(api),
                admission: admission.clone(),
                metrics: metrics.clone(),
                drain: drain.clone(),
                limits: HttpLimits::from_config(config),
            });
            let ws = Rc::new(WsContext {
                sockets: sockets.clone(),
                fanout,
                inbound,
                metrics: metrics.clone(),
                message_bytes_max: config.ws_message_bytes_max,
            });
            Core {
                id,
                cores: config.cores,
                shared: shared.clone(),
                metrics,
                sockets,
                admission,
                drain,
                book,
                services,
                budget,
                http,
                ws,
                chanter,
                peers: Peers::new(mesh),
                peers_drained: glommio::sync::Semaphore::new(0),
            }
        })
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Every second, emptied rooms that stayed empty give up their core.
    pub fn start_releasing_emptied_rooms(self: &Rc<Self>) {
        let core = Rc::downgrade(self);
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(std::time::Duration::from_secs(1)).await;
                let Some(core) = core.upgrade() else { break };
                let services = &core.services;
                core.budget
                    .release_emptied(|kind, room| services.is_open(kind, room));
            }
        })
        .detach();
    }

    /// The journal owner's book. Panics elsewhere: order jobs run on the owner only.
    pub fn book(&self) -> &Rc<OrderBook> {
        self.book
            .as_ref()
            .expect("order calls go to the journal owner")
    }

    /// This core's metrics.
    fn snapshot(&self) -> Snapshot {
        let mut snapshot = self.metrics.snapshot();
        snapshot.cores.push(CoreFigures {
            core: self.id,
            rooms: self.budget.rooms_open(),
            members: self.sockets.len(),
            frames_out: snapshot.ws_out,
            busy_s: thread_cpu_s(),
        });
        snapshot.chant_fallbacks = self.chanter.fallbacks();
        snapshot.chant_backend_successes = self.chanter.backend_successes();
        if let Some(book) = &self.book {
            let stats = book.stats();
            snapshot.journal = Some(JournalFigures {
                syncs: stats.syncs,
                records: stats.records,
                sync_latency_us: stats.sync_latency_us,
            });
        }
        snapshot
    }
}

/// CPU time the calling thread has used: on an executor, how busy its core is.
fn thread_cpu_s() -> f64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given; the clock id is valid.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } != 0 {
        return 0.0;
    }
    now.tv_sec as f64 + now.tv_nsec as f64 / 1e9
}

fn chanter(config: &Config, core_id: usize) -> Chanter {
    let chant_config = ChantConfig {
        gemini_api_key: config.gemini_api_key.clone(),
        gemini_url: config.gemini_url.clone(),
        gemini_model: config.gemini_model.clone(),
        timeout_ms: config.chant_timeout_ms,
    };
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ (core_id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    Chanter::new(chant_config, seed)
}

/// Gives each lobby group of a menu item its own chant line, chosen once where the
/// group formed and read by every core's chant endpoint.
struct ChantGroups {
    chanter: Rc<Chanter>,
    lines: Arc<GroupLines>,
}

impl GroupListener for ChantGroups {
    fn formed(&self, room: &str) {
        let Some(menu) = crate::menu::find(room) else {
            return;
        };
        let formed_unix_ms = unix_now_ms();
        let seed = formed_unix_ms ^ rand::random::<u64>();
        let (chanter, lines) = (self.chanter.clone(), self.lines.clone());
        glommio::spawn_local(async move {
            let line = chanter.group_line(menu, seed).await;
            lines.publish(menu, formed_unix_ms, &line);
        })
        .detach();
    }
}

/// The order desk of a core without the journal: each request is a call to the owner.
struct RemoteDesk(Weak<Core>);

impl RemoteDesk {
    fn call<F>(&self, job: F) -> BoxedLocal<Result<Order, OrderError>>
    where
        F: FnOnce(Rc<OrderBook>) -> BoxedLocal<Result<Order, OrderError>> + Send + 'static,
    {
        let core = self.0.upgrade();
        Box::pin(async move {
            let core = core.ok_or(OrderError::Unavailable)?;
            let answer = core
                .invoke_on(JOURNAL_OWNER, move |owner| job(owner.book().clone()))
                .await;
            answer.unwrap_or_else(|e: CallError| {
                log::warn!("core {}: an order call failed: {e}", core.id);
                Err(OrderError::Unavailable)
            })
        })
    }
}

impl OrderDesk for RemoteDesk {
    fn create(
        &self,
        menu: MenuIndex,
        idempotency_key: Option<Box<[u8]>>,
    ) -> BoxedLocal<Result<Order, OrderError>> {
        self.call(move |book| LocalDesk(book).create(menu, idempotency_key))
    }

    fn advance(&self, number: u64, to: Status) -> BoxedLocal<Result<Order, OrderError>> {
        self.call(move |book| LocalDesk(book).advance(number, to))
    }
}

/// Gathers every core's metrics at once for a scrape.
struct ScrapeAll(Weak<Core>);

impl Scrape for ScrapeAll {
    fn snapshot_all(&self) -> BoxedLocal<Snapshot> {
        let core = self.0.upgrade();
        Box::pin(async move {
            let Some(core) = core else {
                return Snapshot::default();
            };
            let mut total: Option<Snapshot> = None;
            for (peer, answer) in core
                .invoke_on_all(|core| async move { Box::new(core.snapshot()) })
                .await
                .into_iter()
                .enumerate()
            {
                match (answer, &mut total) {
                    (Ok(snapshot), None) => total = Some(*snapshot),
                    (Ok(snapshot), Some(total)) => total.merge(*snapshot),
                    (Err(e), _) => log::warn!("metrics of core {peer} are missing: {e}"),
                }
            }
            total.unwrap_or_default()
        })
    }
}
