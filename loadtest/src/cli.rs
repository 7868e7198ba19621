//! The command line (clap): one subcommand per scenario, whose flags live with
//! the scenario, and the flags every scenario shares. clap prints `--help`
//! with every default and turns every usage mistake into a message and exit
//! code 2.

use std::path::PathBuf;

use clap::{Args, Parser};

use crate::scenario::Scenario;

#[derive(Parser, Debug)]
#[command(
    name = "kakigori-loadtest",
    version,
    about = "Load-test and protocol-conformance harness for the kakigori server",
    after_help = "Every scenario is bounded in time, targets loopback only unless --allow-remote, \
prints a progress line on stderr every second and a final report, and exits 1 on any protocol \
violation (or more transport errors than --max-errors), 2 on usage errors.\n\
`kakigori-loadtest <SCENARIO> --help` lists every flag with its default.",
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub scenario: Scenario,
    #[command(flatten)]
    pub common: Common,
}

/// Flags of every scenario; `global` so they go after the scenario name.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Common options")]
pub struct Common {
    /// Server base URL (http:// or ws://, IP literal or localhost, no path)
    #[arg(
        long,
        global = true,
        value_name = "URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// How long the measured phase runs; every scenario stops by itself
    /// [default: 30 for meter and idle, 60 for festival, 10 for the others]
    #[arg(long, global = true, value_name = "SECS", value_parser = non_negative)]
    pub duration_s: Option<f64>,
    /// CPU the harness executor is pinned to (glommio Placement::Fixed); 'none' = unpinned
    /// [default: 1, or unpinned on a one-CPU machine]
    #[arg(long, global = true, value_name = "N|none", value_parser = parse_cpu)]
    pub cpu: Option<Pin>,
    /// Print the machine-readable report as JSON on stdout (the human report goes to stderr)
    #[arg(long, global = true)]
    pub json: bool,
    /// Write an SVG latency-percentile plot of every latency histogram to FILE
    #[arg(long, global = true, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// Allow a non-loopback target (refused by default)
    #[arg(long, global = true)]
    pub allow_remote: bool,
    /// Run the scenario alternately against two servers, side by side with B/A ratios
    /// (also --compare=URL_A,URL_B)
    #[arg(long, global = true, num_args = 1..=2, value_names = ["URL_A", "URL_B"], value_delimiter = ',')]
    pub compare: Option<Vec<String>>,
    /// With --compare: number of A,B pairs (A B A B ...); each server's rounds add up
    #[arg(long, global = true, value_name = "N", default_value_t = 2)]
    pub rounds: u64,
    /// Transport errors (connect/reset/timeout) tolerated before the exit code is non-zero
    #[arg(long, global = true, value_name = "N", default_value_t = 0)]
    pub max_errors: u64,
    /// Also report the server process's CPU use (user/sys, per executor thread) and RSS
    /// over the run (from /proc/PID)
    #[arg(long, global = true, value_name = "PID")]
    pub server_pid: Option<i32>,
    /// No live progress line on stderr
    #[arg(long, global = true)]
    pub quiet: bool,
}

impl Common {
    /// The servers to run against: `--url`, or both of `--compare`.
    pub fn urls(&self) -> Result<Vec<String>, String> {
        match &self.compare {
            None => Ok(vec![self.url.clone()]),
            Some(ab) if ab.len() == 2 => Ok(ab.clone()),
            Some(_) => Err("--compare needs two URLs: --compare URL_A URL_B".into()),
        }
    }
}

/// `--cpu`: a CPU number, or `None` for an unpinned executor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pin(pub Option<usize>);

fn parse_cpu(s: &str) -> Result<Pin, String> {
    match s {
        "none" | "unbound" => Ok(Pin(None)),
        n => n
            .parse()
            .map(|n| Pin(Some(n)))
            .map_err(|_| format!("'{s}' is not a CPU or none")),
    }
}

/// A finite number >= 0 (seconds, rates).
pub fn non_negative(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(format!("'{s}' is not a finite number >= 0")),
    }
}

/// A count of at least 1.
pub fn positive(s: &str) -> Result<usize, String> {
    match s.parse() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("'{s}' is not a whole number >= 1")),
    }
}

/// A percentage, 0 to 100.
pub fn percent(s: &str) -> Result<f64, String> {
    match non_negative(s)? {
        x if x <= 100.0 => Ok(x),
        x => Err(format!("{x} is over 100")),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn flags_defaults_and_errors() {
        Cli::command().debug_assert();
        let parse = |args: &str| {
            Cli::try_parse_from(["kakigori-loadtest"].into_iter().chain(args.split(' ')))
        };
        let cli =
            parse("meter --rooms 7 --cpu none --compare=http://[::1]:1,http://[::1]:2").unwrap();
        assert_eq!(
            (cli.scenario.duration_s(&cli.common), cli.common.cpu),
            (30.0, Some(Pin(None)))
        );
        assert_eq!(cli.common.urls().map(|u| u.len()), Ok(2));
        for bad in [
            "meter --nope",
            "rest --probe-rooms 1",
            "meter --junk-pct 101",
            "idle --connections 0",
        ] {
            assert_eq!(parse(bad).err().map(|e| e.exit_code()), Some(2), "{bad}");
        }
    }
}
