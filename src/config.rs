//! Configuration: built-in defaults, overridden by `KAKIGORI_*` environment variables,
//! overridden by command-line flags. Every option is declared once, as a field of
//! [`Config`] with its clap attributes (flag, variable, default, validation; the doc
//! comment is its `--help` line), so the parser, `--help` and README.md's table, which a
//! test generates from the same declarations, cannot drift apart.

use crate::limits::METER_BUCKET_MS;
use clap::builder::TypedValueParser;
use clap::builder::{NonEmptyStringValueParser, PossibleValuesParser, RangedU64ValueParser};
use clap::error::{ContextKind, ContextValue};
use clap::{value_parser, Args, CommandFactory, FromArgMatches, Parser, ValueEnum};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything the server needs to know before it starts. Immutable once parsed.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// address and port to serve HTTP and WebSockets on (port 0 picks a free one and logs it)
    #[arg(
        long,
        env = "KAKIGORI_LISTEN",
        value_name = "IP:PORT",
        default_value = "0.0.0.0:8080"
    )]
    pub listen: SocketAddr,

    /// number of executors, one per CPU, each pinned [default: every CPU this process may run on]
    #[arg(
        long,
        env = "KAKIGORI_CORES",
        value_name = "N",
        default_value_t = online_cpus(),
        hide_default_value = true,
        value_parser = count(1, online_cpus() as u64)
    )]
    pub cores: usize,

    /// directory holding the order journal and the generated staff token
    #[arg(
        long,
        env = "KAKIGORI_DATA_DIR",
        value_name = "DIR",
        default_value = "./data"
    )]
    pub data_dir: PathBuf,

    /// this node's store id; order ids are <store-id>-<number>
    #[arg(
        long,
        env = "KAKIGORI_STORE_ID",
        value_name = "ID",
        default_value = "store-001",
        value_parser = store_id
    )]
    pub store_id: String,

    /// bearer token the staff endpoints require [default: generated and kept in <data-dir>/staff-token]
    #[arg(
        long,
        env = "KAKIGORI_STAFF_TOKEN",
        value_name = "TOKEN",
        value_parser = staff_token
    )]
    pub staff_token: Option<String>,

    /// a busy /ws room broadcasts at most once per this many ms (0 = after every value)
    #[arg(
        long,
        env = "KAKIGORI_METER_INTERVAL_MS",
        value_name = "MS",
        default_value_t = 20,
        value_parser = value_parser!(u64).range(0..=10_000)
    )]
    pub meter_interval_ms: u64,

    /// values a /ws client may send per second; the excess is ignored
    #[arg(
        long,
        env = "KAKIGORI_METER_VALUES_PER_S_MAX",
        value_name = "N",
        default_value_t = 50,
        value_parser = value_parser!(u32).range(1..=100_000)
    )]
    pub meter_values_per_s_max: u32,

    /// length of the /ws averaging window (a multiple of 100)
    #[arg(
        long,
        env = "KAKIGORI_METER_WINDOW_MS",
        value_name = "MS",
        default_value_t = 5000,
        value_parser = value_parser!(u64).range(METER_BUCKET_MS..=600_000).try_map(whole_buckets)
    )]
    pub meter_window_ms: u64,

    /// clients that form one /ws/stay group
    #[arg(
        long,
        env = "KAKIGORI_LOBBY_SIZE",
        value_name = "N",
        default_value_t = 3,
        value_parser = count(1, 1000)
    )]
    pub lobby_size: usize,

    /// a full lobby's start_time is now plus this many seconds
    #[arg(
        long,
        env = "KAKIGORI_LOBBY_DELAY_S",
        value_name = "S",
        default_value_t = 10,
        value_parser = value_parser!(u64).range(0..=86_400)
    )]
    pub lobby_delay_s: u64,

    /// a /ws/confirm batch orders for everyone this long after its first client joined
    #[arg(
        long,
        env = "KAKIGORI_CONFIRM_TIMEOUT_MS",
        value_name = "MS",
        default_value_t = 180_000,
        value_parser = value_parser!(u64).range(1..=86_400_000)
    )]
    pub confirm_timeout_ms: u64,

    /// a client must send a whole request head within this time (also the keep-alive idle limit)
    #[arg(
        long,
        env = "KAKIGORI_HEAD_TIMEOUT_MS",
        value_name = "MS",
        default_value_t = 10_000,
        value_parser = value_parser!(u64).range(1..=3_600_000)
    )]
    pub head_timeout_ms: u64,

    /// largest request head accepted (431 beyond)
    #[arg(
        long,
        env = "KAKIGORI_HEAD_BYTES_MAX",
        value_name = "BYTES",
        default_value_t = 8192,
        value_parser = count(512, 1 << 20)
    )]
    pub head_bytes_max: usize,

    /// largest request body accepted (413 beyond)
    #[arg(
        long,
        env = "KAKIGORI_BODY_BYTES_MAX",
        value_name = "BYTES",
        default_value_t = 65_536,
        value_parser = count(0, 16 << 20)
    )]
    pub body_bytes_max: usize,

    /// largest WebSocket message accepted (close 1009 beyond)
    #[arg(
        long,
        env = "KAKIGORI_WS_MESSAGE_BYTES_MAX",
        value_name = "BYTES",
        default_value_t = 4096,
        value_parser = count(125, 1 << 20)
    )]
    pub ws_message_bytes_max: usize,

    /// the server pings each WebSocket this often
    #[arg(
        long,
        env = "KAKIGORI_WS_PING_INTERVAL_MS",
        value_name = "MS",
        default_value_t = 30_000,
        value_parser = value_parser!(u64).range(100..=3_600_000)
    )]
    pub ws_ping_interval_ms: u64,

    /// a WebSocket that sends nothing (not even a pong) for this long is dropped
    #[arg(
        long,
        env = "KAKIGORI_WS_IDLE_TIMEOUT_MS",
        value_name = "MS",
        default_value_t = 60_000,
        value_parser = value_parser!(u64).range(100..=3_600_000)
    )]
    pub ws_idle_timeout_ms: u64,

    /// open connections across all cores; beyond it new ones get 503 and are closed
    #[arg(
        long,
        env = "KAKIGORI_CONNECTIONS_MAX",
        value_name = "N",
        default_value_t = 18_000,
        value_parser = count(1, 10_000_000)
    )]
    pub connections_max: usize,

    /// open connections from one client IP address on one core; beyond it 503
    #[arg(
        long,
        env = "KAKIGORI_CONNECTIONS_PER_IP_MAX",
        value_name = "N",
        default_value_t = 16_000,
        value_parser = count(1, 10_000_000)
    )]
    pub connections_per_ip_max: usize,

    /// open /ws rooms, lobbies and confirm batches per core; beyond it upgrades get 503
    #[arg(
        long,
        env = "KAKIGORI_ROOMS_PER_CORE_MAX",
        value_name = "N",
        default_value_t = 100_000,
        value_parser = count(1, 10_000_000)
    )]
    pub rooms_per_core_max: usize,

    /// clients in one room, lobby or confirm batch; beyond it upgrades get 503
    #[arg(
        long,
        env = "KAKIGORI_ROOM_CLIENTS_MAX",
        value_name = "N",
        default_value_t = 20_000,
        value_parser = count(1, 10_000_000)
    )]
    pub room_clients_max: usize,

    /// on SIGTERM, how long in-flight work may take before the process exits anyway
    #[arg(
        long,
        env = "KAKIGORI_SHUTDOWN_TIMEOUT_MS",
        value_name = "MS",
        default_value_t = 10_000,
        value_parser = value_parser!(u64).range(0..=600_000)
    )]
    pub shutdown_timeout_ms: u64,

    /// API key for the optional Gemini chant-line backend [default: unset (built-in chant lines only)]
    #[arg(long, env = "KAKIGORI_GEMINI_API_KEY", value_name = "KEY")]
    pub gemini_api_key: Option<String>,

    /// base URL of the Gemini API
    #[arg(
        long,
        env = "KAKIGORI_GEMINI_URL",
        value_name = "URL",
        default_value = "https://generativelanguage.googleapis.com",
        value_parser = http_url
    )]
    pub gemini_url: String,

    /// Gemini model asked for chant lines
    #[arg(
        long,
        env = "KAKIGORI_GEMINI_MODEL",
        value_name = "MODEL",
        default_value = "gemini-2.5-flash",
        value_parser = NonEmptyStringValueParser::new()
    )]
    pub gemini_model: String,

    /// how long a chant line may wait for the backend before the built-in line is served
    #[arg(
        long,
        env = "KAKIGORI_CHANT_TIMEOUT_MS",
        value_name = "MS",
        default_value_t = 3000,
        value_parser = value_parser!(u64).range(1..=60_000)
    )]
    pub chant_timeout_ms: u64,

    /// log level
    #[arg(
        long,
        env = "KAKIGORI_LOG",
        value_name = "LEVEL",
        default_value = "info",
        ignore_case = true,
        value_parser = log_level()
    )]
    pub log: String,
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Command {
    Serve(Box<Config>),
    /// `kakigori healthcheck`: probe `/healthz` of a running server (for container health checks).
    Healthcheck(Box<Config>),
    /// `kakigori journal verify|export [--format csv|jsonl]`: the operator's journal
    /// tool (`orders::tool`), on the journal of `--data-dir`.
    Journal(crate::orders::tool::Action, Box<Config>),
}

