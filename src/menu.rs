//! The shop's menu: four shaved-ice flavours, each named after a Geek Project event.
//! The table is the contract (SPEC.md §1): ids, names and descriptions are served
//! byte for byte as the original front end expects them.

/// One flavour on the menu. `event` and `flavour` are the words every chant line
/// for this item must contain (SPEC.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MenuItem {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub event: &'static str,
    pub flavour: &'static str,
}

/// Position of an item in [`MENU`]; what the journal stores instead of the id.
pub type MenuIndex = u8;

pub const MENU: [MenuItem; 4] = [
    MenuItem {
        id: "giiku-sai",
        name: "技育祭な いちご味",
        description: "技育祭をイメージしたいちご味のかき氷",
        event: "技育祭",
        flavour: "ストロベリー",
    },
    MenuItem {
        id: "giiku-haku",
        name: "技育博な メロン味",
        description: "技育博をイメージしたメロン味のかき氷",
        event: "技育博",
        flavour: "メロン",
    },
    MenuItem {
        id: "giiku-ten",
        name: "技育展な ブルーハワイ味",
        description: "技育展をイメージしたブルーハワイ味のかき氷",
        event: "技育展",
        flavour: "ブルーハワイ",
    },
    MenuItem {
        id: "giiku-camp",
        name: "技育CAMPな オレンジ味",
        description: "技育CAMPをイメージしたオレンジ味のかき氷",
        event: "技育キャンプ",
        flavour: "オレンジ",
    },
];

/// Finds a menu item by its id.
pub fn find(id: &str) -> Option<MenuIndex> {
    MENU.iter()
        .position(|item| item.id == id)
        .map(|i| i as MenuIndex)
}

/// The item at `index`; panics on an index that [`find`] never returns.
pub fn item(index: MenuIndex) -> &'static MenuItem {
    &MENU[usize::from(index)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_knows_every_id_and_nothing_else() {
        for (i, entry) in MENU.iter().enumerate() {
            assert_eq!(find(entry.id), Some(i as MenuIndex));
            assert_eq!(item(i as MenuIndex).id, entry.id);
        }
        assert_eq!(find("giiku"), None);
        assert_eq!(find(""), None);
    }
}
