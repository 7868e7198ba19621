//! Starting the server: recover the journal, reserve the port, then one glommio executor
//! per core, each with its own SO_REUSEPORT listener, joined by a channel mesh.

pub mod calls;
pub mod core;
pub mod listen;
mod memory;
pub mod notify;
pub mod shutdown;
mod uring_probe;

use self::core::{Core, Shared, JOURNAL_OWNER};
use crate::config::Config;
use crate::limits::CROSS_CORE_QUEUE_MAX;
use crate::metrics::Rejected;
use crate::orders::index::OrderIndex;
use crate::orders::journal::{self, Recovered};
use crate::ws::Joining;
use calls::{Envelope, Handoff};
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::net::{TcpListener, TcpStream};
use glommio::{CpuSet, LocalExecutorPoolBuilder, PoolPlacement};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// io_uring buffer memory per executor. glommio pins it, and an unprivileged service
/// has an 8 MiB RLIMIT_MEMLOCK for everything: sockets here are readiness-polled and
/// need none of it, so keep it at the minimum.
const IO_MEMORY_BYTES: usize = 128 << 10;

pub const JOURNAL_FILE: &str = crate::orders::journal::FILE_NAME;

/// How long all cores may take to start (recovery is done before they do) before the
/// process gives up with an error instead of hanging.
const START_TIMEOUT_MS: u64 = 60_000;
/// How often a starting core wakes while it waits for the others.
const START_TICK_MS: u64 = 5;

/// What the main thread and every core share about the process's life: the shutdown
/// signals and systemd notifications.
struct Lifecycle {
    coordinator: shutdown::Coordinator,
    notifier: Arc<notify::Notifier>,
    heartbeats: Arc<notify::Heartbeats>,
}

/// Runs the server until every executor stops. Errors are fit to show the operator.
pub fn run(config: Config) -> Result<(), String> {
    uring_probe::check()?;
    // First: a SIGTERM during recovery is remembered and honoured once the cores run.
    let coordinator = shutdown::Coordinator::install(config.cores)
        .map_err(|e| format!("cannot install the signal handlers: {e}"))?;
    let notifier = Arc::new(notify::Notifier::from_env());
    let watchdog_every = notify::watchdog_interval_from_env().filter(|_| notifier.enabled());
    let lifecycle = Arc::new(Lifecycle {
        coordinator,
        notifier,
        heartbeats: Arc::new(notify::Heartbeats::new(config.cores, watchdog_every)),
    });
    crate::orders::durable::create_dir_all(&config.data_dir).map_err(|e| {
        format!(
            "cannot create data directory {}: {e}",
            config.data_dir.display()
        )
    })?;
    let staff_token = crate::staff::load_or_create(config.staff_token.as_deref(), &config.data_dir)
        .map_err(|e| {
            format!(
                "cannot read or create the staff token in {}: {e}",
                config.data_dir.display()
            )
        })?;
    let journal_path = config.data_dir.join(JOURNAL_FILE);
    let recovered = journal::recover(&journal_path).map_err(|e| e.to_string())?;
    let index = Arc::new(OrderIndex::new());
    for order in &recovered.orders {
        index.publish(*order);
    }
    log::info!(
        "journal {} holds {} orders",
        journal_path.display(),
        index.len()
    );

    let reservation = listen::reserve(config.listen)
        .map_err(|e| format!("cannot bind {}: {e}", config.listen))?;
    let addr = reservation.addr;
    let cores = config.cores;
    let cpus = allowed_cpus().map_err(|e| format!("cannot read the CPU topology: {e}"))?;
    let shared = Arc::new(Shared {
        config,
        staff_token,
        index,
        connections: Arc::default(),
        placement: Arc::new(crate::placement::Placement::new(cores, JOURNAL_OWNER)),
        group_lines: Arc::default(),
    });
    let report = shared.clone();
    let mesh = MeshBuilder::<Envelope, _>::full(cores, CROSS_CORE_QUEUE_MAX);
    // glommio 0.9's MeshBuilder is Send but counts its clones with a plain `Rc`: cloned
    // on the executor threads at once, a lost increment frees it while a core still uses
    // it (AddressSanitizer caught it; the heap corruption surfaced as an abort when the
    // executor threads exit). So clone it here, on one thread, and never drop the
    // original: racing drops on the executors can then only leak it, never free it early.
    let meshes = Arc::new(Mutex::new(
        (0..cores).map(|_| mesh.clone()).collect::<Vec<_>>(),
    ));
    std::mem::forget(mesh);
    let recovered = Arc::new(Mutex::new(Some(recovered)));
    let (ready_sender, ready) = mpsc::channel::<Result<(), String>>();
    let lifecycle_for_cores = lifecycle.clone();
    let handles = LocalExecutorPoolBuilder::new(PoolPlacement::MaxSpread(cores, Some(cpus)))
        .name("kakigori")
        .io_memory(IO_MEMORY_BYTES)
        // How long a busy core runs tasks before it looks at its rings again: the receive
        // ring's doorbell (`ws::inbound`) and the broadcast timers wait at most this long
        // behind running tasks. Looking costs one system call.
        .preempt_timer(Duration::from_millis(1))
        // Chant-line backend calls block; let each core have that many in flight.
        .blocking_thread_pool_placement(PoolPlacement::Unbound(
            crate::chant::MAX_BACKEND_CALLS_IN_FLIGHT,
        ))
        .on_all_shards(move || {
            let shared = shared.clone();
            let mesh = meshes
                .lock()
                .expect("start-up lock")
                .pop()
                .expect("one mesh handle per core");
            let recovered = recovered.clone();
            let ready = ready_sender.clone();
            let journal_path = journal_path.clone();
            let lifecycle = lifecycle_for_cores.clone();
            async move {
                let result = serve_core(
                    shared,
                    mesh,
                    recovered,
                    journal_path,
                    addr,
                    ready.clone(),
                    lifecycle,
                )
                .await;
                if let Err(e) = &result {
                    let _ = ready.send(Err(e.clone()));
                }
                result
            }
        })
        .map_err(|e| format!("cannot start executors: {e}"))?;
    for _ in 0..cores {
        match ready.recv_timeout(Duration::from_millis(START_TIMEOUT_MS)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(format!(
                    "the cores did not all start within {} s; giving up rather than \
                     serving with some of them",
                    START_TIMEOUT_MS / 1000
                ))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err("an executor stopped during start-up".into())
            }
        }
    }
    drop(reservation);
    log::info!("listening on {addr} with {cores} cores");
    lifecycle
        .notifier
        .ready(&format!("serving on {addr} with {cores} cores"));
    let watchdog = watchdog_every.and_then(|every| {
        notify::Watchdog::start(
            lifecycle.notifier.clone(),
            lifecycle.heartbeats.clone(),
            every,
        )
        .map_err(|e| log::warn!("cannot start the watchdog thread: {e}"))
        .ok()
    });
    let mut outcome = Ok(());
    for result in handles.join_all() {
        let failed = match result {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(e) => format!("executor failed: {e}"),
        };
        if outcome.is_ok() {
            outcome = Err(failed);
        }
    }
    drop(watchdog);
    outcome?;
    if let Some(began) = lifecycle.coordinator.began() {
        let cut = report
            .connections
            .open
            .load(std::sync::atomic::Ordering::Relaxed);
        let cut = if cut > 0 {
            format!("; {cut} connections were still open at the timeout and are cut")
        } else {
            String::new()
        };
        log::info!(
            "shutdown complete in {} ms: journal closed{cut}",
            began.elapsed().as_millis()
        );
    }
    Ok(())
}

