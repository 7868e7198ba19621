//! Per-core counters and latency histograms, touched only by their own core (plain
//! `Cell`s, no atomics), merged only when `/metrics` is scraped: the scraping core asks
//! every other core for a [`Snapshot`] over the mesh and renders Prometheus text.
//! Orders by menu item and status are the exception: the shared order index counts
//! them as they commit, and the scrape reads its counters.

pub mod histogram;

use crate::http::route::WsKind;
use histogram::Histogram;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Why a WebSocket message was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ignored {
    /// Not `{"value": <number>}`, or a value out of range.
    NotAValue,
    /// `{"value": 0}`: the front end sends one as each chant starts.
    Zero,
    /// Over the per-connection rate cap.
    RateLimited,
    /// A message on an endpoint that takes none, or a repeated/unknown confirm message.
    Unexpected,
}

/// Why a connection or upgrade was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rejected {
    ConnectionsMax,
    PerIpMax,
    RoomsMax,
    RoomFull,
    HeadTimeout,
    /// A WebSocket's room kept moving between cores while the socket was handed on.
    RoomMoving,
}

/// Open connections by endpoint; index into [`Metrics::open`].
#[derive(Debug, Clone, Copy)]
pub enum Endpoint {
    Http = 0,
    Meter = 1,
    Stay = 2,
    Confirm = 3,
    /// `/ws/kitchen` and `/ws/board`.
    Screen = 4,
}

/// The metrics label of a WebSocket path.
impl From<WsKind> for Endpoint {
    fn from(kind: WsKind) -> Endpoint {
        match kind {
            WsKind::Meter => Endpoint::Meter,
            WsKind::Stay => Endpoint::Stay,
            WsKind::Confirm => Endpoint::Confirm,
            WsKind::Kitchen | WsKind::Board => Endpoint::Screen,
        }
    }
}

const ENDPOINT_LABELS: [&str; 5] = ["http", "ws", "ws_stay", "ws_confirm", "ws_screens"];

/// One core's live counters.
#[derive(Default)]
pub struct Metrics {
    pub open: [Cell<i64>; 5],
    pub rooms_open: [Cell<i64>; 5],
    pub ws_in: Cell<u64>,
    pub ws_out: Cell<u64>,
    pub ws_conflated: Cell<u64>,
    ignored: RefCell<BTreeMap<Ignored, u64>>,
    rejected: RefCell<BTreeMap<Rejected, u64>>,
    http: RefCell<BTreeMap<(&'static str, u16), u64>>,
    http_latency: RefCell<BTreeMap<&'static str, Histogram>>,
    broadcast_latency: RefCell<Histogram>,
}

fn bump<K: Ord>(map: &RefCell<BTreeMap<K, u64>>, key: K) {
    *map.borrow_mut().entry(key).or_insert(0) += 1;
}

fn add(cell: &Cell<u64>, n: u64) {
    cell.set(cell.get() + n);
}

impl Metrics {
    pub fn opened(&self, endpoint: Endpoint) {
        let cell = &self.open[endpoint as usize];
        cell.set(cell.get() + 1);
    }

    pub fn closed(&self, endpoint: Endpoint) {
        let cell = &self.open[endpoint as usize];
        cell.set(cell.get() - 1);
    }

    /// A room, lobby or confirm batch came into being (`+1`) or went away (`-1`).
    pub fn room_delta(&self, endpoint: Endpoint, delta: i64) {
        let cell = &self.rooms_open[endpoint as usize];
        cell.set(cell.get() + delta);
    }

    pub fn ws_in(&self) {
        add(&self.ws_in, 1);
    }

    pub fn ws_out(&self, frames: u64) {
        add(&self.ws_out, frames);
    }

    pub fn conflated(&self, frames: u64) {
        add(&self.ws_conflated, frames);
    }

    pub fn ignored(&self, why: Ignored) {
        bump(&self.ignored, why);
    }

    pub fn rejected(&self, why: Rejected) {
        bump(&self.rejected, why);
    }

    pub fn http_request(&self, route: &'static str, status: u16, latency_us: u64) {
        bump(&self.http, (route, status));
        let mut histograms = self.http_latency.borrow_mut();
        histograms.entry(route).or_default().record(latency_us);
    }

