//! Answering a WebSocket upgrade request on the HTTP connection: the `room` parameter
//! rules of SPEC.md §2, the RFC 6455 handshake, then `101 Switching Protocols`.

use super::handshake;
use crate::http::query;
use crate::http::request::Head;
use crate::http::response::{self, Status};
use crate::http::route::WsKind;
use crate::limits::ROOM_BYTES_MAX;

/// Validates the upgrade and writes either `101` or an error into `out`.
/// On success returns the decoded room name.
pub fn answer(kind: WsKind, head: &Head<'_, '_>, out: &mut Vec<u8>) -> Result<String, Status> {
    let close = head.close;
    let fail = |out: &mut Vec<u8>, message: &str| {
        response::error(out, Status::BadRequest, message, close);
        Err(Status::BadRequest)
    };
    let room = if !kind.has_rooms() {
        String::new()
    } else {
        match query::param(head.query, "room") {
            Err(_) => return fail(out, "room is not valid percent-encoding"),
            Ok(None) => return fail(out, "room is required"),
            Ok(Some(room)) if room.is_empty() => return fail(out, "room is required"),
            Ok(Some(room)) if room.len() > ROOM_BYTES_MAX => {
                return fail(out, &format!("room must be at most {ROOM_BYTES_MAX} bytes"))
            }
            Ok(Some(room)) => match String::from_utf8(room.into_owned()) {
                Ok(room) => room,
                Err(_) => return fail(out, "room must be UTF-8"),
            },
        }
    };
    if kind == WsKind::Confirm && crate::menu::find(&room).is_none() {
        return fail(out, &format!("menu item not found: {room}"));
    }
    let headers = head.headers.iter().map(|h| (h.name, h.value));
    match handshake::check_upgrade(headers) {
        Ok(key) => {
            handshake::write_response(key, out);
            Ok(room)
        }
        Err(e) => {
            let status = if e.status_code() == 426 {
                Status::UpgradeRequired
            } else {
                Status::BadRequest
            };
            let extra = e
                .required_header()
                .map(|(name, value)| format!("{name}: {value}\r\n"))
                .unwrap_or_default();
            response::error_with_headers(out, status, e.message(), &extra, close);
            Err(status)
        }
    }
}
