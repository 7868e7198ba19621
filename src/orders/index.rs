//! The shared read index of committed orders: every core reads it without locks,
//! only the owner core writes it.
//!
//! Order numbers are dense (1..=N), so an order's place is its number: a fixed
//! directory of lazily allocated chunks, each a run of entries. An entry is two words:
//! the creation time, written once, and a state word packing the time of the last
//! change with the menu index and the status. The writer stores an entry, then raises
//! the committed count with `Release`; a reader loads the count with `Acquire` first,
//! so every number it sees at or below the count has its entry (and its chunk) in
//! place. A status change overwrites the state word in place; a reader sees the old
//! status with its time or the new one with its time, both of them committed states.
//!
//! The index also counts committed orders by menu item and status as it publishes
//! them, so `/metrics` reads a dozen counters instead of walking every order.

use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use crate::menu::MENU;
use crate::orders::{Order, Status, TIME_MS_MAX};

const CHUNK_BITS: u32 = 16;
/// Entries per chunk: 1 MiB allocated once per 65,536 orders.
const CHUNK_ENTRIES: usize = 1 << CHUNK_BITS;
const DIRECTORY_SLOTS: usize = (OrderIndex::CAPACITY_MAX >> CHUNK_BITS) as usize;
/// A state word is `updated_ms << TIME_SHIFT | menu << STATUS_BITS | status`.
const STATUS_BITS: u32 = 2;
const STATUS_MASK: u64 = (1 << STATUS_BITS) - 1;
const MENU_BITS: u32 = 6;
const TIME_SHIFT: u32 = STATUS_BITS + MENU_BITS;
const _: () = assert!(TIME_MS_MAX < 1 << (64 - TIME_SHIFT));

/// One order's place in a chunk.
struct Entry {
    /// `updated_ms`, menu and status, changed together.
    state: AtomicU64,
    /// Written once, before the order's number is published.
    created_ms: AtomicU64,
}

impl Entry {
    fn pack(order: &Order) -> u64 {
        order.updated_ms << TIME_SHIFT | u64::from(order.menu) << STATUS_BITS | order.status as u64
    }
}

/// Committed orders by number, shared as `Arc<OrderIndex>`.
pub struct OrderIndex {
    /// Chunk `i` holds orders `i * CHUNK_ENTRIES + 1 ..= (i + 1) * CHUNK_ENTRIES`;
    /// null until the first of them is published, never freed before `drop`.
    directory: Box<[AtomicPtr<Entry>]>,
    /// The highest committed number.
    committed: AtomicU64,
    /// Committed orders by `[menu index][status]`; single writer, read without order.
    counts: [[AtomicU64; Status::ALL.len()]; MENU.len()],
}

impl OrderIndex {
    /// The most orders the index (and so the store) can hold: 2^28 = 268,435,456,
    /// which costs 4 GiB of entries when full and 32 KiB of directory from the start.
    pub const CAPACITY_MAX: u64 = 1 << 28;

    pub fn new() -> Self {
        OrderIndex {
            directory: (0..DIRECTORY_SLOTS)
                .map(|_| AtomicPtr::new(ptr::null_mut()))
                .collect(),
            committed: AtomicU64::new(0),
            counts: Default::default(),
        }
    }

    pub fn counts(&self) -> [[u64; Status::ALL.len()]; MENU.len()] {
        self.counts
            .each_ref()
            .map(|row| row.each_ref().map(|count| count.load(Ordering::Relaxed)))
    }

    /// The committed state of order `number`; `None` for 0 or anything above [`len`](Self::len).
    pub fn get(&self, number: u64) -> Option<Order> {
        if number == 0 || number > self.committed.load(Ordering::Acquire) {
            return None;
        }
        let entry = self.entry(number - 1)?;
        let state = entry.state.load(Ordering::Acquire);
        Some(Order {
            number,
            menu: (state >> STATUS_BITS) as u8 & ((1 << MENU_BITS) - 1),
            status: Status::from_u8((state & STATUS_MASK) as u8)?,
            created_ms: entry.created_ms.load(Ordering::Relaxed),
            updated_ms: state >> TIME_SHIFT,
        })
    }

