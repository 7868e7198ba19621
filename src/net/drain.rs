//! A core's "we are draining" state: HTTP connections check it between requests, and
//! idle ones wait on it next to their read.

use std::cell::Cell;

pub struct Drain {
    draining: Cell<bool>,
    /// Never has units; closing it wakes every waiter at once.
    gate: glommio::sync::Semaphore,
}

impl Default for Drain {
    fn default() -> Drain {
        Drain {
            draining: Cell::new(false),
            gate: glommio::sync::Semaphore::new(0),
        }
    }
}

impl Drain {
    pub fn is_draining(&self) -> bool {
        self.draining.get()
    }

    /// Starts draining and wakes every waiter.
    pub fn begin(&self) {
        if !self.draining.replace(true) {
            self.gate.close();
        }
    }

    /// Resolves once draining has begun.
    pub async fn wait(&self) {
        if !self.is_draining() {
            // Fails (closed) exactly when draining begins; it never succeeds.
            let _ = self.gate.acquire(1).await;
        }
    }
}
