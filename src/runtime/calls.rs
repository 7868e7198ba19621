//! Typed calls between cores, in the style of Seastar's `invoke_on`: a caller names the
//! core and a job; the job runs there with that core's [`Core`], and its answer comes
//! back typed — or an error, always within a deadline, so a lost reply can never leave
//! a request waiting forever. A new kind of call needs no new message type: it is a
//! closure. The same bounded channel mesh carries the one other cross-core step, a
//! WebSocket handed to its room's home core.

use super::core::Core;
use crate::limits::CROSS_CORE_CALL_DEADLINE_MS;
use crate::ws::Joining;
use futures_channel::oneshot;
use futures_lite::future::BoxedLocal;
use glommio::channels::channel_mesh::{Receivers, Senders};
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::Duration;

type Answer = Box<dyn Any + Send>;
/// Work for another core: runs there, on that core's state.
type Job = Box<dyn FnOnce(Rc<Core>) -> BoxedLocal<Answer> + Send>;

/// A WebSocket whose handshake was accepted on one core, moving to its room's home core.
#[derive(Debug)]
pub struct Handoff {
    /// A duplicate of the socket's descriptor; the sending core has dropped its own.
    pub fd: RawFd,
    pub joining: Joining,
    /// Cores it went through already: a room that moved while the socket was in
    /// flight sends it on again, a bounded number of times.
    pub hops: u8,
}

/// What travels between two cores.
pub enum Envelope {
    Adopt(Handoff),
    Call { from: usize, call_id: u64, job: Job },
    Reply { call_id: u64, answer: Answer },
}

/// Why a call got no answer. Nothing is known about whether the job ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallError {
    /// The core is gone (shutting down) or its queue is closed.
    PeerGone,
    /// No answer came within the deadline.
    DeadlinePassed,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::PeerGone => f.write_str("the other core is gone"),
            CallError::DeadlinePassed => f.write_str("the other core did not answer in time"),
        }
    }
}

/// This core's end of the mesh: its senders and the calls waiting for an answer.
pub struct Peers {
    mesh: Senders<Envelope>,
    next_call_id: Cell<u64>,
    waiting: RefCell<HashMap<u64, oneshot::Sender<Answer>>>,
}

impl Peers {
    pub fn new(mesh: Senders<Envelope>) -> Peers {
        Peers {
            mesh,
            next_call_id: Cell::new(1),
            waiting: RefCell::new(HashMap::new()),
        }
    }

    /// Sends a WebSocket to its home core. On failure the descriptor is closed.
    pub async fn hand_off(&self, home: usize, handoff: Handoff) -> Result<(), CallError> {
        let fd = handoff.fd;
        if self
            .mesh
            .send_to(home, Envelope::Adopt(handoff))
            .await
            .is_err()
        {
            // SAFETY: the descriptor was duplicated for this hand-off and nobody else owns it.
            unsafe { libc::close(fd) };
            return Err(CallError::PeerGone);
        }
        Ok(())
    }
}

impl Core {
    /// Runs `job` on core `target` and returns its answer, within the default deadline.
    pub async fn invoke_on<R, F, Fut>(
        self: &Rc<Self>,
        target: usize,
        job: F,
    ) -> Result<R, CallError>
    where
        R: Send + 'static,
        F: FnOnce(Rc<Core>) -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
    {
        let deadline = Duration::from_millis(CROSS_CORE_CALL_DEADLINE_MS);
        self.invoke_on_within(target, deadline, job).await
    }

    /// [`Core::invoke_on`] with a deadline of the caller's choosing.
    pub async fn invoke_on_within<R, F, Fut>(
        self: &Rc<Self>,
        target: usize,
        deadline: Duration,
        job: F,
    ) -> Result<R, CallError>
    where
        R: Send + 'static,
        F: FnOnce(Rc<Core>) -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
    {
        if target == self.id {
            return Ok(job(self.clone()).await);
        }
        let peers = &self.peers;
        let call_id = peers.next_call_id.get();
        peers.next_call_id.set(call_id + 1);
        let (sender, receiver) = oneshot::channel();
        peers.waiting.borrow_mut().insert(call_id, sender);
        let job: Job =
            Box::new(move |core| Box::pin(async move { Box::new(job(core).await) as Answer }));
        let envelope = Envelope::Call {
            from: self.id,
            call_id,
            job,
        };
        let answered = async {
            if peers.mesh.send_to(target, envelope).await.is_err() {
                return Err(CallError::PeerGone);
            }
            receiver.await.map_err(|_| CallError::PeerGone)
        };
        let expired = async {
            glommio::timer::sleep(deadline).await;
            Err(CallError::DeadlinePassed)
        };
        let result = futures_lite::future::or(answered, expired).await;
        // Whatever happened, nobody waits for this call any more; a late answer is dropped.
        peers.waiting.borrow_mut().remove(&call_id);
        let answer = result?;
        Ok(*answer
            .downcast::<R>()
            .expect("a call's answer has the type its job returns"))
    }

    /// Runs `job` on every core at once (this one too) and gathers the answers, in core
    /// order; each within the default deadline.
    pub async fn invoke_on_all<R, F, Fut>(self: &Rc<Self>, job: F) -> Vec<Result<R, CallError>>
    where
        R: Send + 'static,
        F: FnOnce(Rc<Core>) -> Fut + Send + Clone + 'static,
        Fut: Future<Output = R> + 'static,
    {
        let calls: Vec<_> = (0..self.cores)
            .map(|target| {
                let (core, job) = (self.clone(), job.clone());
                glommio::spawn_local(async move { core.invoke_on(target, job).await })
            })
            .collect();
        let mut answers = Vec::with_capacity(calls.len());
        for call in calls {
            answers.push(call.await);
        }
        answers
    }

    /// Serves what every other core sends until the mesh closes.
    pub fn listen_to_peers(self: &Rc<Self>, receivers: Receivers<Envelope>) {
        let receivers = Rc::new(receivers);
        for peer in (0..self.cores).filter(|&p| p != self.id) {
            let core = self.clone();
            let receivers = receivers.clone();
            glommio::spawn_local(async move {
                while let Ok(Some(envelope)) = receivers.recv_from(peer).await {
                    core.on_envelope(envelope);
                }
            })
            .detach();
        }
    }

    fn on_envelope(self: &Rc<Self>, envelope: Envelope) {
        match envelope {
            Envelope::Adopt(handoff) => super::adopt(self.clone(), handoff),
            Envelope::Reply { call_id, answer } => {
                if let Some(waiter) = self.peers.waiting.borrow_mut().remove(&call_id) {
                    // The caller may have given up at its deadline just now.
                    let _ = waiter.send(answer);
                }
            }
            Envelope::Call { from, call_id, job } => {
                let core = self.clone();
                glommio::spawn_local(async move {
                    let answer = job(core.clone()).await;
                    let reply = Envelope::Reply { call_id, answer };
                    if core.peers.mesh.send_to(from, reply).await.is_err() {
                        log::debug!(
                            "core {}: core {from} left before its answer was sent",
                            core.id
                        );
                    }
                })
                .detach();
            }
        }
    }
}
