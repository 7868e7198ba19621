//! The screens' pages, embedded at build time: no Node at run time, no CDN.

pub const KITCHEN_HTML: &str = include_str!("kitchen.html");
pub const BOARD_HTML: &str = include_str!("board.html");
pub const CROWD_HTML: &str = include_str!("crowd.html");

/// A screen's page, as routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// `/kitchen`: the staff kitchen board.
    Kitchen,
    /// `/board`: the public pickup board.
    Board,
    /// `/crowd`: the venue's big display of every room's chant meter and today's totals.
    Crowd,
}

impl Page {
    pub fn html(self) -> &'static str {
        match self {
            Page::Kitchen => KITCHEN_HTML,
            Page::Board => BOARD_HTML,
            Page::Crowd => CROWD_HTML,
        }
    }
}
