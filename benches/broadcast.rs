//! One broadcast to a room of 1,000 members, the ways a frame can reach a member: the
//! fallback (wake every member's task, each takes the newest frame — in memory, short
//! of the socket write) and the direct path (the room writes the shared frame into each
//! member's lent socket itself — here 1,000 Unix socket pairs, real sends), once as
//! one `send(2)` per member and once as the server does it, batches of io_uring
//! `SEND`s ([`Fanout`]).

use criterion::{criterion_group, criterion_main, Criterion};
use kakigori::meter::broadcast::Broadcast;
use kakigori::meter::value::write_reading;
use kakigori::ws::fanout::Fanout;
use kakigori::ws::slot::Slot;
use std::hint::black_box;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

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

fn publish(broadcast: &Broadcast, json: &mut Vec<u8>, count: u64) {
    json.clear();
    write_reading(42.5, count, json);
    broadcast.publish(json);
}

fn bench(c: &mut Criterion) {
    let counter = Arc::new(CountingWake(AtomicU64::new(0)));
    let waker = Waker::from(counter.clone());
    let broadcast = Broadcast::default();
    let slots: Vec<Rc<Slot>> = (0..MEMBERS)
        .map(|_| Rc::new(Slot::new(0, 30_000)))
        .collect();
    let mut json = Vec::with_capacity(64);
    let mut count = 0u64;
    c.bench_function("broadcast/wake_1000_members", |b| {
        b.iter(|| {
            count += 1;
            publish(&broadcast, &mut json, count);
            for slot in &slots {
                slot.register(&waker);
                slot.wake();
            }
            let mut bytes = 0;
            for slot in &slots {
                if let Some(frame) = broadcast.newest_after(&slot.broadcast_seen) {
                    bytes += frame.len();
                }
            }
            black_box(bytes)
        })
    });

    let pairs: Vec<(UnixStream, UnixStream)> = (0..MEMBERS)
        .map(|_| UnixStream::pair().expect("a socket pair"))
        .collect();
    for (slot, (ours, theirs)) in slots.iter().zip(&pairs) {
        slot.lend_socket(ours.as_raw_fd());
        theirs.set_nonblocking(true).expect("non-blocking");
    }
    let fanout = Fanout::new().expect("an io_uring");
    let mut sink = [0u8; 4096];
    let mut write_all = |name: &str, write: &dyn Fn(&Rc<[u8]>, u64) -> usize| {
        c.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                let mut spent = Duration::ZERO;
                for _ in 0..iterations {
                    count += 1;
                    let started = Instant::now();
                    publish(&broadcast, &mut json, count);
                    let sent = write(&broadcast.frame(), broadcast.version());
                    spent += started.elapsed();
                    assert_eq!(sent, MEMBERS, "every lent socket takes a frame");
                    for (_, mut theirs) in pairs.iter().map(|(a, b)| (a, b)) {
                        while theirs.read(&mut sink).is_ok_and(|n| n > 0) {}
                    }
                }
                spent
            })
        });
    };
    write_all("broadcast/send_per_member_1000", &|frame, version| {
        slots
            .iter()
            .filter(|slot| {
                let socket = slot.lent_socket().expect("lent");
                // SAFETY: the socket is open and the frame valid for its length.
                let written = unsafe {
                    libc::send(
                        socket,
                        frame.as_ptr().cast(),
                        frame.len(),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                };
                slot.broadcast_written(frame, version, written)
            })
            .count()
    });
    write_all("broadcast/io_uring_batch_1000", &|frame, version| {
        fanout.broadcast(frame, version, &slots).sent
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
