//! SPEC.md as checks: exact JSON shapes (serde with `deny_unknown_fields`),
//! the menu, orders, error bodies, meter and lobby messages. Each returns
//! what was wrong, for the report.

use std::collections::HashSet;

use anyhow::{anyhow, bail, ensure, Result};
use async_tungstenite::tungstenite::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::http::Response;

/// (id, name, description) in the required order.
pub const MENU: [(&str, &str, &str); 4] = [
    (
        "giiku-sai",
        "技育祭な いちご味",
        "技育祭をイメージしたいちご味のかき氷",
    ),
    (
        "giiku-haku",
        "技育博な メロン味",
        "技育博をイメージしたメロン味のかき氷",
    ),
    (
        "giiku-ten",
        "技育展な ブルーハワイ味",
        "技育展をイメージしたブルーハワイ味のかき氷",
    ),
    (
        "giiku-camp",
        "技育CAMPな オレンジ味",
        "技育CAMPをイメージしたオレンジ味のかき氷",
    ),
];

/// Order statuses in the only order they may take.
pub const STATUSES: [&str; 3] = ["pending", "waitingPickup", "completed"];

/// The server's lobby defaults (SPEC 2.2): groups of 3, start_time = now + 10 s.
pub const GROUP: usize = 3;
const START_DELAY_S: f64 = 10.0;

/// The first 200 characters, for examples in the report.
fn short(b: &[u8]) -> String {
    String::from_utf8_lossy(b).chars().take(200).collect()
}

/// Parse `b` as exactly `T`, or say what it should have been.
fn exact<'a, T: Deserialize<'a>>(b: &'a [u8], want: &str) -> Result<T> {
    let e = |e| anyhow!("not {want} ({e}): {}", short(b));
    serde_json::from_slice(b).map_err(e)
}

/// The headers every response carries (SPEC 1): CORS and, with a body, JSON.
pub fn common_headers(r: &Response) -> Result<()> {
    let cors = r.header("access-control-allow-origin");
    ensure!(cors == Some("*"), "CORS header {cors:?}");
    let ct = r.header("content-type").unwrap_or("");
    let json = ct.to_ascii_lowercase().starts_with("application/json");
    ensure!(r.body.is_empty() || json, "Content-Type {ct:?}");
    Ok(())
}

/// Status, common headers and a JSON body.
pub fn json_response(r: &Response, status: u16) -> Result<()> {
    let (got, body) = (r.status, short(&r.body));
    ensure!(got == status, "status {got} (want {status}): {body}");
    common_headers(r)?;
    exact::<Value>(&r.body, "JSON").map(drop)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ErrorBody {
    error: String,
    message: String,
}

/// `{"error": "<HTTP reason>", "message": "<msg>"}` exactly; `msg` None:
/// any message.
pub fn error_response(r: &Response, status: u16, msg: Option<&str>) -> Result<()> {
    json_response(r, status)?;
    let e: ErrorBody = exact(&r.body, "{\"error\":..,\"message\":..}")?;
    let code = StatusCode::from_u16(status).ok();
    let reason = code.and_then(|c| c.canonical_reason());
    let (error, message) = (&e.error, &e.message);
    ensure!(Some(&**error) == reason, "error {error:?}, want {reason:?}");
    let right = msg.is_none_or(|m| m == message);
    ensure!(right, "message {message:?}, want {msg:?}");
    Ok(())
}

/// `{"status":"ok"}` of the health endpoints.
pub fn check_health(r: &Response) -> Result<()> {
    json_response(r, 200)?;
    let ok = exact::<Value>(&r.body, "JSON")? == json!({"status": "ok"});
    ensure!(ok, "body {}", short(&r.body));
    Ok(())
}

/// `{"menu":[...]}` with exactly [`MENU`], in order.
pub fn check_menu(body: &[u8]) -> Result<()> {
    let item = |(id, name, d)| json!({"id": id, "name": name, "description": d});
    let want = json!({ "menu": MENU.map(item) });
    let ok = exact::<Value>(body, "JSON")? == want;
    ensure!(ok, "not the menu: {}", short(body));
    Ok(())
}

/// An Order exactly as on the wire.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Order {
    pub id: String,
    pub menu_item_id: String,
    pub menu_name: String,
    pub status: String,
    pub order_number: u64,
    /// RFC 3339 UTC with milliseconds; `null` for orders journaled before
    /// times were kept.
    pub created_at: Option<String>,
    /// The last status change, never before `created_at`.
    pub updated_at: Option<String>,
}

/// `{"orders":[Order...]}` of the staff list.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct OrderList {
    pub orders: Vec<Order>,
}

