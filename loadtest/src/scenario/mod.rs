//! The scenarios and their dispatch.

use std::rc::Rc;

use crate::cli::Opts;
use crate::common::Ctx;

pub mod confirm;
pub mod festival;
pub mod idle;
pub mod lobby;
pub mod meter;
pub mod rest;

pub enum Scenario {
    Meter(Rc<meter::Cfg>),
    Idle(Rc<idle::Cfg>),
    Rest(Rc<rest::Cfg>),
    Lobby(Rc<lobby::Cfg>),
    Confirm(Rc<confirm::Cfg>),
    Festival(Rc<festival::Cfg>),
}

impl Scenario {
    /// Validate the scenario's flags before anything starts.
    pub fn from_opts(o: &Opts) -> Result<Scenario, String> {
        Ok(match o.cmd {
            "meter" => Scenario::Meter(Rc::new(meter::Cfg::from_opts(o)?)),
            "idle" => Scenario::Idle(Rc::new(idle::Cfg::from_opts(o)?)),
            "rest" => Scenario::Rest(Rc::new(rest::Cfg::from_opts(o)?)),
            "lobby" => Scenario::Lobby(Rc::new(lobby::Cfg::from_opts(o)?)),
            "confirm" => Scenario::Confirm(Rc::new(confirm::Cfg::from_opts(o)?)),
            "festival" => Scenario::Festival(Rc::new(festival::Cfg::from_opts(o)?)),
            other => return Err(format!("unknown scenario {other}")),
        })
    }

    pub async fn run(&self, ctx: Rc<Ctx>) {
        match self {
            Scenario::Meter(c) => meter::run(ctx, c.clone()).await,
            Scenario::Idle(c) => idle::run(ctx, c.clone()).await,
            Scenario::Rest(c) => rest::run(ctx, c.clone()).await,
            Scenario::Lobby(c) => lobby::run(ctx, c.clone()).await,
            Scenario::Confirm(c) => confirm::run(ctx, c.clone()).await,
            Scenario::Festival(c) => festival::run(ctx, c.clone()).await,
        }
    }
}
