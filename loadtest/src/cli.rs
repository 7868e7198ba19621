//! Hand-rolled command-line parsing with generated per-subcommand help.
//!
//! Every flag is declared once in a table (name, value placeholder, default,
//! help text); parsing, `--help` and defaults all come from those tables, so
//! the help always lists every flag with its real default.

use std::collections::HashMap;

/// One command-line flag.
pub struct Flag {
    pub name: &'static str,
    /// Placeholder for the value; empty for a boolean switch.
    pub val: &'static str,
    /// Default value as text; empty means "unset".
    pub default: &'static str,
    pub help: &'static str,
}

const fn f(
    name: &'static str,
    val: &'static str,
    default: &'static str,
    help: &'static str,
) -> Flag {
    Flag {
        name,
        val,
        default,
        help,
    }
}

/// A subcommand (scenario).
pub struct Cmd {
    pub name: &'static str,
    pub about: &'static str,
    pub details: &'static str,
    pub flags: &'static [Flag],
    /// Default for --duration-s of this scenario.
    pub duration_default: &'static str,
}

pub const COMMON: &[Flag] = &[
    f(
        "url",
        "URL",
        "http://127.0.0.1:8080",
        "server base URL (http:// or ws://, IP literal or localhost, no path)",
    ),
    f(
        "duration-s",
        "SECS",
        "(per scenario)",
        "how long the measured phase runs; every scenario stops by itself",
    ),
    f(
        "cpu",
        "N|none",
        "1",
        "CPU the harness executor is pinned to (Placement::Fixed); 'none' = unpinned",
    ),
    f(
        "json",
        "",
        "off",
        "print the machine-readable report as JSON on stdout (human report goes to stderr)",
    ),
    f(
        "plot",
        "FILE",
        "",
        "write an SVG latency-percentile plot of every latency histogram to FILE",
    ),
    f(
        "allow-remote",
        "",
        "off",
        "allow a non-loopback target (refused by default)",
    ),
    f(
        "compare",
        "URL_A URL_B",
        "",
        "run the scenario alternately against two servers and print B/A ratios",
    ),
    f(
        "rounds",
        "N",
        "2",
        "with --compare: number of A,B pairs (A B A B ...); histograms are merged per server",
    ),
    f(
        "max-errors",
        "N",
        "0",
        "transport errors (connect/reset/timeout) tolerated before the exit code is non-zero",
    ),
    f(
        "timeout-s",
        "SECS",
        "10",
        "per-operation timeout (connect, handshake, request/response, awaited message)",
    ),
    f(
        "seed",
        "N",
        "",
        "RNG seed (default: random); room names stay unique per run regardless",
    ),
    f(
        "server-pid",
        "PID",
        "",
        "also report the server process's CPU use and RSS (from /proc/PID) over the run",
    ),
    f("quiet", "", "off", "no live progress line on stderr"),
];

pub const METER: &[Flag] = &[
    f("rooms", "R", "4", "load rooms (/ws?room=<prefix>-m<i>)"),
    f("clients", "C", "100", "clients per room (load and probe rooms)"),
    f(
        "senders",
        "S",
        "(=clients)",
        "senders per load room; the other C-S clients only listen",
    ),
    f(
        "hz",
        "H",
        "5",
        "values per second per sender (random phase per sender)",
    ),
    f(
        "probe-rooms",
        "P",
        "1",
        "probe rooms: one sender sending 1,2,3,... and C-1 listeners measuring send->receive",
    ),
    f(
        "probe-hz",
        "H",
        "5",
        "values per second of each probe sender; keep <= the server's per-client cap (50/s), else ignored values break the identification",
    ),
    f(
        "junk-pct",
        "PCT",
        "0",
        "percent of load-room sends replaced by messages the server must ignore (value 0, non-number, non-JSON)",
    ),
    f(
        "max-broadcast-hz",
        "N",
        "50",
        "violation if a room delivers more than N frames/s per client on average (0 = no check)",
    ),
    f(
        "connect-concurrency",
        "N",
        "256",
        "WebSocket handshakes in flight during ramp-up",
    ),
    f(
        "load-read-ms",
        "MS",
        "100",
        "load-room clients read their socket at most every MS ms, several frames per read, to keep the harness cheap (0 = as soon as data arrives); probe rooms always read at once",
    ),
    f(
        "room-prefix",
        "STR",
        "(random lt-xxxxxxxx)",
        "prefix of room names; distinct per run by default",
    ),
];