/// kakigori — real-time backend for a chanting shaved-ice stand
///
/// Serves HTTP, REST and WebSockets on one port, one pinned executor per core.
#[derive(Debug, Parser)]
#[command(
    name = "kakigori",
    version,
    args_override_self = true,
    after_help = "Every flag --foo-bar can also be set as the environment variable KAKIGORI_FOO_BAR;\n\
                  the flag wins when both are given. A bad value exits with code 2."
)]
struct Cli {
    /// what to do instead of serving; the options may come before or after it
    #[arg(value_enum, value_name = "COMMAND")]
    action: Option<Action>,
    /// after `journal`: what to do with the journal of --data-dir
    #[arg(value_enum, value_name = "JOURNAL_ACTION")]
    journal_action: Option<JournalAction>,
    /// after `journal export`: the format of the orders written to standard output
    #[arg(long, value_enum, value_name = "FORMAT")]
    format: Option<ExportFormat>,
    #[command(flatten)]
    config: Config,
}

/// What `kakigori journal` does; read-only, safe while a server runs.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum JournalAction {
    /// check every batch and record, print orders by status and the last number; exit 1 on damage
    Verify,
    /// write every order with its times, for the shop's books (default csv)
    Export,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ExportFormat {
    Csv,
    Jsonl,
}

