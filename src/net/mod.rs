//! The connection loops: HTTP (reads requests, asks a [`http::Router`] to answer them)
//! and WebSocket (reads frames, tells its room through a small [`ws::Member`] trait,
//! writes what the room left in its slot). Nothing here knows a service: the runtime
//! hands each loop what it needs.

pub mod admission;
pub mod drain;
pub mod http;
pub mod linger;
pub mod sockets;
pub mod ws;
