//! Today's order totals for the public board feed (and so the crowd screen): orders per
//! flavour since midnight in the stand's time zone (Asia/Tokyo), and orders in the last
//! 10 minutes. Counts only, so nothing the pickup board could not show. They live on the
//! journal owner next to the feed, are told of each order once it is durable, and take
//! fixed memory: a counter per flavour and one per second of the last 10 minutes.

use crate::menu::{MenuIndex, MENU};
use chrono::{DateTime, NaiveDate, NaiveTime, SecondsFormat, TimeZone, Utc};
use chrono_tz::Asia::Tokyo;
use std::io::Write;

/// How far back "recent" orders go.
pub const RECENT_S: u64 = 600;

pub struct Totals {
    /// The Tokyo date `today` counts the orders of.
    day: NaiveDate,
    today: [u64; MENU.len()],
    /// Orders created in each second of the last [`RECENT_S`]: (Unix second, orders) at
    /// index `second % RECENT_S`. A slot holding an older second counts nothing.
    recent: Box<[(u64, u32)]>,
    /// Orders created before this have no known time, so today's counts can only start
    /// here (or at midnight, if that is later).
    known_since_unix_s: u64,
    /// The last update message returned, so an unchanged one is not sent again.
    sent: Vec<u8>,
}

impl Default for Totals {
    fn default() -> Totals {
        Totals {
            day: NaiveDate::default(),
            today: [0; MENU.len()],
            recent: vec![(0, 0); RECENT_S as usize].into_boxed_slice(),
            known_since_unix_s: 0,
            sent: Vec::new(),
        }
    }
}

fn tokyo_time(unix_s: u64) -> DateTime<chrono_tz::Tz> {
    let utc = i64::try_from(unix_s)
        .ok()
        .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
        .unwrap_or_default();
    utc.with_timezone(&Tokyo)
}

impl Totals {
    /// Starts a new day's counts once midnight in Tokyo has passed.
    fn roll_over(&mut self, now_unix_s: u64) {
        let day = tokyo_time(now_unix_s).date_naive();
        if day != self.day {
            self.day = day;
            self.today = [0; MENU.len()];
        }
    }

    /// An order for `menu` was created at `created_unix_s`, or (`None`) at some time
    /// before `now_unix_s` that nobody can tell.
    pub fn count(&mut self, menu: MenuIndex, created_unix_s: Option<u64>, now_unix_s: u64) {
        self.roll_over(now_unix_s);
        let Some(created_unix_s) = created_unix_s else {
            self.known_since_unix_s = self.known_since_unix_s.max(now_unix_s);
            return;
        };
        // A time ahead of the clock (it stepped back) counts as now.
        let at_s = created_unix_s.min(now_unix_s);
        if tokyo_time(at_s).date_naive() == self.day {
            self.today[usize::from(menu)] += 1;
        }
        if at_s + RECENT_S > now_unix_s {
            let slot = &mut self.recent[(at_s % RECENT_S) as usize];
            if slot.0 == at_s {
                slot.1 += 1;
            } else {
                *slot = (at_s, 1);
            }
        }
    }