/// A command word among the options, rather than a clap subcommand: the options stay
/// one set, read once, wherever they stand.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Action {
    /// exit 0 if the server at --listen answers /healthz with 200 (for container health checks)
    Healthcheck,
    /// look at the order journal: `journal verify` or `journal export [--format csv|jsonl]`
    Journal,
}

/// CPUs this process may run on (it may have been started under `taskset`).
pub fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The command line as `--help` shows it: variable names but never their values, which
/// may be tokens and keys.
pub fn command() -> clap::Command {
    Cli::command().mut_args(|arg| arg.hide_env_values(true))
}

/// Parses the command line (`args` starts with the program name) on top of the
/// environment on top of the defaults. `--help`, `--version` and bad values come back as
/// errors: [`clap::Error::exit`] prints them and exits with 0 or 2.
pub fn parse<I, T>(args: I) -> Result<Command, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    parse_with(command(), args)
}

fn parse_with<I, T>(mut cmd: clap::Command, args: I) -> Result<Command, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let matches = cmd
        .try_get_matches_from_mut(&args)
        .map_err(|e| name_the_variable(e, &cmd, &args))?;
    let mut cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))?;
    // An empty key (`KAKIGORI_GEMINI_API_KEY=` in an env file) means no key.
    cli.config.gemini_api_key = cli.config.gemini_api_key.filter(|key| !key.is_empty());
    let config = Box::new(cli.config);
    use crate::orders::tool::{Action as Tool, Format};
    let misuse = |cmd: &mut clap::Command, message: &str| {
        cmd.error(clap::error::ErrorKind::ArgumentConflict, message)
    };
    match (cli.action, cli.journal_action, cli.format) {
        (Some(Action::Journal), None, _) => Err(misuse(&mut cmd, "journal needs verify or export")),
        (Some(Action::Journal), Some(JournalAction::Verify), Some(_)) | (_, None, Some(_)) => {
            Err(misuse(&mut cmd, "--format goes after journal export"))
        }
        (Some(Action::Journal), Some(JournalAction::Verify), None) => {
            Ok(Command::Journal(Tool::Verify, config))
        }
        (Some(Action::Journal), Some(JournalAction::Export), format) => {
            let format = match format {
                None | Some(ExportFormat::Csv) => Format::Csv,
                Some(ExportFormat::Jsonl) => Format::Jsonl,
            };
            Ok(Command::Journal(Tool::Export(format), config))
        }
        (_, Some(_), _) => Err(misuse(&mut cmd, "verify and export go after journal")),
        (None, None, None) => Ok(Command::Serve(config)),
        (Some(Action::Healthcheck), None, None) => Ok(Command::Healthcheck(config)),
    }
}