/// The CPUs this process may run on (it may have been started under `taskset`).
fn allowed_cpus() -> glommio::Result<CpuSet, ()> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for this process.
    let mut mask: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let ok =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut mask) }
            == 0;
    let online = CpuSet::online()?;
    // SAFETY: CPU_ISSET reads the mask filled above; cpu ids are below CPU_SETSIZE.
    Ok(online.filter(|location| !ok || unsafe { libc::CPU_ISSET(location.cpu, &mask) }))
}

async fn serve_core(
    shared: Arc<Shared>,
    mesh: MeshBuilder<Envelope, glommio::channels::channel_mesh::Full>,
    recovered: Arc<Mutex<Option<Recovered>>>,
    journal_path: PathBuf,
    addr: SocketAddr,
    ready: mpsc::Sender<Result<(), String>>,
    lifecycle: Arc<Lifecycle>,
) -> Result<(), String> {
    // glommio can miss a wake-up sent from another thread to a parked executor; while
    // the cores join, tick so that a missed one is picked up at the next tick instead of
    // never (under heavy load the join otherwise hung now and then).
    let ticking = glommio::spawn_local(async {
        loop {
            glommio::timer::sleep(Duration::from_millis(START_TICK_MS)).await;
        }
    });
    let joined = mesh.join().await;
    drop(ticking);
    let (senders, receivers) = joined.map_err(|e| format!("cannot join the core mesh: {e}"))?;
    let id = senders.peer_id();
    let book = if id == JOURNAL_OWNER {
        let recovered = recovered
            .lock()
            .expect("start-up lock")
            .take()
            .expect("journal recovered once");
        let book =
            crate::orders::book::OrderBook::start(&journal_path, recovered, shared.index.clone())
                .await
                .map_err(|e| e.to_string())?;
        Some(book)
    } else {
        None
    };
    let fanout = crate::ws::fanout::Fanout::new()
        .map_err(|e| format!("cannot open core {id}'s broadcast io_uring: {e}"))?;
    let inbound = Rc::new(
        crate::ws::inbound::Inbound::new()
            .map_err(|e| format!("cannot open core {id}'s receive io_uring: {e}"))?,
    );
    glommio::spawn_local(inbound.clone().run()).detach();
    let core = Core::new(id, shared, senders, book, fanout, inbound);
    core.listen_to_peers(receivers);
    core.sockets.start_sweeper();
    core.start_releasing_emptied_rooms();
    if let (Some(book), Some(viewers)) = (&core.book, &core.services.screens) {
        viewers.observe(book);
    }
    if id == JOURNAL_OWNER {
        memory::start_trimmer(core.shared.connections.clone());
    }
    lifecycle.heartbeats.start_beating(id);
    let signal = lifecycle
        .coordinator
        .receiver()
        .ok_or_else(|| format!("core {id} has no shutdown signal socket"))?;
    let listener =
        TcpListener::bind(addr).map_err(|e| format!("core {id} cannot bind {addr}: {e}"))?;
    let _ = ready.send(Ok(()));
    drop(ready);
    futures_lite::future::or(accept_loop(&core, &listener), shutdown::signalled(signal)).await;
    drop(listener);
    let result = shutdown::drain_core(&core, &lifecycle.coordinator, &lifecycle.notifier).await;
    lifecycle.heartbeats.retire(id);
    result
}

