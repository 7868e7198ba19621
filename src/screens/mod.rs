//! The shop's screens: a staff kitchen board (`/kitchen`) and a public pickup board
//! (`/board`), static pages embedded in the binary. Their live feeds (`/ws/kitchen`,
//! `/ws/board`) are `services::screens`.

pub mod pages;