/// clap names the flag even when the bad value came from its environment variable
/// (clap-rs/clap#5202). A bad value whose flag is not on the command line came from the
/// variable: name that instead, since that is where the fix goes.
fn name_the_variable(
    mut error: clap::Error,
    cmd: &clap::Command,
    args: &[OsString],
) -> clap::Error {
    let Some(ContextValue::String(invalid)) = error.get(ContextKind::InvalidArg) else {
        return error;
    };
    let Some(arg) = cmd.get_arguments().find(|arg| arg.to_string() == *invalid) else {
        return error;
    };
    let (Some(long), Some(variable)) = (arg.get_long(), arg.get_env()) else {
        return error;
    };
    let flag = format!("--{long}");
    // `--flag value` or `--flag=value`.
    let on_command_line = args.iter().skip(1).any(|a| {
        a.to_str()
            .is_some_and(|a| a.split_once('=').map_or(a, |(name, _)| name) == flag)
    });
    if !on_command_line {
        let variable = variable.to_string_lossy().into_owned();
        error.insert(ContextKind::InvalidArg, ContextValue::String(variable));
    }
    error
}

/// A whole number of items between `min` and `max`.
fn count(min: u64, max: u64) -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::new().range(min..=max)
}

fn whole_buckets(window_ms: u64) -> Result<u64, String> {
    if !window_ms.is_multiple_of(METER_BUCKET_MS) {
        return Err(format!(
            "must be a multiple of {METER_BUCKET_MS} (the window's bucket width)"
        ));
    }
    Ok(window_ms)
}

fn store_id(value: &str) -> Result<String, &'static str> {
    let valid = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err("use 1-64 characters of A-Z a-z 0-9 - _");
    }
    Ok(value.to_string())
}

fn staff_token(value: &str) -> Result<String, &'static str> {
    if value.len() < 16 || value.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err("use at least 16 printable ASCII characters without spaces");
    }
    Ok(value.to_string())
}

/// The levels `--log` takes, in any case; `off` logs nothing.
fn log_level() -> impl TypedValueParser<Value = String> {
    PossibleValuesParser::new(["error", "warn", "info", "debug", "trace", "off"])
        .map(|level| level.to_ascii_lowercase())
}

fn http_url(value: &str) -> Result<String, &'static str> {
    if !(value.starts_with("http://") || value.starts_with("https://")) {
        return Err("expected an http:// or https:// URL");
    }
    Ok(value.trim_end_matches('/').to_string())
}