pub const IDLE: &[Flag] = &[
    f("connections", "N", "1000", "WebSocket connections to hold open on /ws"),
    f("rooms", "R", "10", "rooms the connections are spread over"),
    f(
        "conns-per-source",
        "N",
        "5000",
        "bind client sockets to 127.0.0.2, .3, ... with N connections each (0 = let the kernel choose)",
    ),
    f(
        "connect-concurrency",
        "N",
        "256",
        "handshakes in flight during ramp-up",
    ),
    f(
        "ping-timeout-s",
        "SECS",
        "5",
        "at the end every connection pings; how long to wait for the pong",
    ),
];

pub const REST: &[Flag] = &[
    f("connections", "N", "16", "keep-alive HTTP/1.1 connections"),
    f(
        "mix",
        "LIST",
        "menu:1,order:1,get:1,bad:0",
        "request mix weights: menu = GET /api/v1/stores/menu, order = POST /api/v1/stores/orders, get = GET /api/v1/stores/orders/{id}, bad = requests that must fail with exact 400/404 errors",
    ),
    f(
        "idempotency-pct",
        "PCT",
        "0",
        "percent of POSTs sent with a fresh Idempotency-Key",
    ),
    f(
        "idem-repeat-pct",
        "PCT",
        "0",
        "percent of POSTs that repeat an earlier Idempotency-Key and must get the same order back",
    ),
    f(
        "rate",
        "RPS",
        "0",
        "total request rate spread over the connections (0 = closed loop, as fast as possible); with a rate, latency counts from the scheduled send time",
    ),
    f(
        "pipeline",
        "N",
        "1",
        "requests written back to back per connection before reading their responses (HTTP/1.1 pipelining); latency counts from the batch write",
    ),
];

pub const LOBBY: &[Flag] = &[
    f(
        "groups",
        "G",
        "50",
        "groups per wave: G*size clients join the same lobby at once; waves repeat until --duration-s",
    ),
    f("rooms", "N", "1", "lobby rooms the waves rotate over"),
    f(
        "lobby-size",
        "N",
        "3",
        "expected group size (server --lobby-size)",
    ),
    f(
        "start-delay-s",
        "SECS",
        "10",
        "expected start_time - now (server's lobby delay); checked within +-2 s",
    ),
    f(
        "wave-timeout-s",
        "SECS",
        "15",
        "how long a wave may take before missing start_times are violations",
    ),
];

pub const CONFIRM: &[Flag] = &[
    f("batch", "B", "3", "clients per batch on /ws/confirm?room=<menu id>"),
    f(
        "concurrency",
        "K",
        "4",
        "batches in flight (rooms rotate over the 4 menu ids)",
    ),
    f(
        "hold-ms",
        "MS",
        "0",
        "if > 0: B-1 clients send ready, wait MS and check no order arrived, then the last sends ready",
    ),
    f(
        "double-ready",
        "",
        "off",
        "every client sends {\"status\":\"ready\"} twice (the repeat must be ignored)",
    ),
    f(
        "no-verify",
        "",
        "off",
        "skip GET /api/v1/stores/orders/{id} of every received order",
    ),
];

pub const FESTIVAL: &[Flag] = &[
    f(
        "rate",
        "GUESTS/S",
        "2",
        "guest arrival rate (Poisson) during --duration-s; lobbies are topped up to full groups at the end",
    ),
    f(
        "drain-s",
        "SECS",
        "90",
        "after arrivals stop, how long guests in flight may take to finish",
    ),
    f("chant-s", "SECS", "10", "chant length on /ws?room=<menu id>"),
    f("chant-hz", "H", "5", "chant values per second"),
    f(
        "skip-countdown",
        "",
        "off",
        "start chanting right after the lobby instead of waiting for start_time",
    ),
    f(
        "poll-ms",
        "MS",
        "500",
        "guest polls GET /api/v1/stores/orders/{id} this often until completed",
    ),
    f(
        "staff-token",
        "TOKEN",
        "($KAKIGORI_STAFF_TOKEN)",
        "staff bearer token; without one the staff client is off and guests stop after their order is found",
    ),
    f(
        "prep-ms",
        "MS",
        "500",
        "staff: order age before POST .../waiting-pickup",
    ),
    f(
        "pickup-ms",
        "MS",
        "500",
        "staff: time in waitingPickup before POST .../complete",
    ),
    f(
        "staff-list-s",
        "SECS",
        "10",
        "staff: every SECS, GET /api/v1/stores/orders?status=pending and check it (0 = off)",
    ),
    f(
        "isolate",
        "",
        "off",
        "prefix lobby rooms with the run id (default: lobby room = menu id, as the front end does)",
    ),
];

