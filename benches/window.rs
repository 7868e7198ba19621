//! The per-sample and per-broadcast cost of a room's 5-second window, with
//! time advancing so buckets keep rotating as in a live room.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use kakigori::meter::window::{Contribution, Window};

/// Connections taking turns to send, so shares spread over many contributions.
const SENDERS: usize = 1000;

/// Time between samples: 1000 senders at 5 values/s is one sample per 200 µs;
/// 1 ms steps make a bucket rotate every 100 samples.
const STEP_MS: u64 = 1;

fn add(c: &mut Criterion) {
    let mut window = Window::new(5_000, 100).expect("valid window");
    let mut senders: Vec<Contribution> = (0..SENDERS).map(|_| Contribution::default()).collect();
    let mut now_ms = 0u64;
    let mut turn = 0usize;
    c.bench_function("window add (rotating buckets)", |b| {
        b.iter(|| {
            now_ms += STEP_MS;
            turn = (turn + 1) % SENDERS;
            let value = black_box((turn % 97) as f64 + 0.5);
            black_box(window.add(&mut senders[turn], value, now_ms))
        })
    });
}

fn read(c: &mut Criterion) {
    let mut window = Window::new(5_000, 100).expect("valid window");
    let mut sender = Contribution::default();
    for now_ms in 0..5_000u64 {
        let _ = window.add(&mut sender, (now_ms % 50) as f64, now_ms);
    }
    let mut now_ms = 5_000u64;
    c.bench_function("window read", |b| {
        b.iter(|| {
            now_ms += STEP_MS;
            black_box(window.read(black_box(now_ms)))
        })
    });
}

criterion_group!(benches, add, read);
criterion_main!(benches);
