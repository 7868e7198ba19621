//! Graceful shutdown on SIGTERM or SIGINT.
//!
//! The main thread installs the handlers before any executor starts: for each core a
//! socket pair whose write end the signal handler writes a byte to
//! (`signal_hook::low_level::pipe`), and whose read end that core's executor waits on,
//! raced against its accept loop. A byte that arrives before the core listens stays in
//! the socket, so a signal during start-up is not lost. The handlers also arm a flag:
//! the second signal finds it set and ends the process at once with exit code 1, from
//! inside the handler (`_exit`), however stuck the graceful path is.
//!
//! On the first signal every core, independently: drops its listener, marks itself
//! draining (idle keep-alive connections close, answers in progress go out with
//! `Connection: close`), asks its WebSockets to close with 1001, and waits — on its
//! connections' gate — until none of its connections is open or
//! `--shutdown-timeout-ms` has passed since the signal. Each other core then tells the
//! journal owner so (a typed call), and the owner, which waits for all of them because
//! their requests may still need the journal, only then commits what is queued and
//! closes the journal. Each core's main future returns when its part is done.

use super::core::{Core, JOURNAL_OWNER};
use crate::limits::CLOSE_GOING_AWAY;
use crate::runtime::notify::Notifier;
use futures_lite::AsyncReadExt;
use signal_hook::consts::{SIGINT, SIGTERM};
use std::io;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The signals that ask for a graceful shutdown (a second one ends it at once).
pub const SIGNALS: [libc::c_int; 2] = [SIGTERM, SIGINT];

/// Exit code when a second signal cuts the graceful shutdown short.
pub const EXIT_ABRUPT: libc::c_int = 1;

/// How long the journal owner may take to commit what is queued and close the journal
/// after the connections are gone (or the timeout passed). Only a stuck disk needs it.
const JOURNAL_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Process-wide shutdown state, shared by the main thread and every core.
pub struct Coordinator {
    receivers: Mutex<Vec<OwnedFd>>,
    began: OnceLock<Instant>,
}

impl Coordinator {
    /// Installs the SIGTERM/SIGINT handlers, with one wake-up socket per core.
    pub fn install(cores: usize) -> io::Result<Coordinator> {
        let armed = Arc::new(AtomicBool::new(false));
        for signal in SIGNALS {
            // Order matters: the exit runs first, so it sees the flag the first signal set.
            signal_hook::flag::register_conditional_shutdown(signal, EXIT_ABRUPT, armed.clone())?;
            signal_hook::flag::register(signal, armed.clone())?;
        }
        let mut receivers = Vec::with_capacity(cores);
        for _ in 0..cores {
            let (read, write) = std::os::unix::net::UnixStream::pair()?;
            for signal in SIGNALS {
                signal_hook::low_level::pipe::register(signal, write.try_clone()?)?;
            }
            receivers.push(OwnedFd::from(read));
        }
        Ok(Coordinator {
            receivers: Mutex::new(receivers),
            began: OnceLock::new(),
        })
    }

    /// One core's end of the wake-up sockets; each core takes one.
    pub fn receiver(&self) -> Option<OwnedFd> {
        self.receivers.lock().ok()?.pop()
    }

    /// When the first core began to shut down, if one has.
    pub fn began(&self) -> Option<Instant> {
        self.began.get().copied()
    }

    /// Records the start of shutdown; true for the first caller only.
    fn begin(&self) -> bool {
        self.began.set(Instant::now()).is_ok()
    }
}

/// Waits (on a core's executor) until a shutdown signal arrives. If the socket fails,
/// which should not happen, this core only stops with the process.
pub async fn signalled(receiver: OwnedFd) {
    // SAFETY: the descriptor is ours alone; the glommio stream takes ownership.
    let mut socket = unsafe { glommio::net::UnixStream::from_raw_fd(receiver.into_raw_fd()) };
    let mut buf = [0u8; 16];
    loop {
        match socket.read(&mut buf).await {
            Ok(n) if n > 0 => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => {
                log::error!("the shutdown signal socket failed ({other:?}); ignoring signals");
                std::future::pending::<()>().await;
            }
        }
    }
}

/// One core's part of the shutdown, once its listener is dropped. Returns when no
/// connection is left on any core (or the timeout passed) and, on the journal owner,
/// the journal is committed and closed.
pub async fn drain_core(
    core: &Rc<Core>,
    coordinator: &Coordinator,
    notifier: &Notifier,
) -> Result<(), String> {
    let shared = &core.shared;
    let timeout = Duration::from_millis(shared.config.shutdown_timeout_ms);
    if coordinator.begin() {
        notifier.stopping();
        log::info!(
            "shutting down: not accepting, closing WebSockets with {CLOSE_GOING_AWAY}, \
             waiting up to {} ms for {} open connections",
            timeout.as_millis(),
            shared.connections.open.load(Ordering::Relaxed)
        );
    }
    let began = coordinator.began().unwrap_or_else(Instant::now);
    core.drain.begin();
    core.sockets.close_all(CLOSE_GOING_AWAY);
    let remaining = || (began + timeout).saturating_duration_since(Instant::now());
    let _ = glommio::timer::timeout(remaining(), async {
        core.admission.closed().await;
        Ok(())
    })
    .await;
    let Some(book) = &core.book else {
        // Tell the journal owner, which waits for every core before closing the journal.
        let told = core
            .invoke_on_within(JOURNAL_OWNER, remaining(), |owner| async move {
                owner.peers_drained.signal(1);
            })
            .await;
        if let Err(e) = told {
            log::debug!("core {} could not report drained: {e}", core.id);
        }
        return Ok(());
    };
    // Every other core's requests may still need the journal: wait for them too.
    let peers = (core.cores - 1) as u64;
    let _ = glommio::timer::timeout(remaining(), async {
        let _ = core.peers_drained.acquire(peers).await;
        Ok(())
    })
    .await;
    let closed = futures_lite::future::or(
        async {
            book.shutdown().await;
            true
        },
        async {
            glommio::timer::sleep(JOURNAL_CLOSE_GRACE).await;
            false
        },
    )
    .await;
    if !closed {
        return Err(format!(
            "the order journal did not close within {} s of shutdown",
            JOURNAL_CLOSE_GRACE.as_secs()
        ));
    }
    Ok(())
}
