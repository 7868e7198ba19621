//! The contract of SPEC.md as checks: exact JSON shapes, menu, orders,
//! error bodies, meter and lobby messages.

use serde::Deserialize;
use serde_json::Value;
use tungstenite::http::StatusCode;

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

pub fn menu_name(id: &str) -> Option<&'static str> {
    MENU.iter().find(|m| m.0 == id).map(|m| m.1)
}

fn short(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    if s.chars().count() > 200 {
        format!("{}...", s.chars().take(200).collect::<String>())
    } else {
        s.into_owned()
    }
}

/// Status, CORS header, Content-Type, JSON body. Returns the parsed body.
pub fn json_response(r: &Response, want_status: u16) -> Result<Value, String> {
    if r.status() != want_status {
        return Err(format!(
            "status {} (want {want_status}), body {}",
            r.status(),
            short(&r.body)
        ));
    }
    common_headers(r)?;
    serde_json::from_slice(&r.body)
        .map_err(|e| format!("body is not JSON ({e}): {}", short(&r.body)))
}

/// Status + headers only (the caller parses the body itself).
pub fn json_response_headers(r: &Response, want_status: u16) -> Result<(), String> {
    if r.status() != want_status {
        return Err(format!(
            "status {} (want {want_status}), body {}",
            r.status(),
            short(&r.body)
        ));
    }
    common_headers(r)
}

/// Headers every response must carry.
pub fn common_headers(r: &Response) -> Result<(), String> {
    match r.header("access-control-allow-origin") {
        Some("*") => {}
        other => return Err(format!("Access-Control-Allow-Origin {other:?}, want \"*\"")),
    }
    if !r.body.is_empty() {
        let ct = r.header("content-type").unwrap_or("");
        if !ct.to_ascii_lowercase().starts_with("application/json") {
            return Err(format!("Content-Type {ct:?}, want application/json"));
        }
    }
    Ok(())
}

/// `{"error": "<reason>", "message": "<msg>"}` exactly. `msg` None = any string.
pub fn error_response(r: &Response, status: u16, msg: Option<&str>) -> Result<(), String> {
    let v = json_response(r, status)?;
    check_error_value(&v, status, msg).map_err(|e| format!("{e}: {}", short(&r.body)))
}

pub fn check_error_value(v: &Value, status: u16, msg: Option<&str>) -> Result<(), String> {
    let o = v.as_object().ok_or("error body is not an object")?;
    if o.len() != 2 || !o.contains_key("error") || !o.contains_key("message") {
        return Err("error body must have exactly the keys error, message".into());
    }
    let want = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    if o["error"].as_str() != Some(want) {
        return Err(format!("error {:?}, want {want:?}", o["error"]));
    }
    let m = o["message"].as_str().ok_or("message is not a string")?;
    if let Some(want) = msg {
        if m != want {
            return Err(format!("message {m:?}, want {want:?}"));
        }
    }
    Ok(())
}

pub fn check_menu(v: &Value) -> Result<(), String> {
    let o = v.as_object().ok_or("menu body is not an object")?;
    if o.len() != 1 {
        return Err("menu body must have exactly the key menu".into());
    }
    let items = o
        .get("menu")
        .and_then(|m| m.as_array())
        .ok_or("menu is not an array")?;
    if items.len() != MENU.len() {
        return Err(format!(
            "menu has {} items, want {}",
            items.len(),
            MENU.len()
        ));
    }
    for (i, (it, (id, name, desc))) in items.iter().zip(MENU.iter()).enumerate() {
        let io = it.as_object().ok_or("menu item is not an object")?;
        if io.len() != 3 {
            return Err(format!(
                "menu item {i} must have exactly id, name, description"
            ));
        }
        if io.get("id").and_then(|x| x.as_str()) != Some(id)
            || io.get("name").and_then(|x| x.as_str()) != Some(name)
            || io.get("description").and_then(|x| x.as_str()) != Some(desc)
        {
            return Err(format!(
                "menu item {i} is {it}, want {id} / {name} / {desc}"
            ));
        }
    }
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    pub id: String,
    pub store: String,
    pub menu_item_id: String,
    pub status: String,
    pub number: u64,
}

pub const STATUSES: [&str; 3] = ["pending", "waitingPickup", "completed"];

pub fn status_rank(s: &str) -> usize {
    STATUSES.iter().position(|x| *x == s).unwrap_or(usize::MAX)
}

/// An Order exactly as on the wire (unknown or missing keys are errors).
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct OrderWire {
    pub id: String,
    pub menu_item_id: String,
    pub menu_name: String,
    pub status: String,
    pub order_number: u64,
    /// RFC 3339 in UTC (`…Z`); `null` only for orders journaled before times were kept.
    pub created_at: Option<String>,
    /// The last status change, same format, never before `created_at`.
    pub updated_at: Option<String>,
}

/// `{"orders":[Order...]}` of the staff list.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct OrderList {
    pub orders: Vec<OrderWire>,
}

