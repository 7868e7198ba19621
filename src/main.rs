//! The `kakigori` binary: parse the configuration, then serve (or probe a server, or
//! look at the journal).

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
        Command::Journal(action, config) => {
            let mut stdout = std::io::stdout().lock();
            match kakigori::orders::tool::run(
                action,
                &config.data_dir,
                &config.store_id,
                &mut stdout,
            ) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("kakigori: {e}");
                    ExitCode::FAILURE
                }
            }
        }
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