    /// Appends the totals as of `now_unix_s`:
    /// `{"since":"<RFC 3339, +09:00>","today":{"giiku-sai":3,…},"last_10_min":2}`, where
    /// `since` is when today's counts start: midnight, or later if orders made before
    /// then have no known time.
    pub fn write_json(&mut self, now_unix_s: u64, out: &mut Vec<u8>) {
        self.roll_over(now_unix_s);
        let midnight_unix_s = Tokyo
            .from_local_datetime(&self.day.and_time(NaiveTime::MIN))
            .earliest()
            .map_or(0, |t| u64::try_from(t.timestamp()).unwrap_or(0));
        let since = tokyo_time(midnight_unix_s.max(self.known_since_unix_s))
            .to_rfc3339_opts(SecondsFormat::Secs, false);
        let recent: u64 = self
            .recent
            .iter()
            .filter(|(second, _)| *second <= now_unix_s && second + RECENT_S > now_unix_s)
            .map(|(_, orders)| u64::from(*orders))
            .sum();
        // Menu ids and RFC 3339 times need no JSON escaping.
        let _ = write!(out, r#"{{"since":"{since}","today":{{"#);
        for (i, (item, orders)) in MENU.iter().zip(self.today).enumerate() {
            let comma = if i > 0 { "," } else { "" };
            let _ = write!(out, r#"{comma}"{}":{orders}"#, item.id);
        }
        let _ = write!(out, r#"}},"last_10_min":{recent}}}"#);
    }

    /// `{"type":"totals","totals":…}` as of `now_unix_s`, unless it is the same as the
    /// one this last returned.
    pub fn update(&mut self, now_unix_s: u64) -> Option<&[u8]> {
        let mut text = br#"{"type":"totals","totals":"#.to_vec();
        self.write_json(now_unix_s, &mut text);
        text.push(b'}');
        if text == self.sent {
            return None;
        }
        self.sent = text;
        Some(&self.sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2025-10-25T23:58:00+09:00.
    const LATE_S: u64 = 1_761_404_280;

    fn json(totals: &mut Totals, now_unix_s: u64) -> serde_json::Value {
        let mut out = Vec::new();
        totals.write_json(now_unix_s, &mut out);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn counts_each_flavour_today_and_the_last_ten_minutes() {
        let mut totals = Totals::default();
        totals.count(0, Some(LATE_S - 700), LATE_S - 700);
        totals.count(0, Some(LATE_S - 60), LATE_S - 60);
        totals.count(3, Some(LATE_S), LATE_S);
        assert_eq!(
            json(&mut totals, LATE_S),
            serde_json::json!({
                "since": "2025-10-25T00:00:00+09:00",
                "today": {"giiku-sai": 2, "giiku-haku": 0, "giiku-ten": 0, "giiku-camp": 1},
                "last_10_min": 2,
            })
        );
        // Ten minutes on, only the newest is recent; past midnight, today starts afresh.
        assert_eq!(json(&mut totals, LATE_S + 60)["last_10_min"], 2);
        assert_eq!(json(&mut totals, LATE_S + RECENT_S - 1)["last_10_min"], 1);
        let next_day = json(&mut totals, LATE_S + RECENT_S);
        assert_eq!(next_day["last_10_min"], 0);
        assert_eq!(next_day["since"], "2025-10-26T00:00:00+09:00");
        assert_eq!(next_day["today"]["giiku-sai"], 0);
        assert_eq!(next_day["today"]["giiku-camp"], 0);
    }

    #[test]
    fn orders_of_unknown_time_move_the_start_of_today() {
        let mut totals = Totals::default();
        let started_s = LATE_S - 3600;
        totals.count(1, None, started_s);
        totals.count(1, Some(LATE_S), LATE_S);
        let today = json(&mut totals, LATE_S);
        assert_eq!(today["since"], "2025-10-25T22:58:00+09:00");
        assert_eq!(today["today"]["giiku-haku"], 1);
        // They were all made before midnight, so tomorrow is counted whole.
        assert_eq!(
            json(&mut totals, LATE_S + 3600)["since"],
            "2025-10-26T00:00:00+09:00"
        );
    }

    #[test]
    fn a_known_time_of_another_day_counts_only_where_it_belongs() {
        let mut totals = Totals::default();
        let next_morning_s = LATE_S + 8 * 3600;
        totals.count(2, Some(LATE_S), next_morning_s);
        let today = json(&mut totals, next_morning_s);
        assert_eq!(today["today"]["giiku-ten"], 0);
        assert_eq!(today["last_10_min"], 0);
        // A clock that stepped back: the order counts as made now.
        totals.count(2, Some(next_morning_s + 30), next_morning_s);
        let today = json(&mut totals, next_morning_s);
        assert_eq!(today["today"]["giiku-ten"], 1);
        assert_eq!(today["last_10_min"], 1);
    }

    #[test]
    fn many_orders_in_one_second_share_its_slot() {
        let mut totals = Totals::default();
        for _ in 0..1000 {
            totals.count(0, Some(LATE_S), LATE_S);
        }
        totals.count(0, Some(LATE_S + RECENT_S), LATE_S + RECENT_S);
        let later = json(&mut totals, LATE_S + RECENT_S);
        assert_eq!(later["last_10_min"], 1, "the old second's slot was reused");
    }

    #[test]
    fn an_update_is_returned_only_when_something_changed() {
        // 2025-10-25T12:00:00+09:00.
        const NOON_S: u64 = 1_761_361_200;
        let mut totals = Totals::default();
        let first = totals.update(NOON_S).map(<[u8]>::to_vec).unwrap();
        let first: serde_json::Value = serde_json::from_slice(&first).unwrap();
        assert_eq!(first["type"], "totals");
        assert_eq!(first["totals"]["last_10_min"], 0);
        assert!(totals.update(NOON_S).is_none());
        totals.count(0, Some(NOON_S), NOON_S);
        assert!(totals.update(NOON_S).is_some());
        assert!(totals.update(NOON_S + 60).is_none());
        let aged = totals.update(NOON_S + RECENT_S).map(<[u8]>::to_vec);
        let aged: serde_json::Value = serde_json::from_slice(&aged.unwrap()).unwrap();
        assert_eq!(
            aged["totals"]["last_10_min"], 0,
            "an order aging out is a change"
        );
        assert_eq!(aged["totals"]["today"]["giiku-sai"], 1);
    }
}
