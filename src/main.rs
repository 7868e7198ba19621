//! The `kakigori` binary: parse the configuration, then serve (or probe a server).

use kakigori::config::{self, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let command = match config::parse(std::env::args().skip(1), |name| std::env::var(name).ok()) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("kakigori: {e}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => {
            print!("{}", config::help());
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("kakigori {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
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
