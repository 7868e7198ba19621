//! Which core each room lives on, shared by every core without a lock.
//!
//! A festival has a few very hot rooms (the four menu items), so a bare `hash % cores`
//! is not enough: FNV-1a's low bits put all four on one core of two. When a room opens,
//! a well-mixed hash names two candidate cores and the less loaded one wins (the power
//! of two choices); the choice is recorded in a lock-free directory that every core
//! reads, stays for the room's whole life, and is released by the home core when the
//! room empties. Load is what each core has claimed: open rooms (weighted) and members,
//! with a bias against the journal owner, which also commits every order.
//!
//! The rules that keep one room on one core:
//! * an entry is added only where none exists (`get_or_insert`), by whichever core
//!   first needs the room; the room's instance is created only on the core its entry
//!   names, right after that core has read the entry;
//! * only the core an entry names removes it, in the same step that closes (or fails to
//!   open) its instance.
//!
//! So a room's instance exists only on the core its entry names. A connection that
//! arrives for a room that moved (closed and reopened elsewhere while the connection
//! was in flight) reads the directory again and is passed on.

use crate::http::route::WsKind;
use crossbeam_skiplist::SkipMap;
use crossbeam_utils::CachePadded;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// One open room counts as this many members when comparing loads: a room that has
/// just opened will fill.
pub const ROOM_LOAD_WEIGHT: usize = 4;
/// The journal owner counts as this much busier than it looks.
pub const OWNER_LOAD_BIAS: usize = 2;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RoomKey {
    kind: u8,
    name: Box<str>,
}

#[derive(Debug, Clone, Copy)]
struct Home {
    core: usize,
    /// Unique per claim, so a claimer can tell whether its own entry won.
    claim: u64,
}

#[derive(Default)]
struct CoreLoad {
    rooms: AtomicUsize,
    members: AtomicUsize,
}

pub struct Placement {
    directory: SkipMap<RoomKey, Home>,
    loads: Box<[CachePadded<CoreLoad>]>,
    /// Where the journal and the screens' feeds live.
    owner: usize,
    next_claim: AtomicU64,
    hasher: std::hash::RandomState,
}

/// What a core has claimed: rooms in the directory that name it (open, in flight, or
/// emptied and kept a while) and its WebSockets. Placement weighs these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    pub rooms: usize,
    pub members: usize,
}

impl Placement {
    pub fn new(cores: usize, owner: usize) -> Placement {
        assert!(cores > 0 && owner < cores);
        Placement {
            directory: SkipMap::new(),
            loads: (0..cores).map(|_| CachePadded::default()).collect(),
            owner,
            next_claim: AtomicU64::new(1),
            hasher: std::hash::RandomState::new(),
        }
    }

    fn key(kind: WsKind, room: &str) -> RoomKey {
        RoomKey {
            kind: kind as u8,
            name: room.into(),
        }
    }

    /// The core room `room` of `kind` lives on. A room that is not open anywhere is
    /// given the less loaded of its two candidate cores, recorded here.
    pub fn home(&self, kind: WsKind, room: &str) -> usize {
        if !kind.has_rooms() {
            return self.owner;
        }
        let key = Placement::key(kind, room);
        if let Some(entry) = self.directory.get(&key) {
            return entry.value().core;
        }
        let chosen = self.choose(&key);
        let claim = self.next_claim.fetch_add(1, Ordering::Relaxed);
        let entry = self.directory.get_or_insert(
            key,
            Home {
                core: chosen,
                claim,
            },
        );
        let home = *entry.value();
        if home.claim == claim {
            self.loads[chosen].rooms.fetch_add(1, Ordering::Relaxed);
        }
        home.core
    }