impl OrderWire {
    /// Internal consistency: id = <store>-<order_number>, name matches the
    /// item, known status.
    pub fn check(self) -> Result<Order, String> {
        let OrderWire {
            id,
            menu_item_id: item,
            menu_name: name,
            status,
            order_number: number,
            created_at,
            updated_at,
        } = self;
        // One fixed-width format (`2026-07-01T09:30:00.123Z`), so text order is time order.
        let well_formed = |t: &Option<String>| {
            t.as_ref()
                .is_none_or(|t| t.len() == 24 && t.ends_with('Z') && t.as_bytes()[10] == b'T')
        };
        if !well_formed(&created_at) || !well_formed(&updated_at) {
            return Err(format!(
                "{id}: times {created_at:?} / {updated_at:?} are not RFC 3339 UTC with milliseconds"
            ));
        }
        if let (Some(created), Some(updated)) = (&created_at, &updated_at) {
            if updated < created {
                return Err(format!(
                    "{id}: updated_at {updated} before created_at {created}"
                ));
            }
        }
        if number == 0 {
            return Err(format!("{id}: order_number 0 (numbering starts at 1)"));
        }
        let (store, n) = id
            .rsplit_once('-')
            .ok_or_else(|| format!("id {id:?} is not <store>-<n>"))?;
        if n != number.to_string() || store.is_empty() {
            return Err(format!(
                "id {id:?} does not end with -<order_number> ({number})"
            ));
        }
        match menu_name(&item) {
            Some(want) if want == name => {}
            Some(want) => {
                return Err(format!(
                    "{id}: menu_name {name:?} for {item}, want {want:?}"
                ))
            }
            None => return Err(format!("{id}: menu_item_id {item:?} is not on the menu")),
        }
        if status_rank(&status) == usize::MAX {
            return Err(format!(
                "{id}: status {status:?} is not one of {STATUSES:?}"
            ));
        }
        Ok(Order {
            store: store.to_string(),
            id,
            menu_item_id: item,
            status,
            number,
        })
    }
}

/// Exact Order shape and internal consistency.
pub fn parse_order(v: &Value) -> Result<Order, String> {
    OrderWire::deserialize(v)
        .map_err(|e| format!("not an Order ({e}): {v}"))?
        .check()
}

/// A chant-meter broadcast.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Avg {
    pub average: f64,
    pub count: u64,
}

pub fn parse_avg(b: &[u8]) -> Result<Avg, String> {
    let a: Avg = serde_json::from_slice(b).map_err(|e| {
        format!(
            "not {{\"average\":<number>,\"count\":<integer>}} ({e}): {}",
            short(b)
        )
    })?;
    if !a.average.is_finite() {
        return Err(format!("average not finite: {}", short(b)));
    }
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
    if (twice - twice.round()).abs() > 1e-6 {
        return Err(format!(
            "average {} is not a half-integer (window of consecutive integers)",
            a.average
        ));
    }
    let k2 = twice.round() as i64 + a.count as i64 - 1; // 2k
    if k2 % 2 != 0 {
        return Err(format!(
            "average {} with count {} cannot be a run of consecutive integers",
            a.average, a.count
        ));
    }
    let k = k2 / 2;
    let j = k - a.count as i64 + 1;
    if j < 1 {
        return Err(format!(
            "average {} count {} implies values below 1",
            a.average, a.count
        ));
    }
    Ok(k as u64)
}

/// A lobby message.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Stay {
    pub stay_num: String,
    pub start_time: String,
}

pub fn parse_stay(b: &[u8]) -> Result<Stay, String> {
    serde_json::from_slice(b).map_err(|e| {
        format!(
            "not {{\"stay_num\":\"<n>\",\"start_time\":\"...\"}} ({e}): {}",
            short(b)
        )
    })
}

/// Parse `YYYY-MM-DDTHH:MM:SS+09:00` exactly (whole seconds, Tokyo offset)
/// into Unix seconds.
pub fn parse_tokyo_rfc3339(s: &str) -> Result<i64, String> {
    let t = chrono::DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%:z")
        .ok()
        .filter(|_| s.len() == "YYYY-MM-DDTHH:MM:SS+09:00".len())
        .ok_or_else(|| format!("{s:?} is not YYYY-MM-DDTHH:MM:SS+09:00"))?;
    if t.offset().local_minus_utc() != 9 * 3600 {
        return Err(format!("{s:?}: offset must be +09:00 (Asia/Tokyo)"));
    }
    Ok(t.timestamp())
}

pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn orders() {
        let v = json!({"id":"store-001-7","menu_item_id":"giiku-sai","menu_name":"技育祭な いちご味","status":"pending","order_number":7,
                       "created_at":"2026-07-01T09:30:00.123Z","updated_at":"2026-07-01T09:30:00.123Z"});
        let o = parse_order(&v).unwrap();
        let mut unknown = v.clone();
        unknown["created_at"] = Value::Null;
        unknown["updated_at"] = Value::Null;
        assert!(parse_order(&unknown).is_ok());
        let mut bad = v.clone();
        bad["updated_at"] = json!("2026-07-01T09:29:59.999Z");
        assert!(parse_order(&bad).is_err());
        let mut bad = v.clone();
        bad["created_at"] = json!(1782898200);
        assert!(parse_order(&bad).is_err());
        assert_eq!(o.store, "store-001");
        assert_eq!(o.number, 7);
        let mut bad = v.clone();
        bad["order_number"] = json!(8);
        assert!(parse_order(&bad).is_err());
        let mut bad = v.clone();
        bad["menu_name"] = json!("x");
        assert!(parse_order(&bad).is_err());
        let mut bad = v.clone();
        bad["extra"] = json!(1);
        assert!(parse_order(&bad).is_err());
        let mut bad = v.clone();
        bad["status"] = json!("waiting");
        assert!(parse_order(&bad).is_err());
        let mut bad = v.clone();
        bad["order_number"] = json!("7");
        assert!(parse_order(&bad).is_err());
    }

    #[test]
    fn menu_and_errors() {
        let items: Vec<Value> = MENU
            .iter()
            .map(|(i, n, d)| json!({"id": i, "name": n, "description": d}))
            .collect();
        assert!(check_menu(&json!({ "menu": items })).is_ok());
        let mut rev = items.clone();
        rev.reverse();
        assert!(check_menu(&json!({ "menu": rev })).is_err());
        assert!(check_error_value(
            &json!({"error":"Not Found","message":"Order not found"}),
            404,
            Some("Order not found")
        )
        .is_ok());
        assert!(
            check_error_value(&json!({"error":"Bad Request","message":"x"}), 404, None).is_err()
        );
        assert!(check_error_value(&json!({"error":"Bad Request"}), 400, None).is_err());
    }

    #[test]
    fn averages() {
        assert_eq!(
            parse_avg(br#"{"average":2.5,"count":4}"#).unwrap(),
            Avg {
                average: 2.5,
                count: 4
            }
        );
        assert!(parse_avg(br#"{"average":2.5,"count":4,"x":1}"#).is_err());
        assert!(parse_avg(br#"{"average":2.5}"#).is_err());
        assert!(parse_avg(br#"{"average":"2.5","count":4}"#).is_err());
        assert!(parse_avg(br#"{"average":2.5,"count":4.5}"#).is_err());
        assert!(parse_avg(br#"{"average":2.5,"count":0}"#).is_err());
        assert!(parse_avg(br#"{"average":1,"count":1}"#).is_ok());
    }

    #[test]
    fn probe_identification() {
        // window 1..=1
        assert_eq!(
            probe_newest(&Avg {
                average: 1.0,
                count: 1
            })
            .unwrap(),
            1
        );
        // window 3..=6: avg 4.5
        assert_eq!(
            probe_newest(&Avg {
                average: 4.5,
                count: 4
            })
            .unwrap(),
            6
        );
        // window 100..=124
        let (j, k) = (100u64, 124u64);
        let sum: u64 = (j..=k).sum();
        let avg = sum as f64 / (k - j + 1) as f64;
        assert_eq!(
            probe_newest(&Avg {
                average: avg,
                count: k - j + 1
            })
            .unwrap(),
            k
        );
        assert!(probe_newest(&Avg {
            average: 4.3,
            count: 4
        })
        .is_err());
        assert!(probe_newest(&Avg {
            average: 4.5,
            count: 3
        })
        .is_err());
        assert!(probe_newest(&Avg {
            average: 1.0,
            count: 3
        })
        .is_err());
        // every run j..=k over a range identifies k
        for j in 1..60u64 {
            for k in j..j + 40 {
                let n = k - j + 1;
                let avg = (j..=k).sum::<u64>() as f64 / n as f64;
                assert_eq!(
                    probe_newest(&Avg {
                        average: avg,
                        count: n
                    })
                    .unwrap(),
                    k
                );
            }
        }
    }

    #[test]
    fn lobby_messages() {
        let s = parse_stay(br#"{"stay_num":"2","start_time":"null"}"#).unwrap();
        assert_eq!(s.stay_num, "2");
        assert!(parse_stay(br#"{"stay_num":2,"start_time":"null"}"#).is_err());
        assert!(parse_stay(br#"{"stay_num":"2","start_time":null}"#).is_err());
        assert_eq!(parse_tokyo_rfc3339("1970-01-01T09:00:00+09:00").unwrap(), 0);
        assert_eq!(
            parse_tokyo_rfc3339("2025-10-25T14:03:21+09:00").unwrap(),
            1761368601
        );
        assert!(parse_tokyo_rfc3339("2025-10-25T14:03:21Z").is_err());
        assert!(parse_tokyo_rfc3339("2025-10-25T14:03:21.5+09:00").is_err());
        assert!(parse_tokyo_rfc3339("2025-10-25 14:03:21+09:00").is_err());
        assert!(parse_tokyo_rfc3339("2025-13-25T14:03:21+09:00").is_err());
        assert!(parse_tokyo_rfc3339("2025-10-25T14:03:21+00:00").is_err());
        assert!(parse_tokyo_rfc3339("2025-1-25T14:03:21+09:00").is_err());
    }
}
