//! Who may open a connection: `--connections-max` over all cores and
//! `--connections-per-ip-max` per client address on this core. Every admitted
//! connection holds a [`Permit`] for its whole life, which also holds this core's
//! shutdown gate open, so shutdown can wait for exactly the connections still running.

use crate::metrics::Rejected;
use glommio::sync::{Gate, Pass, Semaphore};
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Open connections over all cores (atomics touched once per connection).
#[derive(Default)]
pub struct ConnectionCounts {
    pub open: AtomicUsize,
    /// The most open at once since memory was last given back.
    pub peak: AtomicUsize,
}

pub struct Admission {
    counts: Arc<ConnectionCounts>,
    per_ip: RefCell<HashMap<IpAddr, u32>>,
    connections_max: usize,
    per_ip_max: usize,
    gate: Gate,
    /// Closed once the gate has closed: wakes every waiter of [`Admission::closed`].
    drained: Rc<Semaphore>,
}

/// One connection slot; given back when dropped.
pub struct Permit {
    admission: Rc<Admission>,
    ip: IpAddr,
    /// None once shutdown closed the gate: a hand-off that arrives then is served (and
    /// closed at once) without holding shutdown up.
    _pass: Option<Pass>,
}

impl Admission {
    pub fn new(
        counts: Arc<ConnectionCounts>,
        connections_max: usize,
        per_ip_max: usize,
    ) -> Admission {
        Admission {
            counts,
            per_ip: RefCell::new(HashMap::new()),
            connections_max,
            per_ip_max,
            gate: Gate::new(),
            drained: Rc::new(Semaphore::new(0)),
        }
    }

    /// Takes a connection slot for a client, or says which limit refused it.
    pub fn admit(self: &Rc<Self>, ip: IpAddr) -> Result<Permit, Rejected> {
        let mut per_ip = self.per_ip.borrow_mut();
        let from_ip = per_ip.get(&ip).copied().unwrap_or(0);
        if from_ip as usize >= self.per_ip_max {
            return Err(Rejected::PerIpMax);
        }
        let total = self.counts.open.fetch_add(1, Ordering::Relaxed);
        if total >= self.connections_max {
            self.counts.open.fetch_sub(1, Ordering::Relaxed);
            return Err(Rejected::ConnectionsMax);
        }
        self.counts.peak.fetch_max(total + 1, Ordering::Relaxed);
        per_ip.insert(ip, from_ip + 1);
        Ok(Permit {
            admission: self.clone(),
            ip,
            _pass: self.gate.enter().ok(),
        })
    }

    /// Resolves once every connection admitted on this core has ended. The first call
    /// closes the gate: connections admitted from then on do not hold the wait up.
    pub async fn closed(&self) {
        if self.gate.is_open() {
            // The gate allows one closer, whose future must not be dropped before the
            // last pass is (glommio would then panic): a task of its own owns it.
            let (gate, drained) = (self.gate.clone(), self.drained.clone());
            glommio::spawn_local(async move {
                let _ = gate.close().await;
                drained.close();
            })
            .detach();
        }
        // Never succeeds: it fails exactly when the gate has closed.
        let _ = self.drained.acquire(1).await;
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let admission = &self.admission;
        admission.counts.open.fetch_sub(1, Ordering::Relaxed);
        let mut per_ip = admission.per_ip.borrow_mut();
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_refuse_and_dropped_permits_give_slots_back() {
        glommio::LocalExecutor::default().run(async {
            let counts = Arc::new(ConnectionCounts::default());
            let admission = Rc::new(Admission::new(counts.clone(), 3, 2));
            let (a, b): (IpAddr, IpAddr) =
                ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
            let first = admission.admit(a).unwrap();
            let _second = admission.admit(a).unwrap();
            assert_eq!(admission.admit(a).err(), Some(Rejected::PerIpMax));
            let _third = admission.admit(b).unwrap();
            assert_eq!(admission.admit(b).err(), Some(Rejected::ConnectionsMax));
            drop(first);
            assert_eq!(counts.open.load(Ordering::Relaxed), 2);
            assert!(admission.admit(a).is_ok());
            assert_eq!(counts.peak.load(Ordering::Relaxed), 3);
        });
    }

    #[test]
    fn closing_waits_for_every_permit() {
        glommio::LocalExecutor::default().run(async {
            let admission = Rc::new(Admission::new(Arc::default(), 10, 10));
            let permit = admission.admit("127.0.0.1".parse().unwrap()).unwrap();
            let done = Rc::new(std::cell::Cell::new(false));
            let waiter = {
                let (admission, done) = (admission.clone(), done.clone());
                glommio::spawn_local(async move {
                    admission.closed().await;
                    done.set(true);
                })
            };
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
            assert!(!done.get(), "a connection is still open");
            drop(permit);
            waiter.await;
            assert!(done.get());
        });
    }
}