    /// A room handed a new average to its members `latency_us` after the first value
    /// it reflects was accepted.
    pub fn broadcast_latency(&self, latency_us: u64) {
        self.broadcast_latency.borrow_mut().record(latency_us);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            open: self.open.each_ref().map(Cell::get),
            rooms_open: self.rooms_open.each_ref().map(Cell::get),
            ws_in: self.ws_in.get(),
            ws_out: self.ws_out.get(),
            ws_conflated: self.ws_conflated.get(),
            ignored: self.ignored.borrow().clone(),
            rejected: self.rejected.borrow().clone(),
            http: self.http.borrow().clone(),
            http_latency: self.http_latency.borrow().clone(),
            broadcast_latency: self.broadcast_latency.borrow().clone(),
            ..Snapshot::default()
        }
    }
}

/// Everything one or more cores counted, in a form that can cross cores and be summed.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub open: [i64; 5],
    pub rooms_open: [i64; 5],
    pub ws_in: u64,
    pub ws_out: u64,
    pub ws_conflated: u64,
    pub ignored: BTreeMap<Ignored, u64>,
    pub rejected: BTreeMap<Rejected, u64>,
    pub http: BTreeMap<(&'static str, u16), u64>,
    pub http_latency: BTreeMap<&'static str, Histogram>,
    pub broadcast_latency: Histogram,
    /// Filled in by the journal owner only.
    pub journal: Option<JournalFigures>,
    pub chant_fallbacks: u64,
    pub chant_backend_successes: u64,
    /// One entry per core merged in, so an operator sees the balance.
    pub cores: Vec<CoreFigures>,
}

/// What one core carries.
#[derive(Debug, Clone, Copy, Default)]
pub struct CoreFigures {
    pub core: usize,
    /// Rooms, lobbies and confirm batches homed on the core.
    pub rooms: usize,
    /// WebSockets on the core.
    pub members: usize,
    /// WebSocket frames the core sent.
    pub frames_out: u64,
    /// CPU time the core's executor thread has used.
    pub busy_s: f64,
}

#[derive(Debug, Clone)]
pub struct JournalFigures {
    pub syncs: u64,
    pub records: u64,
    /// As the order book keeps it; put into fixed buckets when rendered.
    pub sync_latency_us: hdrhistogram::Histogram<u64>,
}

/// Committed orders, as the shared index counts them.
#[derive(Debug, Default)]
pub struct OrderFigures {
    /// `[menu index][status]`.
    pub by_menu_and_status: [[u64; crate::orders::Status::ALL.len()]; crate::menu::MENU.len()],
}

impl Snapshot {
    pub fn merge(&mut self, other: Snapshot) {
        for i in 0..ENDPOINT_LABELS.len() {
            self.open[i] += other.open[i];
            self.rooms_open[i] += other.rooms_open[i];
        }
        self.ws_in += other.ws_in;
        self.ws_out += other.ws_out;
        self.ws_conflated += other.ws_conflated;
        for (k, v) in other.ignored {
            *self.ignored.entry(k).or_insert(0) += v;
        }
        for (k, v) in other.rejected {
            *self.rejected.entry(k).or_insert(0) += v;
        }
        for (k, v) in other.http {
            *self.http.entry(k).or_insert(0) += v;
        }
        for (k, h) in other.http_latency {
            self.http_latency.entry(k).or_default().merge(&h);
        }
        self.broadcast_latency.merge(&other.broadcast_latency);
        if other.journal.is_some() {
            self.journal = other.journal;
        }
        self.chant_fallbacks += other.chant_fallbacks;
        self.chant_backend_successes += other.chant_backend_successes;
        self.cores.extend(other.cores);
    }

