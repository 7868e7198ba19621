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

fn sample(samples: &[String], prefix: &str) -> f64 {
    samples
        .iter()
        .find(|s| s.starts_with(prefix))
        .unwrap_or_else(|| panic!("no sample {prefix}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn metrics_merge_every_core_and_parse_as_prometheus_text() {
    let server = Server::start(&["--cores", "2", "--meter-interval-ms", "0"]);
    for _ in 0..3 {
        assert_eq!(
            server
                .post("/api/v1/stores/orders", r#"{"menu_item_id":"giiku-camp"}"#)
                .status,
            201
        );
    }
    assert_eq!(
        server
            .staff("POST", "/api/v1/stores/orders/store-001-1/waiting-pickup")
            .status,
        200
    );
    // Rooms on both cores, each with a value.
    let mut sockets: Vec<_> = (0..6)
        .map(|i| server.ws(&format!("/ws?room=m-{i}")))
        .collect();
    for ws in &mut sockets {
        send_text(ws, r#"{"value": 1}"#);
        send_text(ws, "junk");
        next_text(ws);
    }
    let response = server.get("/metrics");
    assert_eq!(response.status, 200);
    assert!(response
        .header("Content-Type")
        .unwrap()
        .starts_with("text/plain"));
    let samples = parse_with_prometheus_client(&response.text());
    assert_eq!(
        sample(&samples, "kakigori_connections_open{endpoint=ws}"),
        6.0
    );
    assert_eq!(sample(&samples, "kakigori_rooms_open{endpoint=ws}"), 6.0);
    assert_eq!(sample(&samples, "kakigori_ws_messages_in_total{}"), 12.0);
    assert_eq!(
        sample(
            &samples,
            "kakigori_ws_messages_ignored_total{reason=not_a_value}"
        ),
        6.0
    );
    assert!(sample(&samples, "kakigori_ws_messages_out_total{}") >= 6.0);
    assert_eq!(
        sample(
            &samples,
            "kakigori_orders{menu_item_id=giiku-camp,status=pending}"
        ),
        2.0
    );
    assert_eq!(
        sample(
            &samples,
            "kakigori_orders{menu_item_id=giiku-camp,status=waitingPickup}"
        ),
        1.0
    );
    assert!(sample(&samples, "kakigori_journal_syncs_total{}") >= 1.0);
    assert!(sample(&samples, "kakigori_journal_sync_seconds_count{}") >= 1.0);
    assert_eq!(
        sample(
            &samples,
            "kakigori_http_requests_total{route=orders,status=201}"
        ),
        3.0
    );
    assert!(
        sample(
            &samples,
            "kakigori_http_request_seconds_count{route=orders}"
        ) >= 3.0
    );
}
