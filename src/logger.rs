//! A stderr logger: one line per event, `LEVEL target: message`, level from `--log` /
//! `KAKIGORI_LOG`. Writes go straight to stderr without buffering so nothing is lost
//! when the process is killed.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;

struct StderrLogger;

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        };
        let line = format!("{level} {}: {}\n", record.target(), record.args());
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Installs the logger once; `level` was validated by the config parser.
pub fn init(level: &str) {
    let filter = level.parse().unwrap_or(LevelFilter::Info);
    if log::set_logger(&StderrLogger).is_ok() {
        log::set_max_level(filter);
    }
}
