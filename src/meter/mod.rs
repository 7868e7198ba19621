//! The chant meter (`/ws?room=R`): each room's 5-second window of loudness samples and
//! the bounded, conflated broadcast of its average.

pub mod broadcast;
pub mod rate;
pub mod room;
pub mod value;
pub mod window;
