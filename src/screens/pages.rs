//! The two screens' pages, embedded at build time: no Node at run time, no CDN.

pub const KITCHEN_HTML: &str = include_str!("kitchen.html");
pub const BOARD_HTML: &str = include_str!("board.html");
