//! `/metrics` (SPEC.md §6): counters from every core, merged, in a format a real
//! Prometheus parser accepts.

mod common;

use common::{next_text, send_text, Server};
use std::io::Write;
use std::process::{Command, Stdio};

/// Parses exposition text with the official Python client's parser and returns
/// `name{labels} value` lines, one per sample.
fn parse_with_prometheus_client(text: &str) -> Vec<String> {
    let script = "import sys\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        for family in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   for s in family.samples:\n\
        \x20       labels = ','.join(f'{k}={v}' for k, v in sorted(s.labels.items()))\n\
        \x20       print(f'{s.name}{{{labels}}} {s.value}')\n";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (see scripts/install-test-deps)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "prometheus_client rejected the exposition (pip install prometheus_client?):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A sample's labels, sorted by name as the parser prints them.
type Labels = Vec<(String, String)>;

/// One parsed sample.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: Labels,
    value: f64,
}

fn parse_samples(lines: &[String]) -> Vec<Sample> {
    lines
        .iter()
        .map(|line| {
            let (key, value) = line.rsplit_once(' ').expect("name{labels} value");
            let (name, labels) = key.split_once('{').expect("braces");
            let labels = labels.strip_suffix('}').expect("closing brace");
            Sample {
                name: name.to_string(),
                labels: labels
                    .split(',')
                    .filter(|pair| !pair.is_empty())
                    .map(|pair| {
                        let (k, v) = pair.split_once('=').expect("k=v");
                        (k.to_string(), v.to_string())
                    })
                    .collect(),
                value: value.parse().expect("a number"),
            }
        })
        .collect()
}

/// The value of the one sample `name{labels}` (labels as `k=v,k=v`, sorted).
fn sample(samples: &[String], prefix: &str) -> f64 {
    let matching: Vec<&String> = samples
        .iter()
        .filter(|s| s.split(' ').next() == Some(prefix))
        .collect();
    assert_eq!(matching.len(), 1, "samples {prefix}: {matching:?}");
    matching[0].rsplit(' ').next().unwrap().parse().unwrap()
}

/// The documented bucket bounds, in seconds (README "Metrics").
const BOUNDS_SECONDS: [f64; 19] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Checks every series of histogram `name`: the documented buckets in order, counts
/// never decreasing, `+Inf` last and equal to `_count`, a `_sum`. Returns the `_count`
/// of each series by its labels (without `le`).
fn histogram_counts(samples: &[Sample], name: &str) -> Vec<(Labels, f64)> {
    let bucket_name = format!("{name}_bucket");
    let mut series: Vec<(Labels, Vec<(String, f64)>)> = Vec::new();
    for s in samples.iter().filter(|s| s.name == bucket_name) {
        let le = s
            .labels
            .iter()
            .find(|(k, _)| k == "le")
            .map(|(_, v)| v.clone())
            .expect("a bucket has le");
        let labels: Vec<_> = s
            .labels
            .iter()
            .filter(|(k, _)| k != "le")
            .cloned()
            .collect();
        match series.iter_mut().find(|(l, _)| *l == labels) {
            Some((_, buckets)) => buckets.push((le, s.value)),
            None => series.push((labels, vec![(le, s.value)])),
        }
    }
    assert!(!series.is_empty(), "no histogram {name}");
    series
        .into_iter()
        .map(|(labels, buckets)| {
            let bounds: Vec<&str> = buckets.iter().map(|(le, _)| le.as_str()).collect();
            assert_eq!(bounds.len(), BOUNDS_SECONDS.len() + 1, "{name} {labels:?}");
            for (le, bound) in bounds.iter().zip(BOUNDS_SECONDS) {
                assert_eq!(le.parse::<f64>().unwrap(), bound, "{name} {labels:?}");
            }
            assert_eq!(bounds.last(), Some(&"+Inf"), "{name} {labels:?}");
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "{name} {labels:?}: buckets decrease: {buckets:?}"
            );
            let with = |suffix: &str| {
                let full = format!("{name}_{suffix}");
                samples
                    .iter()
                    .find(|s| s.name == full && s.labels == labels)
                    .unwrap_or_else(|| panic!("no {full} {labels:?}"))
                    .value
            };
            let count = with("count");
            assert_eq!(buckets.last().unwrap().1, count, "{name} {labels:?}: +Inf");
            assert!(with("sum") >= 0.0);
            (labels, count)
        })
        .collect()
}

