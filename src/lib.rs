//! Chanting Kakigori: the real-time backend of a festival shaved-ice stand where guests
//! order by chanting. One thread-per-core glommio process serves REST, the chant meter,
//! lobbies and confirms, with every order in a durable journal.

pub mod api;
pub mod chant;
pub mod config;
pub mod confirm;
pub mod healthcheck;
pub mod http;
pub mod lobby;
pub mod logger;
pub mod menu;
pub mod meter;
pub mod metrics;
pub mod orders;
pub mod runtime;
pub mod screens;
pub mod staff;
pub mod ws;