pub const CMDS: &[Cmd] = &[
    Cmd {
        name: "meter",
        about: "chant meter fan-out: R load rooms x C clients + P probe rooms measuring send->receive latency",
        details: "Load rooms: S of C clients send random values 1..100 at H/s with a random phase; all read every\n\
broadcast. Probe rooms: ONE sender sends 1, 2, 3, ... (strictly increasing consecutive integers), the\n\
other C-1 listen. Since the window then always holds a consecutive run j..k, a broadcast\n\
{\"average\":a,\"count\":n} identifies the newest value it reflects: k = a + (n-1)/2 (exact in binary\n\
floating point). A listener that sees k records, for every value m it had not seen reflected yet\n\
(last < m <= k), the latency recv_time - send_time(m); values a broadcast skipped over (conflation)\n\
are thus measured up to the broadcast that first reflected them. Also checked: exact JSON shape,\n\
2a is an integer, k never exceeds the last value sent, count within the 5 s (+100 ms bucket) window\n\
once warm, load-room averages within the range of values sent, server close codes, no more than\n\
--max-broadcast-hz frames/s per client. Reports delivered frames/s and the delivery ratio = frames\n\
received / (values accepted x clients in the room), i.e. what fraction of the naive N^2 fan-out was sent.",
        flags: METER,
        duration_default: "30",
    },
    Cmd {
        name: "idle",
        about: "hold N WebSocket connections on /ws, then check every one still answers a ping",
        details: "Connections ramp up with bounded concurrency, bound to 127.0.0.2.. source addresses when the\n\
target is IPv4 loopback, answer the server's pings and stay silent otherwise. At --duration-s each\n\
one pings and waits for the pong, then closes with 1000 and expects the server's close echo.\n\
Report: opened, survived, dropped (with close codes), ping RTT, harness memory per connection.\n\
More than ~60 s of silence is beyond the server's heartbeat: pongs to the server's pings count as traffic.",
        flags: IDLE,
        duration_default: "30",
    },
    Cmd {
        name: "rest",
        about: "keep-alive HTTP/1.1 mix of menu / create order / get order (+ optional idempotency and error cases)",
        details: "Every response is checked: status, Content-Type, Access-Control-Allow-Origin, exact JSON shape,\n\
menu content, Order fields (id = <store>-<order_number>, menu_name matching the item, status),\n\
order_number unique across the run and increasing per connection, GET returning what POST created,\n\
Idempotency-Key repeats returning the same order, exact error bodies for the 'bad' requests.",
        flags: REST,
        duration_default: "10",
    },
    Cmd {
        name: "lobby",
        about: "G groups x 3 join /ws/stay at once; join->start_time latency and exactly-once grouping",
        details: "Each wave, G*size clients connect to the same lobby room at once. Every client must see only\n\
stay_num 1..size with start_time \"null\", then exactly one {\"stay_num\":\"<size>\",\"start_time\":<RFC 3339 +09:00,\n\
whole seconds, now+delay>} and a close 1000. Per start_time value the number of receivers must be\n\
a multiple of size and every client must get one, so nobody is left in a lobby of size+1.",
        flags: LOBBY,
        duration_default: "10",
    },
    Cmd {
        name: "confirm",
        about: "batches on /ws/confirm?room=<menu id>: everybody ready -> one distinct Order each, then GET finds it",
        details: "Each batch connects B clients, then each sends {\"status\":\"ready\"}; every client must receive\n\
exactly one Order (menu_item_id = room, status pending), distinct across the run, then close 1000;\n\
each order is then fetched with GET /api/v1/stores/orders/{id} and must be identical. Also checks\n\
that /ws/confirm?room=<not a menu id> is refused with 400 'menu item not found: ...'.",
        flags: CONFIRM,
        duration_default: "10",
    },
    Cmd {
        name: "festival",
        about: "whole guest journey at an arrival rate: menu -> lobby -> chant -> confirm -> poll, with a staff client",
        details: "Guest: GET menu, pick a flavour, /ws/stay?room=<id> until start_time, wait for it, chant on\n\
/ws?room=<id> (--chant-s at --chant-hz), /ws/confirm?room=<id> ready -> Order, then poll the order\n\
until 'completed' (statuses may only move pending -> waitingPickup -> completed). Staff: moves each\n\
order of this run along with POST .../waiting-pickup and .../complete (Authorization: Bearer),\n\
checks 401 without/with a wrong token and periodically lists pending orders (sorted, complete).\n\
Per-step latencies are reported. Total run time is about duration + countdown + chant + drain.",
        flags: FESTIVAL,
        duration_default: "60",
    },
];

