//! Request-head parsing and routing: the work every REST request pays before its handler.

use criterion::{criterion_group, criterion_main, Criterion};
use kakigori::http::{request, route};
use std::hint::black_box;

const MENU_REQUEST: &[u8] = b"GET /api/v1/stores/menu HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\
User-Agent: wrk\r\nAccept: */*\r\n\r\n";
const ORDER_REQUEST: &[u8] = b"POST /api/v1/stores/orders HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\
Content-Type: application/json\r\nIdempotency-Key: 6f1c1a4e-guest-42\r\nContent-Length: 29\r\n\r\n\
{\"menu_item_id\":\"giiku-sai\"}";

fn parse_and_route(raw: &[u8]) -> usize {
    let mut storage = request::header_storage();
    let head = request::parse(raw, &mut storage).expect("valid request");
    let found = route::find(head.path).expect("known path");
    head.head_len + found.label().len()
}

fn bench(c: &mut Criterion) {
    c.bench_function("http_head/parse_route_get_menu", |b| {
        b.iter(|| parse_and_route(black_box(MENU_REQUEST)))
    });
    c.bench_function("http_head/parse_route_post_order", |b| {
        b.iter(|| parse_and_route(black_box(ORDER_REQUEST)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