    /// The highest committed order number.
    pub fn len(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records a committed order. Single writer only (the owner core): `order.number`
    /// is either an existing number (a status change) or `len() + 1`.
    ///
    /// Panics on any other number, at [`CAPACITY_MAX`](Self::CAPACITY_MAX), or on a
    /// menu index or time that does not fit the entry: each means the caller lost
    /// track of what is committed.
    pub fn publish(&self, order: Order) {
        assert!(
            usize::from(order.menu) < MENU.len() && order.menu < 1 << MENU_BITS,
            "menu index {} is not on the menu or does not fit an index entry",
            order.menu
        );
        assert!(
            order.updated_ms <= TIME_MS_MAX,
            "time {} ms does not fit an index entry",
            order.updated_ms
        );
        let committed = self.committed.load(Ordering::Relaxed);
        let state = Entry::pack(&order);
        if order.number >= 1 && order.number <= committed {
            let before = self
                .entry(order.number - 1)
                .expect("a committed order's chunk exists")
                .state
                .swap(state, Ordering::Release);
            let menu_before = (before >> STATUS_BITS) & ((1 << MENU_BITS) - 1);
            self.count(menu_before as u8, (before & STATUS_MASK) as u8)
                .fetch_sub(1, Ordering::Relaxed);
            self.count(order.menu, order.status as u8)
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        assert_eq!(
            order.number,
            committed + 1,
            "published order number is neither committed nor the next one"
        );
        assert!(
            order.number <= Self::CAPACITY_MAX,
            "the order index is full ({} orders)",
            Self::CAPACITY_MAX
        );
        let position = order.number - 1;
        let slot = &self.directory[(position >> CHUNK_BITS) as usize];
        if slot.load(Ordering::Acquire).is_null() {
            let fresh = allocate_chunk();
            // A compare-exchange rather than a store keeps even a second, mistaken
            // writer memory-safe: the loser frees its own chunk, nobody else's.
            if slot
                .compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                // SAFETY: `fresh` came from `allocate_chunk` and was never shared.
                unsafe { free_chunk(fresh) };
            }
        }
        let entry = self.entry(position).expect("the chunk was just installed");
        // Both stores are ordered before the count's `Release` below.
        entry.created_ms.store(order.created_ms, Ordering::Relaxed);
        entry.state.store(state, Ordering::Release);
        self.count(order.menu, order.status as u8)
            .fetch_add(1, Ordering::Relaxed);
        self.committed.store(order.number, Ordering::Release);
    }

    fn count(&self, menu: u8, status: u8) -> &AtomicU64 {
        &self.counts[usize::from(menu)][usize::from(status)]
    }

    /// Every committed order, ascending by number, up to the count when the walk began.
    pub fn iter(&self) -> impl Iterator<Item = Order> + '_ {
        (1..=self.len()).filter_map(move |number| self.get(number))
    }

    /// The entry at 0-based `position`, if its chunk exists.
    fn entry(&self, position: u64) -> Option<&Entry> {
        let chunk = self
            .directory
            .get((position >> CHUNK_BITS) as usize)?
            .load(Ordering::Acquire);
        if chunk.is_null() {
            return None;
        }
        let offset = (position & (CHUNK_ENTRIES as u64 - 1)) as usize;
        // SAFETY: a non-null directory pointer is a live chunk of CHUNK_ENTRIES entries
        // (installed by `publish`, freed only by `drop`, which needs `&mut self`), and
        // `offset < CHUNK_ENTRIES`.
        Some(unsafe { &*chunk.add(offset) })
    }
}

impl Default for OrderIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for OrderIndex {
    fn drop(&mut self) {
        for slot in self.directory.iter_mut() {
            let chunk = *slot.get_mut();
            if !chunk.is_null() {
                // SAFETY: installed by `publish` from `allocate_chunk`; `&mut self`
                // means no reader holds an entry any more.
                unsafe { free_chunk(chunk) };
            }
        }
    }
}

fn allocate_chunk() -> *mut Entry {
    let chunk: Box<[Entry]> = (0..CHUNK_ENTRIES)
        .map(|_| Entry {
            state: AtomicU64::new(0),
            created_ms: AtomicU64::new(0),
        })
        .collect();
    Box::into_raw(chunk).cast::<Entry>()
}

