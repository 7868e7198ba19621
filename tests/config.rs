//! The configuration as an operator meets it, through the real binary: `--help` and
//! `--version`, exit code 2 naming the flag or variable of a bad value, the flag winning
//! over its variable, and `kakigori healthcheck` against a running server.

mod common;

use common::Server;
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs the binary with exactly `envs` as its environment (none of the caller's
/// `KAKIGORI_*` variables leak in). `--listen` and `--data-dir` come first so a value
/// that is wrongly accepted serves on a private port instead of 0.0.0.0:8080.
fn kakigori(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kakigori"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .args(args)
        .env_clear()
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Every case here exits at once; one that serves instead is a failure, not a hang.
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("kakigori {args:?} {envs:?} is still running: the bad value was accepted");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `(flag, variable)` of every option, as the library declares them.
fn options() -> Vec<(String, String)> {
    kakigori::config::command()
        .get_arguments()
        .filter_map(|arg| {
            let variable = arg.get_env()?.to_string_lossy().into_owned();
            Some((format!("--{}", arg.get_long()?), variable))
        })
        .collect()
}

/// A loopback address nobody listens on.
fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[test]
fn help_lists_every_flag_with_its_variable_and_no_values() {
    let secret = "kakigori-secret-staff-token";
    assert_eq!(options().len(), 27);
    for help_flag in ["--help", "-h"] {
        let output = kakigori(&[help_flag], &[("KAKIGORI_STAFF_TOKEN", secret)]);
        assert!(output.status.success(), "{}", text(&output.stderr));
        let help = text(&output.stdout);
        for (flag, variable) in options() {
            assert!(
                help.contains(&format!("{flag} <")),
                "{help_flag} lacks {flag}"
            );
            assert!(help.contains(&variable), "{help_flag} lacks {variable}");
        }
        assert!(help.contains("healthcheck"), "{help}");
        assert!(help.contains("every CPU this process may run on"), "{help}");
        assert!(
            !help.contains(secret),
            "{help_flag} shows a variable's value"
        );
    }
}

#[test]
fn version_names_the_binary_and_its_version() {
    let output = kakigori(&["--version"], &[]);
    assert!(output.status.success());
    let expected = format!("kakigori {}\n", env!("CARGO_PKG_VERSION"));
    assert_eq!(text(&output.stdout), expected);
}

#[test]
fn a_bad_flag_exits_2_naming_the_flag() {
    for (args, flag, why) in [
        (&["--cores", "zero"][..], "--cores", "invalid digit"),
        (&["--cores", "0"], "--cores", "not in 1..="),
        (
            &["--meter-window-ms=150"],
            "--meter-window-ms",
            "multiple of 100",
        ),
        (&["--lobby-size=1001"], "--lobby-size", "not in 1..=1000"),
        (&["--store-id", "a b"], "--store-id", "1-64 characters"),
        (&["--staff-token", "short"], "--staff-token", "at least 16"),
        (&["--listen", "nowhere"], "--listen", "socket address"),
        (&["--log", "loud"], "--log", "possible values"),
        (&["--bogus", "1"], "--bogus", "unexpected argument"),
        (&["--gemini-model"], "--gemini-model", "a value is required"),
    ] {
        let output = kakigori(args, &[]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains(why),
            "{args:?}: {stderr}"
        );
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn a_bad_variable_exits_2_naming_the_variable() {
    for (variable, value, why) in [
        ("KAKIGORI_CORES", "zero", "invalid digit"),
        ("KAKIGORI_METER_WINDOW_MS", "150", "multiple of 100"),
        ("KAKIGORI_STAFF_TOKEN", "short", "at least 16"),
        ("KAKIGORI_GEMINI_URL", "ftp://example.com", "http://"),
    ] {
        let output = kakigori(&[], &[(variable, value)]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{variable}: {stderr}");
        assert!(
            stderr.contains(variable) && stderr.contains(why),
            "{stderr}"
        );
    }
}

#[test]
fn the_flag_wins_over_its_variable() {
    let server = Server::start(&[]);
    let live = server.addr.to_string();
    let closed = closed_port().to_string();
    let healthcheck = |args: &[&str], envs: &[(&str, &str)]| {
        let output = Command::new(env!("CARGO_BIN_EXE_kakigori"))
            .args(args)
            .env_clear()
            .envs(envs.iter().copied())
            .output()
            .unwrap();
        (output.status.code(), text(&output.stderr))
    };
    // The variable is used when the flag is absent, and the flag overrides it.
    let answered = (Some(0), String::new());
    let with_listen = [("KAKIGORI_LISTEN", live.as_str())];
    assert_eq!(healthcheck(&["healthcheck"], &with_listen), answered);
    let with_closed = [("KAKIGORI_LISTEN", closed.as_str())];
    let flag_after = ["healthcheck", "--listen", live.as_str()];
    assert_eq!(healthcheck(&flag_after, &with_closed), answered);
    let flag_before = ["--listen", live.as_str(), "healthcheck"];
    assert_eq!(healthcheck(&flag_before, &with_closed), answered);
    // A bad variable whose flag is given is never read.
    let bad_store = [("KAKIGORI_STORE_ID", "a b")];
    let good_store = ["healthcheck", "--listen", live.as_str(), "--store-id", "ok"];
    assert_eq!(healthcheck(&good_store, &bad_store), answered);
    // Nobody at the address: exit 1, saying where it looked.
    let (code, stderr) = healthcheck(&["healthcheck"], &with_closed);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot reach {closed}")),
        "{stderr}"
    );
}