pub fn find_cmd(name: &str) -> Option<&'static Cmd> {
    CMDS.iter().find(|c| c.name == name)
}

pub fn top_help() -> String {
    let mut s = String::new();
    s.push_str(
        "kakigori-loadtest: load-test and protocol-conformance harness for the kakigori server\n\n",
    );
    s.push_str("USAGE: kakigori-loadtest <SCENARIO> [FLAGS]\n       kakigori-loadtest <SCENARIO> --help\n\nSCENARIOS:\n");
    for c in CMDS {
        s.push_str(&format!("  {:<9} {}\n", c.name, c.about));
    }
    s.push_str(
        "\nEvery scenario is bounded in time, targets loopback only unless --allow-remote,\n",
    );
    s.push_str("prints a progress line on stderr every second and a final report, and exits\n");
    s.push_str("1 on any protocol violation (or more transport errors than --max-errors), 2 on usage errors.\n");
    s
}

fn flag_lines(s: &mut String, flags: &[Flag], duration_default: &str) {
    for fl in flags {
        let left = if fl.val.is_empty() {
            format!("--{}", fl.name)
        } else {
            format!("--{} {}", fl.name, fl.val)
        };
        let def = if fl.name == "duration-s" {
            duration_default
        } else {
            fl.default
        };
        let def = if def.is_empty() {
            String::new()
        } else {
            format!(" [default: {def}]")
        };
        s.push_str(&format!("  {left:<27} {}{def}\n", fl.help));
    }
}

pub fn cmd_help(c: &Cmd) -> String {
    let mut s = format!(
        "kakigori-loadtest {}: {}\n\n{}\n\nSCENARIO FLAGS:\n",
        c.name, c.about, c.details
    );
    flag_lines(&mut s, c.flags, c.duration_default);
    s.push_str("\nCOMMON FLAGS:\n");
    flag_lines(&mut s, COMMON, c.duration_default);
    s.push_str("  --help, -h                  this help\n");
    s
}

/// Parsed options of one invocation.
#[derive(Clone, Debug)]
pub struct Opts {
    pub cmd: &'static str,
    vals: HashMap<&'static str, String>,
    pub compare: Option<(String, String)>,
}

pub enum ParseOutcome {
    Run(Opts),
    Help(String),
}

fn lookup(c: &'static Cmd, name: &str) -> Option<&'static Flag> {
    c.flags
        .iter()
        .chain(COMMON.iter())
        .find(|fl| fl.name == name)
}

pub fn parse(args: &[String]) -> Result<ParseOutcome, String> {
    let Some(first) = args.first() else {
        return Ok(ParseOutcome::Help(top_help()));
    };
    if first == "--help" || first == "-h" || first == "help" {
        return Ok(ParseOutcome::Help(top_help()));
    }
    let cmd = find_cmd(first).ok_or_else(|| {
        format!("unknown scenario '{first}' (expected one of: meter, idle, rest, lobby, confirm, festival)")
    })?;
    let mut vals: HashMap<&'static str, String> = HashMap::new();
    let mut compare = None;
    let mut i = 1;
    while i < args.len() {
        let a = &args[i];
        if a == "--help" || a == "-h" {
            return Ok(ParseOutcome::Help(cmd_help(cmd)));
        }
        let Some(stripped) = a.strip_prefix("--") else {
            return Err(format!("unexpected argument '{a}' (flags start with --)"));
        };
        let (name, inline) = match stripped.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (stripped, None),
        };
        let fl = lookup(cmd, name)
            .ok_or_else(|| format!("unknown flag --{name} for '{}' (see --help)", cmd.name))?;
        if fl.name == "compare" {
            let (x, y) = match inline {
                Some(v) => {
                    let (x, y) = v
                        .split_once(',')
                        .ok_or("--compare=A,B needs two URLs separated by a comma")?;
                    (x.to_string(), y.to_string())
                }
                None => {
                    if i + 2 >= args.len() {
                        return Err("--compare needs two URLs: --compare URL_A URL_B".into());
                    }
                    i += 2;
                    (args[i - 1].clone(), args[i].clone())
                }
            };
            compare = Some((x, y));
        } else if fl.val.is_empty() {
            if let Some(v) = inline {
                if !matches!(v.as_str(), "true" | "false" | "1" | "0" | "yes" | "no") {
                    return Err(format!("--{name} is a switch; got value '{v}'"));
                }
                vals.insert(fl.name, v);
            } else {
                vals.insert(fl.name, "true".into());
            }
        } else {
            let v = match inline {
                Some(v) => v,
                None => {
                    i += 1;
                    args.get(i)
                        .cloned()
                        .ok_or_else(|| format!("--{name} needs a value ({})", fl.val))?
                }
            };
            vals.insert(fl.name, v);
        }
        i += 1;
    }
    Ok(ParseOutcome::Run(Opts {
        cmd: cmd.name,
        vals,
        compare,
    }))
}

