//! Chanting Kakigori: the real-time backend of a festival shaved-ice stand where guests
//! order by chanting. One thread-per-core glommio process serves REST, the chant meter,
//! lobbies and confirms, with every order in a durable journal.
//!
//! The modules form layers that point one way (docs/architecture.md):
//! `runtime` → {`api`, `net`, `services`} → {`http`, `ws`, `orders`, `meter`, `chant`,
//! `menu`, `metrics`, `limits`, `config`, `clock`}.

pub mod api;
pub mod chant;
pub mod clock;
pub mod config;
pub mod healthcheck;
pub mod http;
pub mod limits;
pub mod logger;
pub mod menu;
pub mod meter;
pub mod metrics;
pub mod net;
pub mod orders;
pub mod placement;
pub mod runtime;
pub mod screens;
pub mod services;
pub mod staff;
pub mod ws;
