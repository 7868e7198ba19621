//! `kakigori journal verify|export`: the operator's look at a journal, read-only and
//! safe while a server runs on it.
//!
//! It takes no lock and writes nothing: it reads the file once, the way start-up does
//! (`journal::scan`), and reports. A server appends whole batches after the last
//! durable one, so a reader sees a prefix of the journal; a batch being written shows
//! as an unfinished last batch, which is reported, not counted as damage.

use std::fmt;
use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use crate::menu;
use crate::orders::journal::{self, JournalError, Scan};
use crate::orders::{Rfc3339, Status};

/// What the tool was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Check every batch and record; summarize the orders.
    Verify,
    /// Write every order with its times.
    Export(Format),
}

/// How `export` writes orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A header line, then one line per order.
    Csv,
    /// One Order JSON (the API's shape) per line.
    Jsonl,
}

impl Format {
    pub fn parse(name: &str) -> Option<Format> {
        match name {
            "csv" => Some(Format::Csv),
            "jsonl" => Some(Format::Jsonl),
            _ => None,
        }
    }
}

/// Why the tool failed.
#[derive(Debug)]
pub enum Failure {
    /// The journal is missing, unreadable or damaged (the message start-up gives).
    Journal(JournalError),
    /// Writing the output failed (e.g. a closed pipe).
    Output(io::Error),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Journal(error) => error.fmt(f),
            Failure::Output(error) => write!(f, "cannot write the output: {error}"),
        }
    }
}

impl std::error::Error for Failure {}

impl From<io::Error> for Failure {
    fn from(error: io::Error) -> Self {
        Failure::Output(error)
    }
}

/// Carries out `action` on the journal in `data_dir`, writing to `out`. Order ids are
/// `<store_id>-<number>`.
pub fn run(
    action: Action,
    data_dir: &Path,
    store_id: &str,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let path = data_dir.join(journal::FILE_NAME);
    let bytes = fs::read(&path).map_err(|source| {
        Failure::Journal(JournalError::Io {
            path: path.clone(),
            source,
        })
    })?;
    let scan = journal::scan(&path, &bytes).map_err(Failure::Journal)?;
    match action {
        Action::Verify => verify(&path, &scan, out),
        Action::Export(format) => export(&scan, store_id, format, out),
    }
}

fn verify(path: &Path, scan: &Scan, out: &mut dyn Write) -> Result<(), Failure> {
    let orders = &scan.replay.orders;
    let records = scan.next_seq - 1;
    match scan.version {
        1 => writeln!(
            out,
            "journal {}: format version 1 (the next start of the server upgrades it), \
             {records} records; every checksum and order rule holds",
            path.display()
        )?,
        version => writeln!(
            out,
            "journal {}: format version {version}, {} batches, {records} records; every \
             checksum and order rule holds",
            path.display(),
            scan.batches
        )?,
    }
    let mut by_status = [0u64; 3];
    for order in orders {
        by_status[order.status as usize] += 1;
    }
    let counts: Vec<String> = Status::ALL
        .iter()
        .map(|status| format!("{} {}", status.as_str(), by_status[*status as usize]))
        .collect();
    writeln!(out, "orders: {} ({})", orders.len(), counts.join(", "))?;
    match orders.last() {
        Some(last) => writeln!(out, "last order number: {}", last.number)?,
        None => writeln!(out, "last order number: none yet")?,
    }
    writeln!(out, "idempotency keys: {}", scan.replay.rules.keys())?;
    if scan.torn_bytes > 0 {
        writeln!(
            out,
            "the last {} bytes are an unfinished batch (a write in progress, or one a crash \
             cut short; it was never acknowledged and the next start cuts it)",
            scan.torn_bytes
        )?;
    }
    Ok(())
}

fn export(scan: &Scan, store_id: &str, format: Format, out: &mut dyn Write) -> Result<(), Failure> {
    let mut out = BufWriter::new(out);
    if format == Format::Csv {
        writeln!(
            out,
            "id,order_number,menu_item_id,menu_name,status,created_at,updated_at"
        )?;
    }
    let mut line = Vec::with_capacity(256);
    for order in &scan.replay.orders {
        line.clear();
        match format {
            Format::Jsonl => order.write_json(store_id, &mut line),
            // No field needs quoting: store ids are [A-Za-z0-9_-], menu strings and
            // status names are constants without commas or quotes, times are RFC 3339
            // (empty when unknown).
            Format::Csv => {
                let item = menu::item(order.menu);
                write!(
                    line,
                    "{store_id}-{number},{number},{},{},{},{},{}",
                    item.id,
                    item.name,
                    order.status.as_str(),
                    Rfc3339(order.created_ms),
                    Rfc3339(order.updated_ms),
                    number = order.number,
                )?;
            }
        }
        line.push(b'\n');
        out.write_all(&line)?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::menu::MENU;

    #[test]
    fn formats_parse_by_name() {
        assert_eq!(Format::parse("csv"), Some(Format::Csv));
        assert_eq!(Format::parse("jsonl"), Some(Format::Jsonl));
        assert_eq!(Format::parse("json"), None);
    }

    #[test]
    fn menu_strings_need_no_csv_quoting() {
        for item in MENU {
            for field in [item.id, item.name] {
                assert!(!field.contains([',', '"', '\n', '\r']), "{field}");
            }
        }
    }

    #[test]
    fn a_missing_journal_is_a_journal_failure_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        let error = run(Action::Verify, dir.path(), "store-001", &mut out).unwrap_err();
        assert!(matches!(error, Failure::Journal(JournalError::Io { .. })));
        assert!(error.to_string().contains("orders.journal"), "{error}");
        assert!(out.is_empty());
    }
}
