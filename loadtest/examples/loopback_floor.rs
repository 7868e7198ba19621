//! The machine's floor for a message's latency: one small TCP round trip between two
//! processes on loopback, with nothing else in the way. A probe's send-to-receive time
//! through the server can only be above it: the server adds its own work to two such
//! hops (the value in, the broadcast out).
//!
//! ```text
//! taskset -c 0 target/release/examples/loopback_floor serve --listen 127.0.0.1:18310 &
//! taskset -c 1 target/release/examples/loopback_floor ping --to 127.0.0.1:18310
//! ```
//!
//! `ping` sends a 29-byte message, waits for it to come back, and repeats after a gap
//! (20 ms by default, so both sides go idle in between, as between a chanter's values).

use clap::{Parser, Subcommand};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "One small TCP round trip on loopback: the floor under a probe's latency")]
struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Echo every byte back, for any number of connections
    Serve {
        #[arg(long, default_value = "127.0.0.1:18310")]
        listen: String,
    },
    /// Time round trips to a `serve` and print their percentiles
    Ping {
        #[arg(long, default_value = "127.0.0.1:18310")]
        to: String,
        /// Round trips to time
        #[arg(long, default_value_t = 500)]
        count: usize,
        /// Pause between round trips, in milliseconds
        #[arg(long, default_value_t = 20)]
        gap_ms: u64,
    },
}

const MESSAGE: &[u8; 29] = br#"{"average":50.5,"count":25}.."#;

fn main() -> std::io::Result<()> {
    match Args::parse().mode {
        Mode::Serve { listen } => serve(&listen),
        Mode::Ping { to, count, gap_ms } => ping(&to, count, Duration::from_millis(gap_ms)),
    }
}

fn serve(listen: &str) -> std::io::Result<()> {
    for stream in TcpListener::bind(listen)?.incoming() {
        let mut stream = stream?;
        stream.set_nodelay(true)?;
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stream.read(&mut buf) {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        });
    }
    Ok(())
}

fn ping(to: &str, count: usize, gap: Duration) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(to)?;
    stream.set_nodelay(true)?;
    let mut echo = [0u8; MESSAGE.len()];
    let mut round_trips_us: Vec<f64> = Vec::with_capacity(count);
    for _ in 0..count {
        let sent = Instant::now();
        stream.write_all(MESSAGE)?;
        stream.read_exact(&mut echo)?;
        round_trips_us.push(sent.elapsed().as_secs_f64() * 1e6);
        std::thread::sleep(gap);
    }
    round_trips_us.sort_by(f64::total_cmp);
    let at = |q: f64| round_trips_us[((round_trips_us.len() - 1) as f64 * q) as usize];
    println!(
        "{count} round trips of {} bytes, {} ms apart: p50 {:.0} µs, p90 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
        MESSAGE.len(),
        gap.as_millis(),
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );
    Ok(())
}
