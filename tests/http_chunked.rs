//! Chunked request bodies (RFC 9112 §7.1, SPEC.md §1), over raw sockets against the real
//! binary: decoded like a `Content-Length` body, limited on the decoded size, strict
//! about the framing, and followed by pipelined requests as usual.

mod common;

use common::{read_response, Response, Server};
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const ORDERS_HEAD: &str =
    "POST /api/v1/stores/orders HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";

/// Sends `pieces` one write at a time, pausing between them so the server reads them
/// separately, and returns the socket with a reader over it.
fn send_in_pieces(server: &Server, pieces: &[&[u8]]) -> (TcpStream, BufReader<TcpStream>) {
    let mut stream = server.connect();
    stream.set_nodelay(true).unwrap();
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(30));
        }
        stream.write_all(piece).unwrap();
    }
    let reader = BufReader::new(stream.try_clone().unwrap());
    (stream, reader)
}

/// Sends `raw` and asserts it is refused with `status` and the JSON error `message`,
/// after which the server closes the connection.
fn assert_refused(server: &Server, raw: &[u8], status: u16, message: &str) {
    let (_stream, mut reader) = send_in_pieces(server, &[raw]);
    let response: Response = read_response(&mut reader).expect("a response");
    let what = String::from_utf8_lossy(&raw[..raw.len().min(160)]);
    assert_eq!(response.status, status, "{what}");
    assert_eq!(response.error_message(), message, "{what}");
    assert_eq!(response.header("Connection"), Some("close"), "{what}");
    let mut rest = Vec::new();
    assert!(
        reader.read_to_end(&mut rest).is_ok() && rest.is_empty(),
        "not closed after {what}"
    );
}

#[test]
fn a_chunked_order_is_decoded_across_reads_with_extensions_and_trailers() {
    let server = Server::start(&[]);
    let head = ORDERS_HEAD.as_bytes();
    let (_stream, mut reader) = send_in_pieces(
        &server,
        &[
            head,
            b"10;note=\"first\"\r\n{\"men",
            b"u_item_id\":\r\n",
            b"00C\r\n\"giiku-ten\"}\r",
            b"\n0\r\nX-Checksum: none\r\n",
            b"\r\n",
        ],
    );
    let response = read_response(&mut reader).expect("a response");
    assert_eq!(response.status, 201, "{}", response.text());
    assert_eq!(response.json()["menu_item_id"], "giiku-ten");
    assert_eq!(response.header("Connection"), None, "kept alive");
}

#[test]
fn a_request_pipelined_after_a_chunked_body_is_answered() {
    let server = Server::start(&[]);
    let mut batch = ORDERS_HEAD.to_string();
    batch.push_str("1c\r\n{\"menu_item_id\":\"giiku-sai\"}\r\n0\r\n\r\n");
    batch.push_str(ORDERS_HEAD);
    batch.push_str("1d\r\n{\"menu_item_id\":\"giiku-camp\"}\r\n0\r\n\r\n");
    batch.push_str(
        "GET /api/v1/stores/orders/store-001-2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    let (_stream, mut reader) = send_in_pieces(&server, &[batch.as_bytes()]);
    let first = read_response(&mut reader).expect("first");
    assert_eq!(first.status, 201, "{}", first.text());
    assert_eq!(first.json()["menu_item_id"], "giiku-sai");
    let second = read_response(&mut reader).expect("second");
    assert_eq!(second.status, 201, "{}", second.text());
    assert_eq!(second.json()["order_number"], 2);
    let third = read_response(&mut reader).expect("third");
    assert_eq!(third.status, 200);
    assert_eq!(third.json()["menu_item_id"], "giiku-camp");
    assert!(read_response(&mut reader).is_none(), "closed as asked");
}

#[test]
fn the_body_limit_counts_decoded_bytes_and_refuses_before_the_data() {
    let server = Server::start(&["--body-bytes-max", "100"]);
    // 60 + 40 bytes of data behind far more framing: exactly the limit, accepted.
    let json = format!(
        r#"{{"menu_item_id":"giiku-haku","x":"{}"}}"#,
        "a".repeat(24)
    );
    assert_eq!(json.len(), 60);
    let exactly = format!(
        "{ORDERS_HEAD}3c;{pad}\r\n{json}\r\n28\r\n{spaces}\r\n0\r\n\r\n",
        pad = "p".repeat(500),
        spaces = " ".repeat(40),
    );
    let (_stream, mut reader) = send_in_pieces(&server, &[exactly.as_bytes()]);
    let response = read_response(&mut reader).expect("a response");
    assert_eq!(response.status, 201, "{}", response.text());

    // One more byte, announced but never sent: 413 at once, and the connection closes.
    let mut over = ORDERS_HEAD.to_string();
    over.push_str(&format!("3c\r\n{}\r\n29\r\n", "a".repeat(60)));
    let too_large = "request body is larger than the limit";
    assert_refused(&server, over.as_bytes(), 413, too_large);
    let huge = format!("{ORDERS_HEAD}ffffffffffffffff\r\n");
    assert_refused(&server, huge.as_bytes(), 413, too_large);
}

#[test]
fn broken_framing_is_a_400_and_closes() {
    let server = Server::start(&[]);
    let long_line = format!("1;{}\r\na\r\n0\r\n\r\n", "e".repeat(2000));
    for (body, message) in [
        ("zz\r\n", "chunk size is not hexadecimal"),
        ("10000000000000000\r\n", "chunk size does not fit 64 bits"),
        (
            "5\nhello\r\n0\r\n\r\n",
            "chunk-size line does not end in CRLF",
        ),
        ("5\r\nhelloXX0\r\n\r\n", "chunk data does not end in CRLF"),
        ("0\r\nX-A: b\n\r\n", "trailer line does not end in CRLF"),
        (&long_line, "chunk-size line is too long"),
    ] {
        assert_refused(
            &server,
            format!("{ORDERS_HEAD}{body}").as_bytes(),
            400,
            message,
        );
    }
    assert_eq!(server.get("/healthz").status, 200, "the server is unharmed");
}

#[test]
fn trailers_are_bounded_by_the_head_limit() {
    let server = Server::start(&["--head-bytes-max", "1024"]);
    let trailers = format!("{ORDERS_HEAD}0\r\nX-Fill: {}\r\n\r\n", "t".repeat(1100));
    assert_refused(
        &server,
        trailers.as_bytes(),
        431,
        "request trailers are larger than the limit",
    );
}

#[test]
fn transfer_encodings_that_cannot_be_trusted_or_decoded() {
    let server = Server::start(&[]);
    for (head, status, message) in [
        (
            "POST /api/v1/stores/orders HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
            "Transfer-Encoding and Content-Length together",
        ),
        (
            "POST /api/v1/stores/orders HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            400,
            "Transfer-Encoding and Content-Length together",
        ),
        (
            "POST /api/v1/stores/orders HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
            "Transfer-Encoding in an HTTP/1.0 request",
        ),
        (
            "POST /api/v1/stores/orders HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            501,
            "only the chunked transfer coding is supported",
        ),
    ] {
        let raw = format!("{head}5\r\nhello\r\n0\r\n\r\n");
        assert_refused(&server, raw.as_bytes(), status, message);
    }
}