/// # Safety
/// `chunk` must come from [`allocate_chunk`], be freed once, and have no reader left.
unsafe fn free_chunk(chunk: *mut Entry) {
    drop(Box::from_raw(ptr::slice_from_raw_parts_mut(
        chunk,
        CHUNK_ENTRIES,
    )));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::menu::{MenuIndex, MENU};
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    fn order(number: u64) -> Order {
        Order {
            number,
            menu: (number % MENU.len() as u64) as MenuIndex,
            status: Status::Pending,
            created_ms: 1_700_000_000_000 + number,
            updated_ms: 1_700_000_000_000 + number,
        }
    }

    #[test]
    fn empty_index_has_nothing() {
        let index = OrderIndex::new();
        assert!(index.is_empty());
        assert_eq!(index.len(), 0);
        assert_eq!(index.get(0), None);
        assert_eq!(index.get(1), None);
        assert_eq!(index.iter().count(), 0);
    }

    #[test]
    fn publish_get_iter_and_status_changes_across_chunks() {
        let index = OrderIndex::new();
        let count = 2 * CHUNK_ENTRIES as u64 + 3;
        for number in 1..=count {
            index.publish(order(number));
            assert_eq!(index.len(), number);
        }
        for number in [1, CHUNK_ENTRIES as u64, CHUNK_ENTRIES as u64 + 1, count] {
            assert_eq!(index.get(number), Some(order(number)));
            let moved = Order {
                status: Status::WaitingPickup,
                updated_ms: TIME_MS_MAX,
                ..order(number)
            };
            index.publish(moved);
            assert_eq!(index.get(number), Some(moved));
        }
        assert_eq!(index.get(0), None);
        assert_eq!(index.get(count + 1), None);
        assert_eq!(index.len(), count);
        assert!(!index.is_empty());
        let numbers: Vec<u64> = index.iter().map(|o| o.number).collect();
        assert_eq!(numbers, (1..=count).collect::<Vec<_>>());
        assert_eq!(
            index
                .iter()
                .filter(|o| o.status == Status::WaitingPickup)
                .count(),
            4
        );
    }

    #[test]
    #[should_panic(expected = "neither committed nor the next one")]
    fn publishing_a_gap_is_refused() {
        let index = OrderIndex::new();
        index.publish(order(2));
    }

    #[test]
    fn a_reader_never_sees_a_number_without_its_entry() {
        let index = Arc::new(OrderIndex::new());
        let done = Arc::new(AtomicBool::new(false));
        let total = 3 * CHUNK_ENTRIES as u64;
        let reader = {
            let index = Arc::clone(&index);
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut checks = 0u64;
                loop {
                    let finished = done.load(Ordering::Acquire);
                    let len = index.len();
                    if len > 0 {
                        assert_eq!(index.get(len), Some(order(len)), "len {len}");
                        assert_eq!(index.get(len / 2 + 1), Some(order(len / 2 + 1)));
                        checks += 1;
                    }
                    if finished {
                        return checks;
                    }
                }
            })
        };
        for number in 1..=total {
            index.publish(order(number));
        }
        done.store(true, Ordering::Release);
        assert!(reader.join().unwrap() > 0);
        assert_eq!(index.len(), total);
    }

    #[test]
    fn counts_follow_creates_and_status_changes() {
        let index = OrderIndex::new();
        for number in 1..=CHUNK_ENTRIES as u64 + 10 {
            index.publish(order(number));
        }
        let pending = Status::Pending as usize;
        let waiting = Status::WaitingPickup as usize;
        let done = Status::Completed as usize;
        let menu_of_one = usize::from(order(1).menu);
        let pending_before = index.counts()[menu_of_one][pending];
        assert_eq!(
            index.counts().iter().map(|row| row[pending]).sum::<u64>(),
            index.len()
        );
        index.publish(Order {
            status: Status::WaitingPickup,
            ..order(1)
        });
        index.publish(Order {
            status: Status::Completed,
            ..order(1)
        });
        index.publish(Order {
            status: Status::WaitingPickup,
            ..order(CHUNK_ENTRIES as u64 + 6)
        });
        let counts = index.counts();
        assert_eq!(counts[menu_of_one][pending], pending_before - 1);
        assert_eq!(counts[menu_of_one][done], 1);
        let menu_of_other = usize::from(order(CHUNK_ENTRIES as u64 + 6).menu);
        assert_ne!(
            menu_of_other, menu_of_one,
            "a second chunk and another menu item"
        );
        assert_eq!(counts[menu_of_other][waiting], 1);
        let total: u64 = counts.iter().flatten().sum();
        assert_eq!(total, index.len(), "every committed order once");
        for (menu, row) in counts.iter().enumerate() {
            for (status, &n) in row.iter().enumerate() {
                let walked = index
                    .iter()
                    .filter(|o| usize::from(o.menu) == menu && o.status as usize == status)
                    .count() as u64;
                assert_eq!(n, walked, "menu {menu} status {status}");
            }
        }
    }
}