impl Opts {
    /// Whether the flag was given on the command line.
    pub fn vals_has(&self, name: &str) -> bool {
        self.vals.contains_key(name)
    }

    fn raw(&self, name: &str) -> Option<String> {
        if let Some(v) = self.vals.get(name) {
            return Some(v.clone());
        }
        let cmd = find_cmd(self.cmd).expect("known cmd");
        if name == "duration-s" {
            return Some(cmd.duration_default.to_string());
        }
        let fl = lookup(cmd, name).unwrap_or_else(|| panic!("flag {name} not declared"));
        if fl.default.is_empty() || fl.default.starts_with('(') {
            None
        } else {
            Some(fl.default.to_string())
        }
    }

    pub fn str(&self, name: &str) -> Option<String> {
        self.raw(name)
    }

    pub fn switch(&self, name: &str) -> bool {
        matches!(
            self.vals.get(name).map(|s| s.as_str()),
            Some("true" | "1" | "yes")
        )
    }

    pub fn f64(&self, name: &str) -> Result<f64, String> {
        let v = self
            .raw(name)
            .ok_or_else(|| format!("--{name} is required"))?;
        let x: f64 = v
            .parse()
            .map_err(|_| format!("--{name}: '{v}' is not a number"))?;
        if !x.is_finite() || x < 0.0 {
            return Err(format!("--{name}: '{v}' must be a finite number >= 0"));
        }
        Ok(x)
    }

    pub fn u64(&self, name: &str) -> Result<u64, String> {
        let v = self
            .raw(name)
            .ok_or_else(|| format!("--{name} is required"))?;
        v.parse()
            .map_err(|_| format!("--{name}: '{v}' is not a non-negative integer"))
    }

    pub fn opt_u64(&self, name: &str) -> Result<Option<u64>, String> {
        match self.raw(name) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| format!("--{name}: '{v}' is not a non-negative integer")),
        }
    }

    pub fn usize(&self, name: &str) -> Result<usize, String> {
        self.u64(name).map(|x| x as usize)
    }

    pub fn pct(&self, name: &str) -> Result<f64, String> {
        let x = self.f64(name)?;
        if x > 100.0 {
            return Err(format!("--{name}: {x} is over 100"));
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(a: &[&str]) -> Result<ParseOutcome, String> {
        parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn parses_flags_and_defaults() {
        let ParseOutcome::Run(o) = p(&["meter", "--rooms", "7", "--json", "--hz=2.5"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(o.u64("rooms").unwrap(), 7);
        assert!(o.switch("json"));
        assert!(!o.switch("quiet"));
        assert_eq!(o.f64("hz").unwrap(), 2.5);
        assert_eq!(o.u64("clients").unwrap(), 100);
        assert_eq!(o.u64("duration-s").unwrap(), 30);
        assert_eq!(o.opt_u64("senders").unwrap(), None);
        assert_eq!(o.str("url").unwrap(), "http://127.0.0.1:8080");
    }

    #[test]
    fn compare_takes_two() {
        let ParseOutcome::Run(o) = p(&[
            "rest",
            "--compare",
            "http://127.0.0.1:1",
            "http://127.0.0.1:2",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            o.compare,
            Some(("http://127.0.0.1:1".into(), "http://127.0.0.1:2".into()))
        );
    }

    #[test]
    fn rejects_unknown() {
        assert!(p(&["meter", "--nope", "1"]).is_err());
        assert!(p(&["nosuch"]).is_err());
        assert!(p(&["rest", "--connections"]).is_err());
        // a meter-only flag is not valid for rest
        assert!(p(&["rest", "--probe-rooms", "1"]).is_err());
    }

    #[test]
    fn help_lists_every_flag_with_default() {
        for c in CMDS {
            let h = cmd_help(c);
            for fl in c.flags.iter().chain(COMMON.iter()) {
                assert!(
                    h.contains(&format!("--{}", fl.name)),
                    "{} {}",
                    c.name,
                    fl.name
                );
            }
            assert!(h.contains(&format!("[default: {}]", c.duration_default)));
        }
        assert!(matches!(
            p(&["idle", "--help"]).unwrap(),
            ParseOutcome::Help(_)
        ));
    }
}
