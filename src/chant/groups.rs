//! One chant line per lobby group. Guests who chant together should chant the same
//! words, but each page asks `POST /api/v1/chant` for itself, twice, on whichever core
//! its connection landed. So when a lobby of a menu item forms a group, that group's
//! line is chosen once and published here, where every core reads it: for the next
//! [`GROUP_LINE_TTL_MS`] every chant request for that item gets it.

use crate::menu::{MenuIndex, MENU};
use arc_swap::ArcSwapOption;
use std::sync::Arc;

/// How long after a group formed its line is served: the countdown (10 s by default)
/// and the chant's start, when pages ask, with room to spare.
pub const GROUP_LINE_TTL_MS: u64 = 30_000;

struct GroupLine {
    formed_unix_ms: u64,
    line: Arc<str>,
}

/// The newest group's line for each menu item, shared by every core.
pub struct GroupLines {
    lines: [ArcSwapOption<GroupLine>; MENU.len()],
}

impl Default for GroupLines {
    fn default() -> GroupLines {
        GroupLines {
            lines: std::array::from_fn(|_| ArcSwapOption::empty()),
        }
    }
}

impl GroupLines {
    /// The line of the group of `menu` that formed at `formed_unix_ms`.
    pub fn publish(&self, menu: MenuIndex, formed_unix_ms: u64, line: &str) {
        self.lines[usize::from(menu)].store(Some(Arc::new(GroupLine {
            formed_unix_ms,
            line: Arc::from(line),
        })));
    }

    /// The line of a group of `menu` that formed within the last
    /// [`GROUP_LINE_TTL_MS`], if any.
    pub fn recent(&self, menu: MenuIndex, now_unix_ms: u64) -> Option<Arc<str>> {
        let group = self.lines[usize::from(menu)].load();
        let group = group.as_ref()?;
        let age_ms = now_unix_ms.saturating_sub(group.formed_unix_ms);
        (age_ms < GROUP_LINE_TTL_MS).then(|| group.line.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_line_is_served_for_its_menu_item_until_it_is_too_old() {
        let lines = GroupLines::default();
        assert!(lines.recent(0, 1_000).is_none());
        lines.publish(0, 1_000, "line of the group");
        assert_eq!(lines.recent(0, 1_000).as_deref(), Some("line of the group"));
        assert_eq!(
            lines.recent(0, 30_999).as_deref(),
            Some("line of the group")
        );
        assert!(lines.recent(0, 31_000).is_none(), "too old");
        assert!(lines.recent(1, 1_000).is_none(), "another item's");
        lines.publish(0, 40_000, "the next group's");
        assert_eq!(lines.recent(0, 40_001).as_deref(), Some("the next group's"));
    }
}