    /// Prometheus text exposition format, version 0.0.4.
    pub fn render(&self, orders: &OrderFigures) -> String {
        let mut out = String::with_capacity(16 << 10);
        let o = &mut out;
        header(
            o,
            "kakigori_connections_open",
            "gauge",
            "Open connections by endpoint.",
        );
        for (i, label) in ENDPOINT_LABELS.iter().enumerate() {
            let _ = writeln!(
                o,
                "kakigori_connections_open{{endpoint=\"{label}\"}} {}",
                self.open[i]
            );
        }
        for (endpoint, name, help) in [
            (
                Endpoint::Meter,
                "kakigori_rooms_open",
                "Open /ws chant-meter rooms.",
            ),
            (
                Endpoint::Stay,
                "kakigori_lobbies_open",
                "Open /ws/stay lobbies.",
            ),
            (
                Endpoint::Confirm,
                "kakigori_confirm_batches_open",
                "Open /ws/confirm batches.",
            ),
        ] {
            header(o, name, "gauge", help);
            let _ = writeln!(o, "{name} {}", self.rooms_open[endpoint as usize]);
        }
        header(
            o,
            "kakigori_ws_messages_in_total",
            "counter",
            "WebSocket messages received.",
        );
        let _ = writeln!(o, "kakigori_ws_messages_in_total {}", self.ws_in);
        header(
            o,
            "kakigori_ws_messages_out_total",
            "counter",
            "WebSocket frames sent.",
        );
        let _ = writeln!(o, "kakigori_ws_messages_out_total {}", self.ws_out);
        header(
            o,
            "kakigori_ws_messages_conflated_total",
            "counter",
            "Averages replaced by a newer one before a slow client read them.",
        );
        let _ = writeln!(
            o,
            "kakigori_ws_messages_conflated_total {}",
            self.ws_conflated
        );
        header(
            o,
            "kakigori_ws_messages_ignored_total",
            "counter",
            "WebSocket messages ignored, by reason.",
        );
        for (why, label) in [
            (Ignored::NotAValue, "not_a_value"),
            (Ignored::Zero, "zero"),
            (Ignored::RateLimited, "rate_limited"),
            (Ignored::Unexpected, "unexpected"),
        ] {
            let n = self.ignored.get(&why).copied().unwrap_or(0);
            let _ = writeln!(
                o,
                "kakigori_ws_messages_ignored_total{{reason=\"{label}\"}} {n}"
            );
        }
        header(
            o,
            "kakigori_rejected_total",
            "counter",
            "Connections or upgrades refused by a limit.",
        );
        for (why, label) in [
            (Rejected::ConnectionsMax, "connections_max"),
            (Rejected::PerIpMax, "connections_per_ip_max"),
            (Rejected::RoomsMax, "rooms_per_core_max"),
            (Rejected::RoomFull, "room_clients_max"),
            (Rejected::HeadTimeout, "head_timeout"),
            (Rejected::RoomMoving, "room_moving"),
        ] {
            let n = self.rejected.get(&why).copied().unwrap_or(0);
            let _ = writeln!(o, "kakigori_rejected_total{{reason=\"{label}\"}} {n}");
        }
        header(
            o,
            "kakigori_orders",
            "gauge",
            "Committed orders by menu item and current status.",
        );
        for (menu, row) in orders.by_menu_and_status.iter().enumerate() {
            for (status, n) in row.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "kakigori_orders{{menu_item_id=\"{}\",status=\"{}\"}} {n}",
                    crate::menu::MENU[menu].id,
                    crate::orders::Status::ALL[status].as_str(),
                );
            }
        }
        if let Some(journal) = &self.journal {
            header(
                o,
                "kakigori_journal_syncs_total",
                "counter",
                "fdatasync calls on the journal.",
            );
            let _ = writeln!(o, "kakigori_journal_syncs_total {}", journal.syncs);
            header(
                o,
                "kakigori_journal_records_total",
                "counter",
                "Records made durable.",
            );
            let _ = writeln!(o, "kakigori_journal_records_total {}", journal.records);
            header(
                o,
                "kakigori_journal_sync_duration_seconds",
                "histogram",
                "Journal fdatasync latency.",
            );
            Histogram::from_hdr(&journal.sync_latency_us).render(
                o,
                "kakigori_journal_sync_duration_seconds",
                "",
            );
        }
        header(
            o,
            "kakigori_http_requests_total",
            "counter",
            "HTTP requests by route and status.",
        );
        for ((route, status), n) in &self.http {
            let _ = writeln!(
                o,
                "kakigori_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        header(
            o,
            "kakigori_http_request_duration_seconds",
            "histogram",
            "HTTP request handling latency by route, from its last bytes read to its answer.",
        );
        for (route, histogram) in &self.http_latency {
            histogram.render(
                o,
                "kakigori_http_request_duration_seconds",
                &format!("route=\"{route}\""),
            );
        }
        header(
            o,
            "kakigori_broadcast_latency_seconds",
            "histogram",
            "From a /ws value accepted to the average that reflects it handed to the room's sockets.",
        );
        self.broadcast_latency
            .render(o, "kakigori_broadcast_latency_seconds", "");
        header(
            o,
            "kakigori_chant_fallbacks_total",
            "counter",
            "Chant lines served built-in after a backend failure.",
        );
        let _ = writeln!(o, "kakigori_chant_fallbacks_total {}", self.chant_fallbacks);
        header(
            o,
            "kakigori_chant_backend_lines_total",
            "counter",
            "Chant lines served from the backend.",
        );
        let _ = writeln!(
            o,
            "kakigori_chant_backend_lines_total {}",
            self.chant_backend_successes
        );
        render_cores(&self.cores, o);
        out
    }
}

