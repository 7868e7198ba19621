//! SPEC.md as checks: exact JSON shapes (serde with `deny_unknown_fields`),
//! the menu, orders, error bodies, meter and lobby messages.

use async_tungstenite::tungstenite::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

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

/// The first 200 characters, for examples in the report.
fn short(b: &[u8]) -> String {
    String::from_utf8_lossy(b).chars().take(200).collect()
}

/// Parse `b` as exactly `T`, or say what it should have been.
fn exact<'a, T: Deserialize<'a>>(b: &'a [u8], want: &str) -> Result<T, String> {
    serde_json::from_slice(b).map_err(|e| format!("not {want} ({e}): {}", short(b)))
}

/// The headers every response carries (SPEC 1): CORS and, with a body, JSON.
pub fn common_headers(r: &Response) -> Result<(), String> {
    if r.header("access-control-allow-origin") != Some("*") {
        let got = r.header("access-control-allow-origin");
        return Err(format!("Access-Control-Allow-Origin {got:?}, want \"*\""));
    }
    let ct = r.header("content-type").unwrap_or("");
    if !r.body.is_empty() && !ct.to_ascii_lowercase().starts_with("application/json") {
        return Err(format!("Content-Type {ct:?}, want application/json"));
    }
    Ok(())
}

/// Status, common headers and a JSON body, which it returns.
pub fn json_response(r: &Response, status: u16) -> Result<Value, String> {
    if r.status != status {
        return Err(format!(
            "status {} (want {status}), body {}",
            r.status,
            short(&r.body)
        ));
    }
    common_headers(r)?;
    exact(&r.body, "JSON")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ErrorBody {
    error: String,
    message: String,
}

/// `{"error": "<HTTP reason>", "message": "<msg>"}` exactly; `msg` None:
/// any message.
pub fn error_response(r: &Response, status: u16, msg: Option<&str>) -> Result<(), String> {
    json_response(r, status)?;
    let e: ErrorBody = exact(&r.body, "{\"error\":\"..\",\"message\":\"..\"}")?;
    let code = StatusCode::from_u16(status).ok();
    let reason = code.and_then(|c| c.canonical_reason()).unwrap_or("");
    if e.error != reason {
        return Err(format!("error {:?}, want {reason:?}", e.error));
    }
    match msg {
        Some(m) if e.message != m => Err(format!("message {:?}, want {m:?}", e.message)),
        _ => Ok(()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Menu {
    menu: Vec<MenuItem>,
}

#[derive(Deserialize, PartialEq, Debug)]
#[serde(deny_unknown_fields)]
struct MenuItem {
    id: String,
    name: String,
    description: String,
}

/// `{"menu":[...]}` with exactly [`MENU`], in order.
pub fn check_menu(body: &[u8]) -> Result<(), String> {
    let m: Menu = exact(body, "{\"menu\":[{\"id\",\"name\",\"description\"}...]}")?;
    let want = MENU.iter().map(|(id, name, desc)| MenuItem {
        id: id.to_string(),
        name: name.to_string(),
        description: desc.to_string(),
    });
    if !m.menu.into_iter().eq(want) {
        return Err(format!(
            "menu is not the four items in order: {}",
            short(body)
        ));
    }
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
    pub fn check(self) -> Result<Order, String> {
        let id = &self.id;
        // one fixed-width format (2026-07-01T09:30:00.123Z): text order is time order
        let well_formed = |t: &Option<String>| {
            t.as_ref()
                .is_none_or(|t| t.len() == 24 && t.ends_with('Z') && t.as_bytes()[10] == b'T')
        };
        let (created, updated) = (&self.created_at, &self.updated_at);
        if !well_formed(created) || !well_formed(updated) {
            return Err(format!(
                "{id}: times {created:?} / {updated:?} are not RFC 3339 UTC with milliseconds"
            ));
        }
        if matches!((created, updated), (Some(c), Some(u)) if u < c) {
            return Err(format!(
                "{id}: updated_at {updated:?} before created_at {created:?}"
            ));
        }
        if self.order_number == 0 {
            return Err(format!("{id}: order_number 0 (numbering starts at 1)"));
        }
        let n = self.order_number.to_string();
        if self.store().is_empty() || id.strip_suffix(&n).is_none_or(|s| !s.ends_with('-')) {
            return Err(format!("id {id:?} is not <store>-<order_number> ({n})"));
        }
        match MENU.iter().find(|m| m.0 == self.menu_item_id) {
            Some(m) if m.1 == self.menu_name => {}
            Some(m) => {
                return Err(format!(
                    "{id}: menu_name {:?}, want {:?}",
                    self.menu_name, m.1
                ))
            }
            None => {
                return Err(format!(
                    "{id}: menu_item_id {:?} is not on the menu",
                    self.menu_item_id
                ))
            }
        }
        if status_rank(&self.status).is_none() {
            return Err(format!(
                "{id}: status {:?} is not one of {STATUSES:?}",
                self.status
            ));
        }
        Ok(self)
    }

    /// The store id: the id up to `-<order_number>`.
    pub fn store(&self) -> &str {
        self.id.rsplit_once('-').map_or("", |(s, _)| s)
    }

    /// `got` is this order (the same id, number and item).
    pub fn same_as(&self, got: &Order) -> Result<(), String> {
        let same = (&got.id, got.order_number, &got.menu_item_id)
            == (&self.id, self.order_number, &self.menu_item_id);
        match same {
            true => Ok(()),
            false => Err(format!("asked for {}, got {got:?}", self.id)),
        }
    }
}

pub fn status_rank(s: &str) -> Option<usize> {
    STATUSES.iter().position(|x| *x == s)
}

/// Exact Order shape and internal consistency.
pub fn parse_order(b: &[u8]) -> Result<Order, String> {
    exact::<Order>(b, "an Order")?.check()
}

/// A chant-meter broadcast.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Avg {
    pub average: f64,
    pub count: u64,
}

pub fn parse_avg(b: &[u8]) -> Result<Avg, String> {
    let a: Avg = exact(b, "{\"average\":<number>,\"count\":<integer>}")?;
    if a.count == 0 {
        return Err(format!("count 0 in a broadcast: {}", short(b)));
    }
    Ok(a)
}

/// The newest value a probe-room broadcast reflects, when the window holds
/// consecutive integers j..=k: average = (j+k)/2, count = k-j+1, so
/// k = average + (count-1)/2. Errors if the pair cannot come from such a run.
pub fn probe_newest(a: &Avg) -> Result<u64, String> {
    let twice = a.average * 2.0;
    let (avg, n) = (a.average, a.count as i64);
    if (twice - twice.round()).abs() > 1e-6 {
        return Err(format!("average {avg} is not a half-integer"));
    }
    let k2 = twice.round() as i64 + n - 1; // 2k
    if k2 % 2 != 0 || k2 / 2 - n + 1 < 1 {
        return Err(format!(
            "average {avg} with count {n} is no run of integers >= 1"
        ));
    }
    Ok((k2 / 2) as u64)
}

/// A lobby message.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Stay {
    pub stay_num: String,
    pub start_time: String,
}

pub fn parse_stay(b: &[u8]) -> Result<Stay, String> {
    exact(b, "{\"stay_num\":\"<n>\",\"start_time\":\"...\"}")
}

/// Parse `YYYY-MM-DDTHH:MM:SS+09:00` exactly (whole seconds, Tokyo offset)
/// into Unix seconds.
pub fn parse_tokyo_rfc3339(s: &str) -> Result<i64, String> {
    let t = chrono::DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%:z")
        .ok()
        .filter(|t| s.len() == 25 && t.offset().local_minus_utc() == 9 * 3600)
        .ok_or_else(|| format!("{s:?} is not YYYY-MM-DDTHH:MM:SS+09:00"))?;
    Ok(t.timestamp())
}

pub fn unix_now() -> f64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order(v: &Value) -> Result<Order, String> {
        parse_order(v.to_string().as_bytes())
    }

    #[test]
    fn orders() {
        let v = json!({"id":"store-001-7","menu_item_id":"giiku-sai","menu_name":"技育祭な いちご味","status":"pending","order_number":7,
                       "created_at":"2026-07-01T09:30:00.123Z","updated_at":"2026-07-01T09:30:00.123Z"});
        let o = order(&v).unwrap();
        assert_eq!((o.store(), o.order_number), ("store-001", 7));
        assert!(o.same_as(&o).is_ok());
        let untimed = json!({"created_at": null, "updated_at": null});
        let mut ok = v.clone();
        ok.as_object_mut()
            .unwrap()
            .extend(untimed.as_object().unwrap().clone());
        assert!(order(&ok).is_ok());
        for (k, bad) in [
            ("updated_at", json!("2026-07-01T09:29:59.999Z")),
            ("created_at", json!(1782898200)),
            ("order_number", json!(8)),
            ("order_number", json!("7")),
            ("menu_name", json!("x")),
            ("extra", json!(1)),
            ("status", json!("waiting")),
            ("id", json!("-7")),
        ] {
            let mut b = v.clone();
            b[k] = bad;
            assert!(order(&b).is_err(), "{b}");
        }
        let mut other = o.clone();
        other.order_number = 8;
        assert!(o.same_as(&other).is_err());
    }

    #[test]
    fn menu_and_errors() {
        let items: Vec<Value> = MENU
            .iter()
            .map(|(i, n, d)| json!({"id": i, "name": n, "description": d}))
            .collect();
        assert!(check_menu(json!({ "menu": items }).to_string().as_bytes()).is_ok());
        let rev: Vec<Value> = items.iter().rev().cloned().collect();
        assert!(check_menu(json!({ "menu": rev }).to_string().as_bytes()).is_err());
        assert!(check_menu(json!({ "menu": items, "x": 1 }).to_string().as_bytes()).is_err());
        let resp = |status: u16, body: Value| {
            let b = body.to_string();
            let raw = format!("HTTP/1.1 {status} X\r\nAccess-Control-Allow-Origin: *\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}", b.len());
            crate::http::parse_response(raw.as_bytes())
                .unwrap()
                .unwrap()
                .0
        };
        let nf = resp(
            404,
            json!({"error":"Not Found","message":"Order not found"}),
        );
        assert!(error_response(&nf, 404, Some("Order not found")).is_ok());
        assert!(error_response(&nf, 404, Some("x")).is_err());
        assert!(error_response(&nf, 400, None).is_err());
        let wrong = resp(404, json!({"error":"Bad Request","message":"x"}));
        assert!(error_response(&wrong, 404, None).is_err());
        assert!(error_response(&resp(400, json!({"error":"Bad Request"})), 400, None).is_err());
    }

    #[test]
    fn averages() {
        let a = parse_avg(br#"{"average":2.5,"count":4}"#).unwrap();
        assert_eq!(
            a,
            Avg {
                average: 2.5,
                count: 4
            }
        );
        assert!(parse_avg(br#"{"average":1,"count":1}"#).is_ok());
        for bad in [
            &br#"{"average":2.5,"count":4,"x":1}"#[..],
            br#"{"average":2.5}"#,
            br#"{"average":"2.5","count":4}"#,
            br#"{"average":2.5,"count":4.5}"#,
            br#"{"average":2.5,"count":0}"#,
        ] {
            assert!(parse_avg(bad).is_err());
        }
    }

    #[test]
    fn probe_identification() {
        let newest = |average, count| probe_newest(&Avg { average, count });
        assert_eq!(newest(1.0, 1), Ok(1));
        assert_eq!(newest(4.5, 4), Ok(6)); // 3..=6
        assert!(newest(4.3, 4).is_err());
        assert!(newest(4.5, 3).is_err());
        assert!(newest(1.0, 3).is_err()); // would need 0
                                          // every run j..=k identifies k, computed as the server does
        for j in 1..60u64 {
            for k in j..j + 40 {
                let n = k - j + 1;
                let avg = (j..=k).sum::<u64>() as f64 / n as f64;
                assert_eq!(newest(avg, n), Ok(k));
            }
        }
    }

    #[test]
    fn lobby_messages() {
        let s = parse_stay(br#"{"stay_num":"2","start_time":"null"}"#).unwrap();
        assert_eq!(s.stay_num, "2");
        assert!(parse_stay(br#"{"stay_num":2,"start_time":"null"}"#).is_err());
        assert!(parse_stay(br#"{"stay_num":"2","start_time":null}"#).is_err());
        assert_eq!(parse_tokyo_rfc3339("1970-01-01T09:00:00+09:00"), Ok(0));
        assert_eq!(
            parse_tokyo_rfc3339("2025-10-25T14:03:21+09:00"),
            Ok(1761368601)
        );
        for bad in [
            "2025-10-25T14:03:21Z",
            "2025-10-25T14:03:21.5+09:00",
            "2025-10-25 14:03:21+09:00",
            "2025-13-25T14:03:21+09:00",
            "2025-10-25T14:03:21+00:00",
            "2025-1-25T14:03:21+09:00",
        ] {
            assert!(parse_tokyo_rfc3339(bad).is_err(), "{bad}");
        }
    }
}