/// The option rows of README.md's configuration table, rendered from the declarations
/// `--help` shows (a test keeps README.md equal to it).
#[cfg(test)]
fn readme_table() -> String {
    // GitHub would take `<store-id>` for an HTML tag and `|` for a column break.
    let escape = |text: &str| text.replace('<', "\\<").replace('|', "\\|");
    let mut table = String::from("| flag | environment | default | meaning |\n|---|---|---|---|\n");
    for arg in command().get_arguments() {
        let (Some(long), Some(variable)) = (arg.get_long(), arg.get_env()) else {
            continue;
        };
        let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
        // A default that is not a fixed value is described in the help text instead.
        let (meaning, default) = match help.split_once(" [default: ") {
            Some((meaning, default)) => (
                meaning.to_string(),
                default.trim_end_matches(']').to_string(),
            ),
            None => {
                let values: Vec<_> = arg
                    .get_default_values()
                    .iter()
                    .map(|v| v.to_string_lossy())
                    .collect();
                (help.clone(), values.join(", "))
            }
        };
        let choices: Vec<_> = arg
            .get_possible_values()
            .iter()
            .map(|v| v.get_name().to_string())
            .collect();
        let meaning = match choices.is_empty() {
            true => meaning,
            false => format!("{meaning}: {}", choices.join(", ")),
        };
        table.push_str(&format!(
            "| `--{long}` | `{}` | {} | {} |\n",
            variable.to_string_lossy(),
            escape(&default),
            escape(&meaning)
        ));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    /// The options with no environment at all: what the flags alone do.
    fn flags_only() -> clap::Command {
        command().mut_args(|arg| arg.env(None))
    }

    fn serve_with(cmd: clap::Command, args: &[&str]) -> Result<Config, clap::Error> {
        match parse_with(cmd, std::iter::once("kakigori").chain(args.iter().copied()))? {
            Command::Serve(config) => Ok(*config),
            other => panic!("expected serve, got {other:?}"),
        }
    }

    fn serve(args: &[&str]) -> Result<Config, clap::Error> {
        serve_with(flags_only(), args)
    }

    /// The rendered message of a rejected command line (exit code 2).
    fn rejected<T: std::fmt::Debug>(result: Result<T, clap::Error>) -> String {
        let error = result.expect_err("rejected");
        assert_eq!(error.exit_code(), 2, "{error}");
        error.to_string()
    }

    #[test]
    fn the_declarations_are_consistent() {
        command().debug_assert();
    }

    #[test]
    fn journal_commands_take_the_usual_flags_and_a_format() {
        use crate::orders::tool::{Action as Tool, Format};
        let parse_args = |args: &[&str]| {
            parse_with(
                flags_only(),
                std::iter::once("kakigori").chain(args.iter().copied()),
            )
        };
        match parse_args(&["journal", "verify", "--data-dir", "/srv/kakigori"]) {
            Ok(Command::Journal(Tool::Verify, config)) => {
                assert_eq!(config.data_dir, PathBuf::from("/srv/kakigori"))
            }
            other => panic!("{other:?}"),
        }
        for (args, format) in [
            (&["journal", "export"][..], Format::Csv),
            (
                &["journal", "export", "--format", "jsonl"][..],
                Format::Jsonl,
            ),
            (
                &["--store-id", "s2", "journal", "export", "--format=csv"][..],
                Format::Csv,
            ),
        ] {
            let parsed = parse_args(args);
            assert!(
                matches!(parsed, Ok(Command::Journal(Tool::Export(f), _)) if f == format),
                "{args:?}: {parsed:?}"
            );
        }
        for bad in [
            &["journal"][..],
            &["journal", "repair"][..],
            &["journal", "export", "--format", "xml"][..],
            &["journal", "export", "--format"][..],
            &["journal", "verify", "--format", "csv"][..],
            &["--format", "csv"][..],
            &["healthcheck", "verify"][..],
            &["healthcheck", "journal"][..],
        ] {
            rejected(parse_args(bad));
        }
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = serve(&[]).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(c.cores, online_cpus());
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.store_id, "store-001");
        assert_eq!(c.staff_token, None);
        assert_eq!(
            (
                c.meter_interval_ms,
                c.meter_values_per_s_max,
                c.meter_window_ms
            ),
            (20, 50, 5000)
        );
        assert_eq!((c.lobby_size, c.lobby_delay_s), (3, 10));
        assert_eq!(c.confirm_timeout_ms, 180_000);
        assert_eq!((c.head_timeout_ms, c.head_bytes_max), (10_000, 8192));
        assert_eq!((c.body_bytes_max, c.ws_message_bytes_max), (65_536, 4096));
        assert_eq!(
            (c.ws_ping_interval_ms, c.ws_idle_timeout_ms),
            (30_000, 60_000)
        );
        assert_eq!(
            (c.connections_max, c.connections_per_ip_max),
            (18_000, 16_000)
        );
        assert_eq!(
            (c.rooms_per_core_max, c.room_clients_max),
            (100_000, 20_000)
        );
        assert_eq!(c.shutdown_timeout_ms, 10_000);
        assert_eq!(c.gemini_api_key, None);
        assert_eq!(c.gemini_url, "https://generativelanguage.googleapis.com");
        assert_eq!(c.gemini_model, "gemini-2.5-flash");
        assert_eq!(c.chant_timeout_ms, 3000);
        assert_eq!(c.log, "info");
    }

    type Field = fn(&Config) -> u64;

    /// Every numeric option: its flag, its range, and the field it sets.
    const RANGES: &[(&str, u64, u64, Field)] = &[
        ("meter-interval-ms", 0, 10_000, |c| c.meter_interval_ms),
        ("meter-values-per-s-max", 1, 100_000, |c| {
            c.meter_values_per_s_max.into()
        }),
        ("meter-window-ms", 100, 600_000, |c| c.meter_window_ms),
        ("lobby-size", 1, 1000, |c| c.lobby_size as u64),
        ("lobby-delay-s", 0, 86_400, |c| c.lobby_delay_s),
        ("confirm-timeout-ms", 1, 86_400_000, |c| {
            c.confirm_timeout_ms
        }),
        ("head-timeout-ms", 1, 3_600_000, |c| c.head_timeout_ms),
        ("head-bytes-max", 512, 1 << 20, |c| c.head_bytes_max as u64),
        ("body-bytes-max", 0, 16 << 20, |c| c.body_bytes_max as u64),
        ("ws-message-bytes-max", 125, 1 << 20, |c| {
            c.ws_message_bytes_max as u64
        }),
        ("ws-ping-interval-ms", 100, 3_600_000, |c| {
            c.ws_ping_interval_ms
        }),
        ("ws-idle-timeout-ms", 100, 3_600_000, |c| {
            c.ws_idle_timeout_ms
        }),
        ("connections-max", 1, 10_000_000, |c| {
            c.connections_max as u64
        }),
        ("connections-per-ip-max", 1, 10_000_000, |c| {
            c.connections_per_ip_max as u64
        }),
        ("rooms-per-core-max", 1, 10_000_000, |c| {
            c.rooms_per_core_max as u64
        }),
        ("room-clients-max", 1, 10_000_000, |c| {
            c.room_clients_max as u64
        }),
        ("shutdown-timeout-ms", 0, 600_000, |c| c.shutdown_timeout_ms),
        ("chant-timeout-ms", 1, 60_000, |c| c.chant_timeout_ms),
    ];

    #[test]
    fn every_range_takes_its_edges_and_rejects_one_beyond() {
        for &(flag, min, max, field) in RANGES {
            for edge in [min, max] {
                let config = serve(&[&format!("--{flag}"), &edge.to_string()])
                    .unwrap_or_else(|e| panic!("--{flag} {edge}: {e}"));
                assert_eq!(field(&config), edge, "--{flag}");
            }
            let mut beyond = vec![max + 1];
            beyond.extend(min.checked_sub(1));
            for value in beyond {
                let message = rejected(serve(&[&format!("--{flag}={value}")]));
                assert!(message.contains(&format!("--{flag}")), "{message}");
                assert!(message.contains(&format!("{min}..={max}")), "{message}");
            }
        }
    }

    #[test]
    fn cores_range_from_one_to_every_cpu_this_process_may_use() {
        let all = online_cpus().to_string();
        assert_eq!(serve(&["--cores", "1"]).unwrap().cores, 1);
        assert_eq!(serve(&["--cores", &all]).unwrap().cores, online_cpus());
        let more = (online_cpus() + 1).to_string();
        for value in ["0", more.as_str(), "zero"] {
            let message = rejected(serve(&["--cores", value]));
            assert!(message.contains("--cores"), "{message}");
        }
    }

    #[test]
    fn the_meter_window_is_a_whole_number_of_buckets() {
        let message = rejected(serve(&["--meter-window-ms", "150"]));
        assert!(message.contains("--meter-window-ms"), "{message}");
        assert!(
            message.contains(&format!("multiple of {METER_BUCKET_MS}")),
            "{message}"
        );
        let cmd = command();
        let window = cmd
            .get_arguments()
            .find(|arg| arg.get_id() == "meter_window_ms");
        let help = window.and_then(|arg| arg.get_help()).unwrap().to_string();
        assert!(
            help.contains(&format!("a multiple of {METER_BUCKET_MS}")),
            "{help}"
        );
        let config = serve(&["--meter-window-ms", &(3 * METER_BUCKET_MS).to_string()]).unwrap();
        assert_eq!(config.meter_window_ms, 3 * METER_BUCKET_MS);
    }

    #[test]
    fn text_options_are_checked_and_normalised() {
        let c = serve(&[
            "--listen=127.0.0.1:0",
            "--data-dir=/tmp/k",
            "--store-id=Store_2-b",
            "--staff-token=0123456789abcdef",
            "--gemini-api-key=key",
            "--gemini-url=http://127.0.0.1:9/",
            "--gemini-model=m",
            "--log=DEBUG",
        ])
        .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:0");
        assert_eq!(c.data_dir, PathBuf::from("/tmp/k"));
        assert_eq!(c.store_id, "Store_2-b");
        assert_eq!(c.staff_token.as_deref(), Some("0123456789abcdef"));
        assert_eq!(c.gemini_api_key.as_deref(), Some("key"));
        assert_eq!(c.gemini_url, "http://127.0.0.1:9");
        assert_eq!(c.gemini_model, "m");
        assert_eq!(c.log, "debug");
        assert_eq!(serve(&["--gemini-api-key="]).unwrap().gemini_api_key, None);
        assert_eq!(serve(&["--log=off"]).unwrap().log, "off");
        assert_eq!(
            serve(&[&format!("--store-id={}", "s".repeat(64))])
                .unwrap()
                .store_id
                .len(),
            64
        );

        let long_id = format!("--store-id={}", "s".repeat(65));
        for (args, flag) in [
            (&["--listen=nowhere"][..], "--listen"),
            (&["--data-dir="], "--data-dir"),
            (&["--store-id=a b"], "--store-id"),
            (&["--store-id="], "--store-id"),
            (&[long_id.as_str()], "--store-id"),
            (&["--staff-token=0123456789abcde"], "--staff-token"),
            (&["--staff-token=0123456789 abcdef"], "--staff-token"),
            (&["--gemini-url=ftp://example.com"], "--gemini-url"),
            (&["--gemini-model="], "--gemini-model"),
            (&["--log=loud"], "--log"),
            (&["--bogus=1"], "--bogus"),
            (&["--store-id"], "--store-id"),
        ] {
            let message = rejected(serve(args));
            assert!(message.contains(flag), "{args:?}: {message}");
        }
    }

    #[test]
    fn the_last_of_a_repeated_flag_wins() {
        assert_eq!(
            serve(&["--lobby-size=4", "--lobby-size=5"])
                .unwrap()
                .lobby_size,
            5
        );
    }

    /// clap reads an option's variable when the option is declared, and cargo sets
    /// `CARGO_PKG_NAME` for every test it runs: pointing an option at that variable gives
    /// a known environment without changing this process's (which other tests read).
    fn from_cargo_pkg_name(option: &'static str) -> clap::Command {
        assert_eq!(
            std::env::var("CARGO_PKG_NAME").as_deref(),
            Ok("kakigori"),
            "run under cargo"
        );
        flags_only().mut_arg(option, |arg| arg.env("CARGO_PKG_NAME"))
    }

    #[test]
    fn the_flag_beats_the_variable_and_the_variable_beats_the_default() {
        let from_env = serve_with(from_cargo_pkg_name("store_id"), &[]).unwrap();
        assert_eq!(from_env.store_id, "kakigori");
        let from_flag = serve_with(
            from_cargo_pkg_name("store_id"),
            &["--store-id", "store-009"],
        );
        assert_eq!(from_flag.unwrap().store_id, "store-009");
        // A good flag also hides a bad variable: the variable is never read.
        let cores = serve_with(from_cargo_pkg_name("cores"), &["--cores", "1"]).unwrap();
        assert_eq!(cores.cores, 1);
    }

    #[test]
    fn a_bad_value_names_the_variable_it_came_from_or_the_flag() {
        let message = rejected(serve_with(from_cargo_pkg_name("cores"), &[]));
        assert!(message.contains("'CARGO_PKG_NAME'"), "{message}");
        let message = rejected(serve_with(from_cargo_pkg_name("cores"), &["--cores=zero"]));
        assert!(message.contains("--cores"), "{message}");
        assert!(!message.contains("CARGO_PKG_NAME"), "{message}");
    }

    #[test]
    fn healthcheck_takes_the_options_before_or_after_it() {
        for args in [
            &["kakigori", "healthcheck", "--listen", "127.0.0.1:9"][..],
            &["kakigori", "--listen", "127.0.0.1:9", "healthcheck"],
        ] {
            match parse_with(flags_only(), args).unwrap() {
                Command::Healthcheck(config) => {
                    assert_eq!(config.listen.to_string(), "127.0.0.1:9")
                }
                other => panic!("{args:?}: {other:?}"),
            }
        }
        let message = rejected(parse_with(flags_only(), ["kakigori", "health"]));
        assert!(message.contains("health"), "{message}");
    }

    #[test]
    fn help_and_version_exit_zero() {
        for (flag, kind) in [
            ("--help", ErrorKind::DisplayHelp),
            ("-h", ErrorKind::DisplayHelp),
            ("--version", ErrorKind::DisplayVersion),
            ("-V", ErrorKind::DisplayVersion),
        ] {
            let error = parse_with(flags_only(), ["kakigori", flag]).unwrap_err();
            assert_eq!((error.kind(), error.exit_code()), (kind, 0), "{flag}");
        }
    }

    #[test]
    fn every_variable_is_its_flag_in_capitals() {
        let mut options = 0;
        for arg in command()
            .get_arguments()
            .filter(|arg| arg.get_env().is_some())
        {
            let long = arg.get_long().expect("every option has a flag");
            let expected = format!("KAKIGORI_{}", long.to_ascii_uppercase().replace('-', "_"));
            assert_eq!(arg.get_env().unwrap().to_str(), Some(expected.as_str()));
            assert!(arg.is_hide_env_values_set(), "--{long}");
            options += 1;
        }
        assert_eq!(options, 27);
    }

    const TABLE_START: &str = "<!-- options: generated from src/config.rs -->\n";
    const TABLE_END: &str = "<!-- end of options -->";

    /// Set `UPDATE_README=1` to rewrite the table instead of comparing it.
    #[test]
    fn readme_lists_the_options_as_declared() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
        let readme = std::fs::read_to_string(&path).unwrap();
        let (before, rest) = readme
            .split_once(TABLE_START)
            .expect("the table's start marker");
        let (_, after) = rest.split_once(TABLE_END).expect("the table's end marker");
        let expected = format!("{before}{TABLE_START}{}{TABLE_END}{after}", readme_table());
        if std::env::var_os("UPDATE_README").is_some() {
            std::fs::write(&path, &expected).unwrap();
        } else {
            assert!(
                readme == expected,
                "README.md's configuration table is stale (UPDATE_README=1 cargo test --lib \
                 config rewrites it); it should be:\n{}",
                readme_table()
            );
        }
    }
}
