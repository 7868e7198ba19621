//! One broadcast to a room of 1,000 in-memory connections: encode the frame once, wake
//! every member, and let each member take the newest frame — the server-side work of a
//! broadcast short of the socket writes themselves.

use criterion::{criterion_group, criterion_main, Criterion};
use kakigori::meter::broadcast::{Broadcast, Cursor};
use kakigori::meter::value::write_reading;
use kakigori::ws::slot::Slot;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};

const MEMBERS: usize = 1000;

/// Counts wake-ups, as the executor would queue them.
struct CountingWake(AtomicU64);

impl Wake for CountingWake {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn bench(c: &mut Criterion) {
    let counter = Arc::new(CountingWake(AtomicU64::new(0)));
    let waker = Waker::from(counter.clone());
    let broadcast = Broadcast::default();
    let slots: Vec<Slot> = (0..MEMBERS).map(|_| Slot::new(0, 30_000)).collect();
    let mut cursors: Vec<Cursor> = (0..MEMBERS).map(|_| Cursor::at_end(&broadcast)).collect();
    let mut json = Vec::with_capacity(64);
    let mut count = 0u64;
    c.bench_function("broadcast/one_frame_to_1000_connections", |b| {
        b.iter(|| {
            count += 1;
            json.clear();
            write_reading(42.5, count, &mut json);
            broadcast.publish(&json);
            for slot in &slots {
                slot.register(&waker);
                slot.wake();
            }
            let mut bytes = 0;
            for cursor in &mut cursors {
                if let Some((frame, _)) = cursor.newest(&broadcast) {
                    bytes += frame.len();
                }
            }
            black_box(bytes)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