impl Order {
    /// Internal consistency: id = <store>-<order_number>, the name of the
    /// item, a known status, well-formed times in order.
    pub fn check(self) -> Result<Order> {
        let (id, created, updated) = (&self.id, &self.created_at, &self.updated_at);
        // one fixed width (2026-07-01T09:30:00.123Z): text order is time order
        let ms_utc = |t: &String| t.len() == 24 && &t[10..11] == "T" && t.ends_with('Z');
        let times = created.iter().chain(updated).all(ms_utc);
        ensure!(times, "{id}: times not RFC 3339 UTC in ms");
        let backwards = matches!((created, updated), (Some(c), Some(u)) if u < c);
        ensure!(!backwards, "{id}: updated_at before created_at");
        let n = self.order_number;
        let store = id.strip_suffix(&n.to_string());
        let store = store.and_then(|s| s.strip_suffix('-'));
        let named = n > 0 && store.is_some_and(|s| !s.is_empty());
        ensure!(named, "id {id:?} is not <store>-{n}");
        let (item, name) = (&self.menu_item_id, &self.menu_name);
        let on_menu = MENU.iter().any(|m| (m.0, m.1) == (item, name));
        ensure!(on_menu, "{id}: {item} {name} is not on the menu");
        let status = &self.status;
        ensure!(status_rank(status).is_some(), "{id}: status {status}");
        Ok(self)
    }

    /// The store id: the id up to `-<order_number>`.
    pub fn store(&self) -> &str {
        self.id.rsplit_once('-').map_or("", |(s, _)| s)
    }

    /// `got` is this order (the same id, number and item).
    pub fn same_as(&self, got: &Order) -> Result<()> {
        let key = |o: &Order| (o.id.clone(), o.order_number, o.menu_item_id.clone());
        ensure!(key(self) == key(got), "asked {}, got {got:?}", self.id);
        Ok(())
    }
}

pub fn status_rank(s: &str) -> Option<usize> {
    STATUSES.iter().position(|x| *x == s)
}

/// The staff's pending list: exactly `{"orders":[Order...]}`, only
/// pending orders, ascending by number, with every order of `ours` in it.
pub fn check_pending(b: &[u8], ours: &HashSet<String>) -> Result<()> {
    let list: OrderList = exact(b, "{\"orders\":[Order...]}")?;
    let listed: HashSet<&String> = list.orders.iter().map(|o| &o.id).collect();
    let missing = ours.iter().find(|id| !listed.contains(id));
    ensure!(missing.is_none(), "pending order {missing:?} missing");
    let mut prev = 0;
    for o in list.orders {
        let (n, o) = (o.order_number, o.check()?);
        ensure!(
            o.status == "pending" && n > prev,
            "{o:?} listed after {prev}"
        );
        prev = n;
    }
    Ok(())
}

/// Exact Order shape and internal consistency.
pub fn parse_order(b: &[u8]) -> Result<Order> {
    exact::<Order>(b, "an Order")?.check()
}

/// A confirm message for `room`: this client's new Order (SPEC 2.3).
pub fn parse_confirmed(b: &[u8], room: &str) -> Result<Order> {
    let failed = exact::<Value>(b, "JSON")? == json!({"error": "order failed"});
    ensure!(!failed, "order failed for {room}");
    let o = parse_order(b)?;
    let ok = o.menu_item_id == room && o.status == "pending";
    ensure!(ok, "not a pending {room}: {o:?}");
    Ok(o)
}

/// A chant-meter broadcast.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Avg {
    pub average: f64,
    pub count: u64,
}

pub fn parse_avg(b: &[u8]) -> Result<Avg> {
    let a: Avg = exact(b, "{\"average\":<number>,\"count\":<integer>}")?;
    ensure!(a.count > 0, "count 0 in a broadcast: {}", short(b));
    Ok(a)
}

/// The newest value a probe-room broadcast reflects. A probe sender sends
/// 1, 2, 3, ..., so the window holds consecutive integers j..=k: average =
/// (j+k)/2, count = k-j+1, so k = average + (count-1)/2. It must be a value
/// sent already (`sent` of them) and not older than the `last` one seen.
pub fn probe_newest(a: &Avg, sent: usize, last: u64) -> Result<u64> {
    let (twice, n) = (a.average * 2.0, a.count as i64);
    let k2 = twice.round() as i64 + n - 1; // 2k
    let half = (twice - twice.round()).abs() < 1e-6;
    let run = half && k2 % 2 == 0 && k2 / 2 - n + 1 >= 1;
    ensure!(run, "{a:?} is no run of integers >= 1");
    let k = (k2 / 2) as u64;
    ensure!(k as usize <= sent, "newest value {k}, only {sent} sent");
    ensure!(k >= last, "newest value {k} after {last}");
    Ok(k)
}

#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Stay {
    pub stay_num: String,
    pub start_time: String,
}

/// A lobby message: `{"stay_num":"<1..3>","start_time":"null"}` while the
/// group fills, then once `{"stay_num":"3","start_time":"<now + 10 s>"}`,
/// and nothing after that (`started`).
pub fn parse_stay(b: &[u8], started: bool) -> Result<Stay> {
    let m: Stay = exact(b, "{\"stay_num\":\"<n>\",\"start_time\":\"...\"}")?;
    ensure!(!started, "message after start_time: {}", short(b));
    let digits = m.stay_num.bytes().all(|b| b.is_ascii_digit());
    let n = m.stay_num.parse().ok().filter(|_| digits).unwrap_or(0);
    let (t, full) = (&m.start_time, m.start_time != "null");
    let in_range = (1..=GROUP).contains(&n) && (!full || n == GROUP);
    ensure!(in_range, "stay_num out of range: {}", short(b));
    if full {
        let ahead_s = parse_tokyo_rfc3339(t)? as f64 - unix_now();
        let on_time = (ahead_s - START_DELAY_S).abs() <= 2.0;
        ensure!(on_time, "start_time {t} is {ahead_s:.1} s ahead");
    }
    Ok(m)
}

