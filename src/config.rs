//! Configuration: built-in defaults, overridden by `KAKIGORI_*` environment variables,
//! overridden by command-line flags. Every option is one row of [`OPTIONS`], so `--help`,
//! the environment names and the parsers cannot drift apart.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything the server needs to know before it starts. Immutable once parsed.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub cores: usize,
    pub data_dir: PathBuf,
    pub store_id: String,
    pub staff_token: Option<String>,
    pub meter_interval_ms: u64,
    pub meter_values_per_s_max: u32,
    pub meter_window_ms: u64,
    pub lobby_size: usize,
    pub lobby_delay_s: u64,
    pub confirm_timeout_ms: u64,
    pub head_timeout_ms: u64,
    pub head_bytes_max: usize,
    pub body_bytes_max: usize,
    pub ws_message_bytes_max: usize,
    pub ws_ping_interval_ms: u64,
    pub ws_idle_timeout_ms: u64,
    pub connections_max: usize,
    pub connections_per_ip_max: usize,
    pub rooms_per_core_max: usize,
    pub room_clients_max: usize,
    pub shutdown_timeout_ms: u64,
    pub gemini_api_key: Option<String>,
    pub gemini_url: String,
    pub gemini_model: String,
    pub chant_timeout_ms: u64,
    pub log: String,
}

/// A problem with one option, named the way the user wrote it.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
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
    Help,
    Version,
}

type Setter = fn(&mut Config, &str) -> Result<(), String>;

struct OptionSpec {
    flag: &'static str,
    default: &'static str,
    help: &'static str,
    set: Setter,
}

impl OptionSpec {
    fn env_name(&self) -> String {
        format!(
            "KAKIGORI_{}",
            self.flag.to_ascii_uppercase().replace('-', "_")
        )
    }
}