/// Accepts connections until the future is dropped (at shutdown).
async fn accept_loop(core: &Rc<Core>, listener: &TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let core = core.clone();
                glommio::spawn_local(async move {
                    let upgraded = crate::net::http::serve(core.http.clone(), stream).await;
                    if let Some((stream, joining)) = upgraded {
                        // The WebSocket gets a task of its own, so its whole life costs
                        // only its own state: this task and its HTTP buffers end here.
                        serve_ws(core, stream, joining, 0);
                    }
                })
                .detach();
            }
            Err(e) => {
                // Out of descriptors or memory: back off instead of spinning.
                log::warn!("core {}: accept failed: {e}", core.id);
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Times a WebSocket may be passed on because its room moved while it was in flight;
/// beyond that it is refused with "try again later" (only a room closing and reopening
/// elsewhere again and again can cause it).
const HOPS_MAX: u8 = 3;

/// Sends a socket to core `home`.
async fn send_to(core: &Core, home: usize, stream: TcpStream, joining: Joining, hops: u8) {
    // SAFETY: dup(2) of a descriptor we own; the copy travels to the home core.
    let fd = unsafe { libc::dup(stream.as_raw_fd()) };
    drop(stream);
    if fd >= 0 {
        let handoff = Handoff { fd, joining, hops };
        let _ = Box::pin(core.peers.hand_off(home, handoff)).await;
    }
}

/// A socket handed over by another core.
fn adopt(core: Rc<Core>, handoff: Handoff) {
    // SAFETY: the sender duplicated this descriptor for us and closed its own copy.
    let stream = unsafe { TcpStream::from_raw_fd(handoff.fd) };
    serve_ws(core, stream, handoff.joining, handoff.hops);
}

/// A WebSocket in the service its path names, if its room lives here; otherwise on its
/// way to the core where it does. Returns at once: each path spawns its own task.
fn serve_ws(core: Rc<Core>, stream: TcpStream, joining: Joining, hops: u8) {
    let placement = core.shared.placement.clone();
    let (kind, id) = (joining.kind, core.id);
    // From reading the directory to joining the room nothing awaits, so the room
    // cannot close and move in between.
    let home = placement.home(kind, &joining.room);
    if home != id {
        if hops < HOPS_MAX {
            glommio::spawn_local(async move {
                send_to(&core, home, stream, joining, hops + 1).await;
            })
            .detach();
        } else {
            crate::net::ws::refuse(
                &core.metrics,
                stream,
                joining.greeting,
                Rejected::RoomMoving,
            );
        }
        return;
    }
    let Joining {
        room,
        greeting,
        leftover,
        ..
    } = joining;
    let Ok(peer) = stream.peer_addr() else { return };
    let permit = match core.admission.admit(peer.ip()) {
        Ok(permit) => permit,
        Err(why) => {
            if !core.services.is_open(kind, &room) {
                placement.release(kind, &room, id);
            }
            return crate::net::ws::refuse(&core.metrics, stream, greeting, why);
        }
    };
    let context = core.ws.clone();
    let endpoint = crate::metrics::Endpoint::from(kind);
    // The room name moves into the join and is gone once the client has joined.
    let join = move |slot: &Rc<_>| core.services.join(kind, &room, slot);
    crate::net::ws::serve(context, stream, permit, greeting, leftover, endpoint, join);
}
