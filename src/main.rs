//! The `kakigori` binary: parse the configuration, then serve (or probe a server, or
//! look at the journal).

use kakigori::config::{self, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    // `--help` and `--version` exit 0 here; a bad value exits 2, naming the flag.
    let command = config::parse(std::env::args_os()).unwrap_or_else(|e| e.exit());
    match command {
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
