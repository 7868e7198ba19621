//! Orders over REST: guests create and read them; staff list them and move them along.

use super::Api;
use crate::http::query;
use crate::http::request::Head;
use crate::http::response::{self, Status as Http};
use crate::menu;
use crate::orders::book::OrderError;
use crate::orders::{Order, Status, IDEMPOTENCY_KEY_BYTES_MAX};

/// Orders listed between chances for the core's other tasks to run.
const ORDERS_PER_YIELD: usize = 4096;

/// What an order id in a path names.
#[derive(Debug, PartialEq, Eq)]
enum OrderId {
    /// `<this store>-<n>`.
    Here(u64),
    /// Well-formed, but another store's or beyond any number: 404.
    Elsewhere,
}

/// Parses `<store id>-<decimal digits>`; `None` when the id is not of that form (400).
fn parse_order_id(id: &str, store_id: &str) -> Option<OrderId> {
    let (store, digits) = id.rsplit_once('-')?;
    if store.is_empty() || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(match digits.parse::<u64>() {
        Ok(number) if store == store_id => OrderId::Here(number),
        _ => OrderId::Elsewhere,
    })
}

fn write_order(api: &Api, order: &Order, status: Http, close: bool, out: &mut Vec<u8>) -> Http {
    let mut body = Vec::with_capacity(160);
    order.write_json(&api.store_id, &mut body);
    response::json(out, status, &body, close);
    status
}

fn fail(out: &mut Vec<u8>, status: Http, message: &str, close: bool) -> Http {
    response::error(out, status, message, close);
    status
}

/// `/api/v1/stores/orders`: POST creates (public), GET lists (staff).
pub async fn collection(api: &Api, head: &Head<'_, '_>, body: &[u8], out: &mut Vec<u8>) -> Http {
    if head.method == crate::http::request::Method::Get {
        return list(api, head, out).await;
    }
    let close = head.close;
    let key = match head.idempotency_key {
        None => None,
        Some(key) if (1..=IDEMPOTENCY_KEY_BYTES_MAX).contains(&key.len()) => Some(key),
        Some(_) => {
            let message = format!("Idempotency-Key must be 1-{IDEMPOTENCY_KEY_BYTES_MAX} bytes");
            return fail(out, Http::BadRequest, &message, close);
        }
    };
    let Some(id) = super::menu_item_id(body) else {
        return fail(out, Http::BadRequest, "Invalid request body", close);
    };
    let Some(item) = menu::find(&id) else {
        return fail(
            out,
            Http::BadRequest,
            &format!("menu item not found: {id}"),
            close,
        );
    };
    match api.desk.create(item, key.map(Box::from)).await {
        Ok(order) => write_order(api, &order, Http::Created, close, out),
        Err(e) => order_failure(e, out, close),
    }
}

fn order_failure(error: OrderError, out: &mut Vec<u8>, close: bool) -> Http {
    match error {
        OrderError::NotFound => fail(out, Http::NotFound, "Order not found", close),
        // Only a move can find the wrong status; `advance` words it for its target.
        OrderError::WrongStatus { .. } => {
            fail(out, Http::InternalError, "unexpected order state", close)
        }
        OrderError::Unavailable | OrderError::Full => fail(
            out,
            Http::ServiceUnavailable,
            "order could not be made durable, try again later",
            close,
        ),
    }
}

pub fn get(api: &Api, id: &str, head: &Head<'_, '_>, out: &mut Vec<u8>) -> Http {
    let close = head.close;
    match parse_order_id(id, &api.store_id) {
        None => fail(out, Http::BadRequest, "Invalid order ID format", close),
        Some(OrderId::Here(number)) => match api.index.get(number) {
            Some(order) => write_order(api, &order, Http::Ok, close, out),
            None => fail(out, Http::NotFound, "Order not found", close),
        },
        Some(OrderId::Elsewhere) => fail(out, Http::NotFound, "Order not found", close),
    }
}

fn unauthorized(out: &mut Vec<u8>, close: bool) -> Http {
    response::error_with_headers(
        out,
        Http::Unauthorized,
        "staff token required: send Authorization: Bearer <token>",
        "WWW-Authenticate: Bearer\r\n",
        close,
    );
    Http::Unauthorized
}

async fn list(api: &Api, head: &Head<'_, '_>, out: &mut Vec<u8>) -> Http {
    let close = head.close;
    if !crate::staff::authorized(head.authorization, &api.staff_token) {
        return unauthorized(out, close);
    }
    let filter = match query::param(head.query, "status") {
        Ok(None) => None,
        Ok(Some(name)) if name.is_empty() => None,
        Ok(Some(name)) => match std::str::from_utf8(&name).ok().and_then(Status::parse) {
            Some(status) => Some(status),
            None => {
                let message = format!(
                    "unknown status: {} (use pending, waitingPickup or completed)",
                    String::from_utf8_lossy(&name)
                );
                return fail(out, Http::BadRequest, &message, close);
            }
        },
        Err(_) => {
            return fail(
                out,
                Http::BadRequest,
                "unknown status: not percent-encoded",
                close,
            )
        }
    };
    let store_id = &api.store_id;
    let mut body = Vec::with_capacity(64);
    body.extend_from_slice(br#"{"orders":["#);
    let mut first = true;
    for (i, order) in api.index.iter().enumerate() {
        // A long list must not stall everyone else on this core.
        if i % ORDERS_PER_YIELD == ORDERS_PER_YIELD - 1 {
            glommio::yield_if_needed().await;
        }
        if filter.is_some_and(|s| order.status != s) {
            continue;
        }
        if !first {
            body.push(b',');
        }
        first = false;
        order.write_json(store_id, &mut body);
    }
    body.extend_from_slice(b"]}");
    response::json(out, Http::Ok, &body, close);
    Http::Ok
}

pub async fn advance(
    api: &Api,
    id: &str,
    to: Status,
    head: &Head<'_, '_>,
    out: &mut Vec<u8>,
) -> Http {
    let close = head.close;
    if !crate::staff::authorized(head.authorization, &api.staff_token) {
        return unauthorized(out, close);
    }
    let number = match parse_order_id(id, &api.store_id) {
        None => return fail(out, Http::BadRequest, "Invalid order ID format", close),
        Some(OrderId::Elsewhere) => return fail(out, Http::NotFound, "Order not found", close),
        Some(OrderId::Here(number)) => number,
    };
    match api.desk.advance(number, to).await {
        Ok(order) => write_order(api, &order, Http::Ok, close, out),
        Err(OrderError::WrongStatus { .. }) => {
            let message = match to {
                Status::WaitingPickup => "order status is not pending",
                _ => "order status is not waiting pickup",
            };
            fail(out, Http::BadRequest, message, close)
        }
        Err(e) => order_failure(e, out, close),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_ids_are_store_dash_digits() {
        assert_eq!(
            parse_order_id("store-001-7", "store-001"),
            Some(OrderId::Here(7))
        );
        assert_eq!(
            parse_order_id("store-002-7", "store-001"),
            Some(OrderId::Elsewhere)
        );
        assert_eq!(
            parse_order_id("store-001-99999999999999999999999", "store-001"),
            Some(OrderId::Elsewhere)
        );
        assert_eq!(parse_order_id("abc", "store-001"), None);
        assert_eq!(parse_order_id("store-001-abc", "store-001"), None);
        assert_eq!(parse_order_id("-7", "store-001"), None);
        assert_eq!(parse_order_id("store-001-", "store-001"), None);
        assert_eq!(parse_order_id("store-001-+7", "store-001"), None);
    }
}
