//! The kernel's price of a broadcast, for comparison with the server: a program that
//! does nothing but accept WebSockets and, every 20 ms, write one fixed 29-byte text
//! frame to every connection — with one `send(2)` each, or (`--io-uring`) as batches
//! of io_uring `SEND`s, the way the server does. It reads and drops what clients send
//! (epoll, edge-triggered; at least one look per tick, even when sending ran over
//! it), answers any other request with `200 {"status":"ok"}`, and holds no room state.
//!
//! Run it where the server would run and point `kakigori-loadtest meter` at it; read
//! only the delivered frames per second and its CPU from the report (it sends a fixed
//! average, so the harness's content checks fail, by design):
//!
//! ```text
//! taskset -c 0 target/release/examples/fanout_ceiling --listen 127.0.0.1:18300 [--io-uring] &
//! taskset -c 1 target/release/kakigori-loadtest meter --url http://127.0.0.1:18300 \
//!     --rooms 4 --clients 1500 --probe-rooms 1 --duration-s 10 --server-pid $!
//! ```

use clap::Parser;
use io_uring::{opcode, types, IoUring};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    about = "Writes one fixed frame to every WebSocket every 20 ms: the kernel's price of a broadcast"
)]
struct Args {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:18300")]
    listen: String,
    /// Send in batches of io_uring SENDs instead of one send(2) per connection
    #[arg(long)]
    io_uring: bool,
}

const TICK_MS: u64 = 20;
const BATCH_SENDS_MAX: usize = 1024;

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(&args.listen)?;
    // SAFETY: plain system calls on descriptors this program owns.
    let epoll = unsafe { libc::epoll_create1(0) };
    let sockets: Arc<Mutex<Vec<RawFd>>> = Arc::default();
    let accepted = sockets.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            if let Some(socket) = upgrade(stream) {
                let mut event = libc::epoll_event {
                    events: (libc::EPOLLIN | libc::EPOLLET) as u32,
                    u64: socket as u64,
                };
                // SAFETY: as above.
                unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, socket, &mut event) };
                accepted.lock().expect("accept lock").push(socket);
            }
        }
    });
    eprintln!("listening on {}", args.listen);
    let payload = br#"{"average":50.5,"count":25}"#;
    let mut frame = vec![0x81, payload.len() as u8];
    frame.extend_from_slice(payload);
    let mut ring = if args.io_uring {
        Some(IoUring::new(BATCH_SENDS_MAX as u32)?)
    } else {
        None
    };
    let mut next = Instant::now();
    loop {
        next += Duration::from_millis(TICK_MS);
        drain_until(epoll, next);
        next = next.max(Instant::now());
        let sockets = sockets.lock().expect("accept lock");
        match ring.as_mut() {
            Some(ring) => send_batched(ring, &sockets, &frame)?,
            None => {
                for &socket in sockets.iter() {
                    // SAFETY: as above; the frame is valid for its length.
                    unsafe { libc::send(socket, frame.as_ptr().cast(), frame.len(), FLAGS) };
                }
            }
        }
    }
}

const FLAGS: i32 = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;

fn send_batched(ring: &mut IoUring, sockets: &[RawFd], frame: &[u8]) -> std::io::Result<()> {
    for batch in sockets.chunks(BATCH_SENDS_MAX) {
        for &socket in batch {
            let send = opcode::Send::new(types::Fd(socket), frame.as_ptr(), frame.len() as u32)
                .flags(FLAGS)
                .build();
            // SAFETY: the frame outlives the batch: all completions are reaped below.
            unsafe { ring.submission().push(&send) }.expect("a batch fits the queue");
        }
        let mut reaped = 0;
        while reaped < batch.len() {
            ring.submit_and_wait(batch.len() - reaped)?;
            reaped += ring.completion().count();
        }
    }
    Ok(())
}

/// Reads and drops what clients sent until `until`. It takes at least one look even
/// when `until` has passed: a ceiling too busy sending to read would price a broadcast
/// without the reads the server has to do.
fn drain_until(epoll: RawFd, until: Instant) {
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut sink = [0u8; 4096];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let wait_ms = if left.is_zero() {
            0
        } else {
            left.as_millis().max(1) as i32
        };
        // SAFETY: as above; the buffers are valid for their lengths.
        let ready = unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), 256, wait_ms) };
        for event in &events[..ready.max(0) as usize] {
            let socket = event.u64 as RawFd;
            while unsafe { libc::recv(socket, sink.as_mut_ptr().cast(), sink.len(), FLAGS) } > 0 {}
        }
        if Instant::now() >= until && ready < events.len() as i32 {
            return;
        }
    }
}

/// Completes a WebSocket handshake and keeps the socket open; answers anything else.
fn upgrade(mut stream: TcpStream) -> Option<RawFd> {
    let _ = stream.set_nodelay(true);
    let mut head = [0u8; 2048];
    let n = stream.peek(&mut head).ok()?;
    let text = String::from_utf8_lossy(&head[..n]).to_ascii_lowercase();
    if !text.contains("upgrade: websocket") {
        let _ = stream.read(&mut head);
        let body = r#"{"status":"ok"}"#;
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\naccess-control-allow-origin: *\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        return None;
    }
    let websocket = async_tungstenite::tungstenite::accept(stream).ok()?;
    let socket = websocket.get_ref().as_raw_fd();
    // The connection lives until the process ends.
    std::mem::forget(websocket);
    Some(socket)
}