/// Parse `YYYY-MM-DDTHH:MM:SS+09:00` exactly (whole seconds, Tokyo offset)
/// into Unix seconds.
pub fn parse_tokyo_rfc3339(s: &str) -> Result<i64> {
    let t = chrono::DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%:z");
    match t {
        Ok(t) if s.len() == 25 && t.offset().local_minus_utc() == 9 * 3600 => Ok(t.timestamp()),
        _ => bail!("{s:?} is not YYYY-MM-DDTHH:MM:SS+09:00"),
    }
}

pub fn unix_now() -> f64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders() {
        let v = json!({"id":"store-001-7","menu_item_id":"giiku-sai","menu_name":"技育祭な いちご味","status":"pending","order_number":7,
                       "created_at":"2026-07-01T09:30:00.123Z","updated_at":"2026-07-01T09:30:00.123Z"});
        let order = |v: &Value| parse_order(v.to_string().as_bytes());
        let o = order(&v).unwrap();
        assert_eq!(o.store(), "store-001");
        let early = "2026-07-01T09:29:59.999Z";
        for (k, x) in [
            ("updated_at", early),
            ("menu_name", "x"),
            ("id", "store-001-8"),
        ] {
            let mut b = v.clone();
            b[k] = json!(x);
            assert!(order(&b).is_err(), "{b}");
        }
        let mut other = o.clone();
        other.order_number = 8;
        assert!(o.same_as(&other).is_err());
        let list = format!(r#"{{"orders":[{v}]}}"#);
        let ours = |id: &str| HashSet::from([id.to_string()]);
        assert!(check_pending(list.as_bytes(), &ours("store-001-7")).is_ok());
        assert!(check_pending(list.as_bytes(), &ours("store-001-6")).is_err());
    }

    #[test]
    fn menu_and_errors() {
        let items = MENU.map(|(i, n, d)| json!({"id": i, "name": n, "description": d}));
        assert!(check_menu(json!({ "menu": items }).to_string().as_bytes()).is_ok());
        let body = r#"{"error":"Not Found","message":"Order not found"}"#;
        let head = "HTTP/1.1 404 X\r\nAccess-Control-Allow-Origin: *";
        let n = body.len();
        let raw = format!(
            "{head}\r\nContent-Type: application/json\r\nContent-Length: {n}\r\n\r\n{body}"
        );
        let nf = crate::http::parse_response(raw.as_bytes()).unwrap();
        let error = |status, msg| error_response(&nf.as_ref().unwrap().0, status, msg).is_ok();
        assert!(error(404, Some("Order not found")) && !error(404, Some("x")) && !error(400, None));
    }

    #[test]
    fn probe_identification() {
        let newest = |average, count| probe_newest(&Avg { average, count }, 1000, 0).ok();
        assert!([newest(4.3, 4), newest(4.5, 3), newest(1.0, 3)]
            .iter()
            .all(Option::is_none));
        // every run j..=k identifies k, computed as the server does
        for (j, k) in (1..60u64).flat_map(|j| (j..j + 40).map(move |k| (j, k))) {
            let n = k - j + 1;
            assert_eq!(newest((j..=k).sum::<u64>() as f64 / n as f64, n), Some(k));
        }
        let a = parse_avg(br#"{"average":2.5,"count":4}"#).unwrap();
        assert!(probe_newest(&a, 3, 0).is_err() && probe_newest(&a, 4, 5).is_err());
        assert!(parse_avg(br#"{"average":2.5,"count":4,"x":1}"#).is_err());
    }

    #[test]
    fn lobby_messages() {
        let stay = |b: &str, started| parse_stay(b.as_bytes(), started).is_ok();
        let two = r#"{"stay_num":"2","start_time":"null"}"#;
        assert!(stay(two, false) && !stay(two, true) && !stay(&two.replace('2', "4"), false));
        let soon = chrono::DateTime::from_timestamp(unix_now() as i64 + 10, 0).unwrap();
        let t = soon.with_timezone(&chrono::FixedOffset::east_opt(9 * 3600).unwrap());
        let t = t.format("%FT%T%:z");
        let at = |n: u8| format!(r#"{{"stay_num":"{n}","start_time":"{t}"}}"#);
        assert!(stay(&at(3), false) && !stay(&at(2), false));
        assert!(parse_tokyo_rfc3339("2025-10-25T14:03:21Z").is_err());
        assert!(parse_tokyo_rfc3339("2025-10-25T14:03:21.5+09:00").is_err());
    }
}
