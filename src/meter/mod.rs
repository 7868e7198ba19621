//! The chant meter's pure pieces: the 5-second window of loudness samples, the rate cap,
//! value parsing, and the conflated broadcast stream. The rooms that use them live in
//! `services::rooms`.

pub mod broadcast;
pub mod rate;
pub mod value;
pub mod window;