/// The per-core gauges and counters, labelled `core`.
fn render_cores(cores: &[CoreFigures], o: &mut String) {
    type Row = (
        &'static str,
        &'static str,
        &'static str,
        fn(&CoreFigures) -> String,
    );
    let rows: [Row; 4] = [
        (
            "kakigori_core_rooms",
            "gauge",
            "Rooms, lobbies and confirm batches homed on each core.",
            |c| c.rooms.to_string(),
        ),
        (
            "kakigori_core_websockets",
            "gauge",
            "WebSockets on each core.",
            |c| c.members.to_string(),
        ),
        (
            "kakigori_core_ws_frames_out_total",
            "counter",
            "WebSocket frames each core sent.",
            |c| c.frames_out.to_string(),
        ),
        (
            "kakigori_core_busy_seconds_total",
            "counter",
            "CPU time of each core's executor thread.",
            |c| format!("{:.6}", c.busy_s),
        ),
    ];
    for (name, kind, help, value) in rows {
        header(o, name, kind, help);
        for core in cores {
            let _ = writeln!(o, "{name}{{core=\"{}\"}} {}", core.core, value(core));
        }
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_snapshots_add_up() {
        let a = Metrics::default();
        a.http_request("menu", 200, 100);
        a.opened(Endpoint::Meter);
        a.ignored(Ignored::NotAValue);
        a.ignored(Ignored::Zero);
        a.broadcast_latency(3);
        a.room_delta(Endpoint::Stay, 1);
        let b = Metrics::default();
        b.http_request("menu", 200, 300);
        b.opened(Endpoint::Meter);
        b.broadcast_latency(40_000);
        b.room_delta(Endpoint::Confirm, 1);
        b.room_delta(Endpoint::Stay, 1);
        let mut total = a.snapshot();
        total.merge(b.snapshot());
        assert_eq!(total.http[&("menu", 200)], 2);
        assert_eq!(total.http_latency["menu"].count(), 2);
        assert_eq!(total.broadcast_latency.count(), 2);
        assert_eq!(total.open[Endpoint::Meter as usize], 2);
        let mut orders = OrderFigures::default();
        orders.by_menu_and_status[1][2] = 7;
        let text = total.render(&orders);
        for line in [
            "kakigori_http_requests_total{route=\"menu\",status=\"200\"} 2",
            "kakigori_http_request_duration_seconds_bucket{route=\"menu\",le=\"0.0001\"} 1",
            "kakigori_http_request_duration_seconds_bucket{route=\"menu\",le=\"0.0005\"} 2",
            "kakigori_http_request_duration_seconds_count{route=\"menu\"} 2",
            "kakigori_broadcast_latency_seconds_bucket{le=\"0.00001\"} 1",
            "kakigori_broadcast_latency_seconds_bucket{le=\"0.05\"} 2",
            "kakigori_broadcast_latency_seconds_sum 0.040003",
            "kakigori_connections_open{endpoint=\"ws\"} 2",
            "kakigori_rooms_open 0",
            "kakigori_lobbies_open 2",
            "kakigori_confirm_batches_open 1",
            "kakigori_ws_messages_ignored_total{reason=\"not_a_value\"} 1",
            "kakigori_ws_messages_ignored_total{reason=\"zero\"} 1",
            "kakigori_orders{menu_item_id=\"giiku-haku\",status=\"completed\"} 7",
            "# TYPE kakigori_http_request_duration_seconds histogram",
            "# TYPE kakigori_broadcast_latency_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }
}