fn number<T>(value: &str, min: T, max: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    let parsed: T = value
        .trim()
        .parse()
        .map_err(|_| format!("expected a whole number, got {value:?}"))?;
    if parsed < min || parsed > max {
        return Err(format!("{parsed} is out of range ({min}..={max})"));
    }
    Ok(parsed)
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        flag: "listen",
        default: "0.0.0.0:8080",
        help: "address and port to serve HTTP and WebSockets on (port 0 picks a free one and logs it)",
        set: |c, v| {
            c.listen = v.parse().map_err(|_| format!("expected IP:PORT, got {v:?}"))?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "cores",
        default: "all online CPUs",
        help: "number of executors (one per CPU, each pinned)",
        set: |c, v| {
            c.cores = number(v, 1, online_cpus())?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "data-dir",
        default: "./data",
        help: "directory holding the order journal and the generated staff token",
        set: |c, v| {
            c.data_dir = non_empty(v).ok_or("must not be empty")?.into();
            Ok(())
        },
    },
    OptionSpec {
        flag: "store-id",
        default: "store-001",
        help: "this node's store id; order ids are <store-id>-<number>",
        set: |c, v| {
            let valid = !v.is_empty()
                && v.len() <= 64
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
                return Err("use 1-64 characters of A-Z a-z 0-9 - _".into());
            }
            c.store_id = v.to_string();
            Ok(())
        },
    },
    OptionSpec {
        flag: "staff-token",
        default: "generated and kept in <data-dir>/staff-token",
        help: "bearer token the staff endpoints require",
        set: |c, v| {
            if v.len() < 16 || v.bytes().any(|b| !b.is_ascii_graphic()) {
                return Err("use at least 16 printable ASCII characters without spaces".into());
            }
            c.staff_token = Some(v.to_string());
            Ok(())
        },
    },
    OptionSpec {
        flag: "meter-interval-ms",
        default: "20",
        help: "a busy /ws room broadcasts at most once per this many ms (0 = after every value)",
        set: |c, v| {
            c.meter_interval_ms = number(v, 0, 10_000)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "meter-values-per-s-max",
        default: "50",
        help: "values a /ws client may send per second; the excess is ignored",
        set: |c, v| {
            c.meter_values_per_s_max = number(v, 1, 100_000)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "meter-window-ms",
        default: "5000",
        help: "length of the /ws averaging window (a multiple of 100)",
        set: |c, v| {
            let window_ms = number(v, 100, 600_000)?;
            if window_ms % 100 != 0 {
                return Err("must be a multiple of 100 (the window's bucket width)".into());
            }
            c.meter_window_ms = window_ms;
            Ok(())
        },
    },
    OptionSpec {
        flag: "lobby-size",
        default: "3",
        help: "clients that form one /ws/stay group",
        set: |c, v| {
            c.lobby_size = number(v, 1, 1000)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "lobby-delay-s",
        default: "10",
        help: "a full lobby's start_time is now plus this many seconds",
        set: |c, v| {
            c.lobby_delay_s = number(v, 0, 86_400)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "confirm-timeout-ms",
        default: "180000",
        help: "a /ws/confirm batch orders for everyone this long after its first client joined",
        set: |c, v| {
            c.confirm_timeout_ms = number(v, 1, 86_400_000)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "head-timeout-ms",
        default: "10000",
        help: "a client must send a whole request head within this time (also the keep-alive idle limit)",
        set: |c, v| {
            c.head_timeout_ms = number(v, 1, 3_600_000)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "head-bytes-max",
        default: "8192",
        help: "largest request head accepted (431 beyond)",
        set: |c, v| {
            c.head_bytes_max = number(v, 512, 1 << 20)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "body-bytes-max",
        default: "65536",
        help: "largest request body accepted (413 beyond)",
        set: |c, v| {
            c.body_bytes_max = number(v, 0, 16 << 20)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "ws-message-bytes-max",
        default: "4096",
        help: "largest WebSocket message accepted (close 1009 beyond)",
        set: |c, v| {
            c.ws_message_bytes_max = number(v, 125, 1 << 20)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "ws-ping-interval-ms",
        default: "30000",
        help: "the server pings each WebSocket this often",
        set: |c, v| {
            c.ws_ping_interval_ms = number(v, 100, 3_600_000)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "ws-idle-timeout-ms",
        default: "60000",
        help: "a WebSocket that sends nothing (not even a pong) for this long is dropped",
        set: |c, v| {
            c.ws_idle_timeout_ms = number(v, 100, 3_600_000)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "connections-max",
        default: "18000",
        help: "open connections across all cores; beyond it new ones get 503 and are closed",
        set: |c, v| {
            c.connections_max = number(v, 1, 10_000_000)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "connections-per-ip-max",
        default: "16000",
        help: "open connections from one client IP address on one core; beyond it 503",
        set: |c, v| {
            c.connections_per_ip_max = number(v, 1, 10_000_000)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "rooms-per-core-max",
        default: "100000",
        help: "open /ws rooms, lobbies and confirm batches per core; beyond it upgrades get 503",
        set: |c, v| {
            c.rooms_per_core_max = number(v, 1, 10_000_000)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "room-clients-max",
        default: "20000",
        help: "clients in one room, lobby or confirm batch; beyond it upgrades get 503",
        set: |c, v| {
            c.room_clients_max = number(v, 1, 10_000_000)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "shutdown-timeout-ms",
        default: "10000",
        help: "on SIGTERM, how long in-flight work may take before the process exits anyway",
        set: |c, v| {
            c.shutdown_timeout_ms = number(v, 0, 600_000)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "gemini-api-key",
        default: "unset (built-in chant lines only)",
        help: "API key for the optional Gemini chant-line backend",
        set: |c, v| {
            c.gemini_api_key = non_empty(v);
            Ok(())
        },
    },
    OptionSpec {
        flag: "gemini-url",
        default: "https://generativelanguage.googleapis.com",
        help: "base URL of the Gemini API",
        set: |c, v| {
            if !(v.starts_with("http://") || v.starts_with("https://")) {
                return Err("expected an http:// or https:// URL".into());
            }
            c.gemini_url = v.trim_end_matches('/').to_string();
            Ok(())
        },
    },
    OptionSpec {
        flag: "gemini-model",
        default: "gemini-2.5-flash",
        help: "Gemini model asked for chant lines",
        set: |c, v| {
            c.gemini_model = non_empty(v).ok_or("must not be empty")?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "chant-timeout-ms",
        default: "3000",
        help: "how long a chant line may wait for the backend before the built-in line is served",
        set: |c, v| {
            c.chant_timeout_ms = number(v, 1, 60_000)?;
            Ok(())
        },
    },
    OptionSpec {
        flag: "log",
        default: "info",
        help: "log level: error, warn, info, debug or trace",
        set: |c, v| {
            let level = v.to_ascii_lowercase();
            if !["error", "warn", "info", "debug", "trace", "off"].contains(&level.as_str()) {
                return Err("expected error, warn, info, debug, trace or off".into());
            }
            c.log = level;
            Ok(())
        },
    },
];

/// CPUs this process may run on.
pub fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            cores: online_cpus(),
            data_dir: PathBuf::from("./data"),
            store_id: "store-001".into(),
            staff_token: None,
            meter_interval_ms: 20,
            meter_values_per_s_max: 50,
            meter_window_ms: 5000,
            lobby_size: 3,
            lobby_delay_s: 10,
            confirm_timeout_ms: 180_000,
            head_timeout_ms: 10_000,
            head_bytes_max: 8192,
            body_bytes_max: 65_536,
            ws_message_bytes_max: 4096,
            ws_ping_interval_ms: 30_000,
            ws_idle_timeout_ms: 60_000,
            connections_max: 18_000,
            connections_per_ip_max: 16_000,
            rooms_per_core_max: 100_000,
            room_clients_max: 20_000,
            shutdown_timeout_ms: 10_000,
            gemini_api_key: None,
            gemini_url: "https://generativelanguage.googleapis.com".into(),
            gemini_model: "gemini-2.5-flash".into(),
            chant_timeout_ms: 3000,
            log: "info".into(),
        }
    }
}

/// Parses `args` (without the program name) on top of `env` on top of the defaults.
pub fn parse<I, E>(args: I, env: E) -> Result<Command, ConfigError>
where
    I: IntoIterator<Item = String>,
    E: Fn(&str) -> Option<String>,
{
    let mut config = Config::default();
    for spec in OPTIONS {
        let name = spec.env_name();
        if let Some(value) = env(&name) {
            (spec.set)(&mut config, &value).map_err(|e| ConfigError(format!("{name}: {e}")))?;
        }
    }
    let mut healthcheck = false;
    let mut journal = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "healthcheck" if !healthcheck && journal.is_none() => {
                healthcheck = true;
                continue;
            }
            "journal" if !healthcheck && journal.is_none() => {
                journal = Some(journal_action(args.next())?);
                continue;
            }
            _ if arg == "--format" || arg.starts_with("--format=") => {
                let value = arg.strip_prefix("--format=").map(str::to_string);
                journal_format(&mut journal, value.or_else(|| args.next()))?;
                continue;
            }
            _ => {}
        }
        let Some(stripped) = arg.strip_prefix("--") else {
            return Err(ConfigError(format!(
                "unexpected argument {arg:?} (see --help)"
            )));
        };
        let (flag, inline) = match stripped.split_once('=') {
            Some((flag, value)) => (flag, Some(value.to_string())),
            None => (stripped, None),
        };
        let spec = OPTIONS
            .iter()
            .find(|s| s.flag == flag)
            .ok_or_else(|| ConfigError(format!("unknown flag --{flag} (see --help)")))?;
        let value = match inline.or_else(|| args.next()) {
            Some(v) => v,
            None => return Err(ConfigError(format!("--{flag} needs a value"))),
        };
        (spec.set)(&mut config, &value).map_err(|e| ConfigError(format!("--{flag}: {e}")))?;
    }
    let config = Box::new(config);
    Ok(match journal {
        Some(action) => Command::Journal(action, config),
        None if healthcheck => Command::Healthcheck(config),
        None => Command::Serve(config),
    })
}

/// The word after `journal`.
fn journal_action(word: Option<String>) -> Result<crate::orders::tool::Action, ConfigError> {
    use crate::orders::tool::{Action, Format};
    match word.as_deref() {
        Some("verify") => Ok(Action::Verify),
        Some("export") => Ok(Action::Export(Format::Csv)),
        _ => Err(ConfigError(
            "journal needs verify or export (see --help)".into(),
        )),
    }
}

/// `--format`, which only `journal export` takes.
fn journal_format(
    journal: &mut Option<crate::orders::tool::Action>,
    value: Option<String>,
) -> Result<(), ConfigError> {
    use crate::orders::tool::{Action, Format};
    let Some(Action::Export(format)) = journal else {
        return Err(ConfigError("--format goes after journal export".into()));
    };
    *format = value
        .as_deref()
        .and_then(Format::parse)
        .ok_or_else(|| ConfigError("--format: use csv or jsonl".into()))?;
    Ok(())
}

/// The `--help` text, generated from [`OPTIONS`].
pub fn help() -> String {
    let mut text = String::from(
        "kakigori — real-time backend for a chanting shaved-ice stand\n\n\
         USAGE:\n    kakigori [FLAGS]              serve HTTP, REST and WebSockets\n    \
         kakigori healthcheck [FLAGS]  exit 0 if the server at --listen answers /healthz\n    \
         kakigori journal verify [FLAGS]  check <data-dir>'s journal, read-only (safe while a \
         server runs);\n                                  print orders by status, exit 1 on damage\n    \
         kakigori journal export [--format csv|jsonl] [FLAGS]\n                                  \
         write every order with its times (default csv)\n\n\
         Every flag --foo-bar can also be set as the environment variable KAKIGORI_FOO_BAR;\n\
         the flag wins when both are given. A bad value exits with code 2.\n\nFLAGS:\n",
    );
    for spec in OPTIONS {
        text.push_str(&format!(
            "    --{flag} <value>\n        {help}\n        default: {default}; env: {env}\n",
            flag = spec.flag,
            help = spec.help,
            default = spec.default,
            env = spec.env_name(),
        ));
    }
    text.push_str("    -h, --help       print this help\n    -V, --version    print the version\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_with(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match parse(args.iter().map(|s| s.to_string()), |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })? {
            Command::Serve(config) => Ok(*config),
            other => panic!("expected serve, got {other:?}"),
        }
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = parse_with(&[], &[]).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.store_id, "store-001");
        assert_eq!(c.meter_interval_ms, 20);
        assert_eq!((c.lobby_size, c.lobby_delay_s), (3, 10));
        assert_eq!(c.confirm_timeout_ms, 180_000);
    }

    #[test]
    fn flag_beats_env_and_env_beats_default() {
        let c = parse_with(
            &["--meter-interval-ms", "5"],
            &[
                ("KAKIGORI_METER_INTERVAL_MS", "7"),
                ("KAKIGORI_STORE_ID", "store-002"),
            ],
        )
        .unwrap();
        assert_eq!(c.meter_interval_ms, 5);
        assert_eq!(c.store_id, "store-002");
        let c = parse_with(&["--listen=127.0.0.1:0"], &[]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:0");
    }

    #[test]
    fn journal_subcommands_take_the_usual_flags_and_a_format() {
        use crate::orders::tool::{Action, Format};
        let parse_args = |args: &[&str]| parse(args.iter().map(|s| s.to_string()), |_| None);
        match parse_args(&["journal", "verify", "--data-dir", "/srv/kakigori"]) {
            Ok(Command::Journal(Action::Verify, config)) => {
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
            assert!(
                matches!(parse_args(args), Ok(Command::Journal(Action::Export(f), _)) if f == format),
                "{args:?}"
            );
        }
        for bad in [
            &["journal"][..],
            &["journal", "repair"][..],
            &["journal", "export", "--format", "xml"][..],
            &["journal", "export", "--format"][..],
            &["journal", "verify", "--format", "csv"][..],
            &["--format", "csv"][..],
            &["healthcheck", "journal", "verify"][..],
        ] {
            assert!(parse_args(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_values_name_the_flag_or_variable() {
        let err = parse_with(&["--cores", "zero"], &[]).unwrap_err();
        assert!(err.0.starts_with("--cores:"), "{err}");
        let err = parse_with(&[], &[("KAKIGORI_LISTEN", "nowhere")]).unwrap_err();
        assert!(err.0.starts_with("KAKIGORI_LISTEN:"), "{err}");
        let err = parse_with(&["--bogus", "1"], &[]).unwrap_err();
        assert!(err.0.contains("unknown flag --bogus"), "{err}");
        let err = parse_with(&["--store-id"], &[]).unwrap_err();
        assert!(err.0.contains("needs a value"), "{err}");
        assert!(parse_with(&["--store-id", "a b"], &[]).is_err());
        assert!(parse_with(&["--staff-token", "short"], &[]).is_err());
    }

    #[test]
    fn help_lists_every_flag_with_its_variable() {
        let text = help();
        for spec in OPTIONS {
            assert!(text.contains(&format!("--{}", spec.flag)));
            assert!(text.contains(&spec.env_name()));
        }
    }
}