    /// Core `core` no longer holds room `room`: forget where it lived. Only the core
    /// the entry names may release it; anyone else's call changes nothing.
    pub fn release(&self, kind: WsKind, room: &str, core: usize) {
        let Some(entry) = self.directory.get(&Placement::key(kind, room)) else {
            return;
        };
        if entry.value().core == core && entry.remove() {
            self.loads[core].rooms.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// A connection joined (`+1`) or left (`-1`) a room on `core`.
    pub fn members_delta(&self, core: usize, delta: isize) {
        let members = &self.loads[core].members;
        if delta >= 0 {
            members.fetch_add(delta as usize, Ordering::Relaxed);
        } else {
            members.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        }
    }

    pub fn load(&self, core: usize) -> Load {
        let load = &self.loads[core];
        Load {
            rooms: load.rooms.load(Ordering::Relaxed),
            members: load.members.load(Ordering::Relaxed),
        }
    }

    /// Rooms in the directory, over all cores.
    #[cfg(test)]
    pub fn rooms(&self) -> usize {
        self.directory.len()
    }

    fn weighed(&self, core: usize) -> usize {
        let load = self.load(core);
        let bias = if core == self.owner {
            OWNER_LOAD_BIAS
        } else {
            0
        };
        load.members + ROOM_LOAD_WEIGHT * load.rooms + bias
    }

    /// The less loaded of the room's two candidate cores; the first on a tie, so
    /// rooms spread by hash when cores are equally busy.
    fn choose(&self, key: &RoomKey) -> usize {
        let cores = self.loads.len() as u64;
        let mut hasher = self.hasher.build_hasher();
        hasher.write_u8(key.kind);
        hasher.write(key.name.as_bytes());
        let hash = hasher.finish();
        let first = (hash % cores) as usize;
        let mut second = ((hash >> 32) % cores) as usize;
        if second == first {
            second = (first + 1) % cores as usize;
        }
        if self.weighed(second) < self.weighed(first) {
            second
        } else {
            first
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MENU: [&str; 4] = ["giiku-sai", "giiku-haku", "giiku-ten", "giiku-camp"];

    #[test]
    fn the_four_menu_rooms_spread_over_two_cores() {
        for _ in 0..50 {
            let placement = Placement::new(2, 0);
            let homes: Vec<usize> = MENU
                .iter()
                .map(|room| placement.home(WsKind::Meter, room))
                .collect();
            let on_zero = homes.iter().filter(|&&c| c == 0).count();
            assert_eq!(on_zero, 2, "{homes:?}");
        }
    }

    #[test]
    fn a_room_stays_where_it_opened_until_released_by_its_home() {
        let placement = Placement::new(4, 0);
        let home = placement.home(WsKind::Meter, "r");
        for _ in 0..10 {
            assert_eq!(placement.home(WsKind::Meter, "r"), home);
        }
        assert_eq!(placement.load(home).rooms, 1);
        placement.release(WsKind::Meter, "r", (home + 1) % 4);
        assert_eq!(placement.rooms(), 1, "only the home core releases");
        placement.release(WsKind::Meter, "r", home);
        assert_eq!(placement.rooms(), 0);
        assert_eq!(placement.load(home).rooms, 0);
    }

    #[test]
    fn kinds_are_separate_rooms_and_screens_live_with_the_journal() {
        let placement = Placement::new(2, 1);
        placement.home(WsKind::Meter, "giiku-sai");
        placement.home(WsKind::Stay, "giiku-sai");
        assert_eq!(placement.rooms(), 2);
        assert_eq!(placement.home(WsKind::Board, ""), 1);
        assert_eq!(placement.home(WsKind::Kitchen, ""), 1);
        assert_eq!(placement.rooms(), 2);
    }

    #[test]
    fn many_small_rooms_balance_by_load() {
        let placement = Placement::new(4, 0);
        for i in 0..4_000 {
            let core = placement.home(WsKind::Stay, &format!("room-{i}"));
            placement.members_delta(core, 1);
        }
        let weights: Vec<usize> = (0..4).map(|c| placement.weighed(c)).collect();
        let (min, max) = (weights.iter().min().unwrap(), weights.iter().max().unwrap());
        // Two choices keep every core within a few rooms of the others (a plain hash
        // would leave them about sqrt(1000) rooms apart).
        let room = ROOM_LOAD_WEIGHT + 1;
        assert!(max - min <= 3 * room + OWNER_LOAD_BIAS, "{weights:?}");
    }

    #[test]
    fn concurrent_claims_agree_on_one_home_and_count_it_once() {
        let placement = std::sync::Arc::new(Placement::new(2, 0));
        let homes: Vec<Vec<usize>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    let placement = placement.clone();
                    scope.spawn(move || {
                        (0..500)
                            .map(|i| placement.home(WsKind::Meter, &format!("r{i}")))
                            .collect()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        for room in 0..500 {
            assert!(
                homes.iter().all(|h| h[room] == homes[0][room]),
                "room {room}"
            );
        }
        let rooms: usize = (0..2).map(|c| placement.load(c).rooms).sum();
        assert_eq!(rooms, 500);
    }
}
