//! The shop's screens: a staff kitchen board (`/kitchen`), a public pickup board
//! (`/board`) and the venue's crowd display (`/crowd`), static pages embedded in the
//! binary. The boards are kept live over WebSockets (`/ws/kitchen`, `/ws/board`) fed by
//! the journal owner each time an order change becomes durable; the crowd display
//! listens to each flavour's `/ws` room and takes today's totals from `/ws/board`.

pub mod live;
pub mod pages;
pub mod totals;
