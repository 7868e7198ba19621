//! Every limit and code that more than one module must agree on, stated once. Names
//! carry their unit or end in `_max`; the relations between them are checked when the
//! crate compiles, so changing one cannot silently break another.

// WebSocket close codes (RFC 6455 §7.4.1).

/// The conversation is over (a lobby filled, an order was delivered, the client asked).
pub const CLOSE_NORMAL: u16 = 1000;
/// The server is shutting down, or the client was silent past the idle timeout.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// The client broke the protocol (unmasked frame, bad opcode, bad close code).
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// A text message was not UTF-8.
pub const CLOSE_INVALID_PAYLOAD: u16 = 1007;
/// A kitchen screen sent a wrong staff token ("policy violation").
pub const CLOSE_UNAUTHORIZED: u16 = 1008;
/// A message was larger than `--ws-message-bytes-max`.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// A limit refused the connection: try again later.
pub const CLOSE_TRY_AGAIN_LATER: u16 = 1013;

// WebSocket framing.

/// The largest frame header a client may send: 2 + 8 length bytes + 4 mask bytes.
pub const CLIENT_FRAME_HEADER_BYTES_MAX: usize = 14;
/// The largest frame header the server writes (unmasked): 2 + 8 length bytes.
pub const SERVER_FRAME_HEADER_BYTES_MAX: usize = 10;
/// Control frames (close, ping, pong) carry at most this much payload.
pub const CONTROL_PAYLOAD_BYTES_MAX: usize = 125;
/// A close frame's reason text, after its two code bytes.
pub const CLOSE_REASON_BYTES_MAX: usize = CONTROL_PAYLOAD_BYTES_MAX - 2;

/// Personal frames (pongs, lobby counts, an order) waiting for a client that is not
/// reading; beyond this the client is dropped rather than buffered for.
pub const OUTBOX_BYTES_MAX: usize = 16 << 10;

/// The kernel send buffer of a WebSocket (Linux doubles it for its bookkeeping). Rooms
/// write broadcasts straight into it, so it is the backlog a slow reader can build up
/// before it falls back to conflation: about a thousand averages, seconds of them.
pub const WS_SEND_BUFFER_BYTES: usize = 32 << 10;

/// The longest `room` query parameter, in bytes of UTF-8.
pub const ROOM_BYTES_MAX: usize = 128;

// Time.

/// Width of one bucket of the meter's window: the window's old edge is this precise,
/// and `--meter-window-ms` must be a multiple of it.
pub const METER_BUCKET_MS: u64 = 100;

/// How often each core's heartbeat sweep runs; pings and idle drops are this precise.
pub const HEARTBEAT_SWEEP_MS: u64 = 250;

/// A call to another core that has not been answered within this time fails, so a lost
/// reply can never leave a request waiting forever. Generous: an order call includes a
/// journal sync, which a slow disk can stretch to seconds.
pub const CROSS_CORE_CALL_DEADLINE_MS: u64 = 5_000;

/// How long a room that emptied keeps its core in the directory. Lobbies empty and
/// refill every few joins; if each time the lobby could move to another core, joins in
/// flight to the old one would chase it.
pub const EMPTIED_ROOM_KEPT_MS: u64 = 5_000;

/// Emptied rooms keeping their core at once, per core; a room that empties beyond
/// this gives its core up at once.
pub const EMPTIED_ROOMS_KEPT_MAX: usize = 65_536;

/// Messages queued per ordered pair of cores before a sender waits.
pub const CROSS_CORE_QUEUE_MAX: usize = 1024;

// The relations between them.

// A close frame is always sent, even to a client whose outbox is otherwise full.
const _: () = assert!(SERVER_FRAME_HEADER_BYTES_MAX + CONTROL_PAYLOAD_BYTES_MAX < OUTBOX_BYTES_MAX);
// Every close frame fits the control-frame limit.
const _: () = assert!(2 + CLOSE_REASON_BYTES_MAX == CONTROL_PAYLOAD_BYTES_MAX);
// A server frame header never exceeds a client one (clients add a mask).
const _: () = assert!(SERVER_FRAME_HEADER_BYTES_MAX + 4 == CLIENT_FRAME_HEADER_BYTES_MAX);
// Heartbeats are checked several times per second of ping interval.
const _: () = assert!(HEARTBEAT_SWEEP_MS < 1_000);