fn one_count(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let want: Labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    histogram_counts(samples, name)
        .into_iter()
        .find(|(l, _)| *l == want)
        .unwrap_or_else(|| panic!("no series {name} {labels:?}"))
        .1
}

/// Creates an order and returns its id.
fn create(server: &Server, menu: &str) -> String {
    let response = server.post(
        "/api/v1/stores/orders",
        &format!(r#"{{"menu_item_id":"{menu}"}}"#),
    );
    assert_eq!(response.status, 201, "{}", response.text());
    response.json()["id"].as_str().unwrap().to_string()
}

fn advance(server: &Server, id: &str, to: &str) {
    let response = server.staff("POST", &format!("/api/v1/stores/orders/{id}/{to}"));
    assert_eq!(response.status, 200, "{}", response.text());
}

fn scrape(server: &Server) -> Vec<String> {
    let response = server.get("/metrics");
    assert_eq!(response.status, 200);
    assert!(response
        .header("Content-Type")
        .unwrap()
        .starts_with("text/plain"));
    parse_with_prometheus_client(&response.text())
}

/// `kakigori_orders` for every menu item and status, as `(menu, status, n)`.
fn order_gauges(samples: &[String]) -> Vec<(String, String, f64)> {
    let mut gauges = Vec::new();
    for menu in ["giiku-sai", "giiku-haku", "giiku-ten", "giiku-camp"] {
        for status in ["pending", "waitingPickup", "completed"] {
            let n = sample(
                samples,
                &format!("kakigori_orders{{menu_item_id={menu},status={status}}}"),
            );
            gauges.push((menu.to_string(), status.to_string(), n));
        }
    }
    gauges
}

#[test]
fn metrics_merge_every_core_and_parse_as_prometheus_text() {
    let server = Server::start(&["--cores", "2", "--meter-interval-ms", "0"]);
    let ids: Vec<String> = (0..8).map(|_| create(&server, "giiku-camp")).collect();
    create(&server, "giiku-sai");
    advance(&server, &ids[0], "waiting-pickup");
    advance(&server, &ids[0], "complete");
    advance(&server, &ids[1], "waiting-pickup");
    // Rooms on both cores, each with a value, a zero and junk.
    let mut sockets: Vec<_> = (0..6)
        .map(|i| server.ws(&format!("/ws?room=m-{i}")))
        .collect();
    for ws in &mut sockets {
        send_text(ws, r#"{"value": 0}"#);
        send_text(ws, r#"{"value": 1}"#);
        send_text(ws, "junk");
        next_text(ws);
    }
    // A lobby and a confirm batch, each open with one client.
    let mut lobby = server.ws("/ws/stay?room=metrics-lobby");
    next_text(&mut lobby);
    let _confirm = server.ws("/ws/confirm?room=giiku-ten");
    // The junk is read after the value's answer; a ping round trip orders it first.
    for ws in &mut sockets {
        ws.send(tungstenite::Message::Ping(vec![7])).unwrap();
        loop {
            if let tungstenite::Message::Pong(_) = ws.read().unwrap() {
                break;
            }
        }
    }

    let response = server.get("/metrics");
    let text = response.text();
    for family in [
        "kakigori_http_request_duration_seconds",
        "kakigori_journal_sync_duration_seconds",
        "kakigori_broadcast_latency_seconds",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} histogram\n")),
            "{family} is not a histogram"
        );
    }
    let samples = parse_with_prometheus_client(&text);
    let parsed = parse_samples(&samples);
    assert_eq!(
        sample(&samples, "kakigori_connections_open{endpoint=ws}"),
        6.0
    );
    assert_eq!(sample(&samples, "kakigori_rooms_open{}"), 6.0);
    assert_eq!(sample(&samples, "kakigori_lobbies_open{}"), 1.0);
    assert_eq!(sample(&samples, "kakigori_confirm_batches_open{}"), 1.0);
    assert_eq!(sample(&samples, "kakigori_ws_messages_in_total{}"), 18.0);
    assert_eq!(
        sample(
            &samples,
            "kakigori_ws_messages_ignored_total{reason=not_a_value}"
        ),
        6.0
    );
    assert_eq!(
        sample(&samples, "kakigori_ws_messages_ignored_total{reason=zero}"),
        6.0
    );
    assert!(sample(&samples, "kakigori_ws_messages_out_total{}") >= 6.0);

    // Histograms, summed over both cores: one broadcast per accepted value (interval
    // 0), one observation per request, one per journal sync.
    assert_eq!(
        one_count(&parsed, "kakigori_broadcast_latency_seconds", &[]),
        6.0
    );
    assert_eq!(
        one_count(
            &parsed,
            "kakigori_http_request_duration_seconds",
            &[("route", "orders")]
        ),
        9.0
    );
    assert_eq!(
        sample(
            &samples,
            "kakigori_http_requests_total{route=orders,status=201}"
        ),
        9.0
    );
    assert_eq!(
        one_count(
            &parsed,
            "kakigori_http_request_duration_seconds",
            &[("route", "order_advance")]
        ),
        3.0
    );
    let syncs = sample(&samples, "kakigori_journal_syncs_total{}");
    assert!(syncs >= 1.0);
    assert_eq!(
        one_count(&parsed, "kakigori_journal_sync_duration_seconds", &[]),
        syncs
    );

    let gauges = order_gauges(&samples);
    let n = |menu: &str, status: &str| {
        gauges
            .iter()
            .find(|(m, s, _)| m == menu && s == status)
            .unwrap()
            .2
    };
    assert_eq!(n("giiku-camp", "pending"), 6.0);
    assert_eq!(n("giiku-camp", "waitingPickup"), 1.0);
    assert_eq!(n("giiku-camp", "completed"), 1.0);
    assert_eq!(n("giiku-sai", "pending"), 1.0);
    assert_eq!(gauges.iter().map(|g| g.2).sum::<f64>(), 9.0);
}

#[test]
fn order_counts_survive_a_restart_and_keep_counting() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let server = Server::start_in(dir.path(), &[]);
        let a = create(&server, "giiku-haku");
        let b = create(&server, "giiku-haku");
        create(&server, "giiku-ten");
        advance(&server, &a, "waiting-pickup");
        advance(&server, &b, "waiting-pickup");
        advance(&server, &b, "complete");
        order_gauges(&scrape(&server))
        // Dropped: kill -9, so the counts must come back from the journal alone.
    };
    let nonzero: Vec<_> = before.iter().filter(|g| g.2 != 0.0).collect();
    assert_eq!(nonzero.len(), 3, "{before:?}");
    let server = Server::start_in(dir.path(), &[]);
    let samples = scrape(&server);
    assert_eq!(order_gauges(&samples), before);
    let c = create(&server, "giiku-ten");
    advance(&server, &c, "waiting-pickup");
    let after = order_gauges(&scrape(&server));
    let n = |gauges: &[(String, String, f64)], menu: &str, status: &str| {
        gauges
            .iter()
            .find(|(m, s, _)| m == menu && s == status)
            .unwrap()
            .2
    };
    assert_eq!(n(&after, "giiku-ten", "pending"), 1.0);
    assert_eq!(n(&after, "giiku-ten", "waitingPickup"), 1.0);
    assert_eq!(n(&after, "giiku-haku", "waitingPickup"), 1.0);
    assert_eq!(n(&after, "giiku-haku", "completed"), 1.0);
}
