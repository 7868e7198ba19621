//! Which core a room lives on.

use super::core::JOURNAL_OWNER;
use crate::http::route::WsKind;

/// The core a room lives on: a stable hash (FNV-1a) of endpoint and name. The screens'
/// feeds live with the journal, which tells them about every order change.
pub fn home_core(kind: WsKind, room: &str, cores: usize) -> usize {
    if !kind.has_rooms() {
        return JOURNAL_OWNER;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in [kind as u8].iter().chain(room.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % cores as u64) as usize
}
