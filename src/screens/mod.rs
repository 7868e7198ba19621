//! The shop's screens: a staff kitchen board (`/kitchen`), a public pickup board
//! (`/board`) and the venue's crowd display (`/crowd`), static pages embedded in the
//! binary, and the order totals the crowd display shows. The boards' live feeds
//! (`/ws/kitchen`, `/ws/board`) are `services::screens`; the crowd display listens to
//! each flavour's `/ws` room and takes today's totals from `/ws/board`.

pub mod pages;
pub mod totals;
