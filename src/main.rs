//! The `kakigori` binary: parse the configuration, then serve (or probe a server).

use kakigori::config::{self, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    // `--help` and `--version` exit 0 here; a bad value exits 2, naming the flag.
    let command = config::parse(std::env::args_os()).unwrap_or_else(|e| e.exit());
    match command {
        Command::Healthcheck(config) => kakigori::healthcheck::probe(&config),
        Command::Serve(config) => {
            kakigori::logger::init(&config.log);
            match kakigori::runtime::run(*config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    log::error!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
