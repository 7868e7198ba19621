//! The shop's screens: a staff kitchen board (`/kitchen`) and a public pickup board
//! (`/board`), both static pages embedded in the binary, kept live over WebSockets
//! (`/ws/kitchen`, `/ws/board`) fed by the journal owner each time an order change
//! becomes durable.

pub mod live;
pub mod pages;
