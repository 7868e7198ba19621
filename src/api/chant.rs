//! `POST /api/v1/chant`: one incantation for a menu item (SPEC.md §4). Never fails for
//! a valid item: the built-in generator answers whenever the backend cannot. For 30 s
//! after a lobby of the item formed a group, every request gets that group's line, so
//! guests who chant together chant one line.

use super::Api;
use crate::http::request::Head;
use crate::http::response::{self, Status};
use crate::menu;

pub async fn chant(api: &Api, head: &Head<'_, '_>, body: &[u8], out: &mut Vec<u8>) -> Status {
    let close = head.close;
    let Some(id) = super::menu_item_id(body) else {
        response::error(out, Status::BadRequest, "Invalid request body", close);
        return Status::BadRequest;
    };
    let Some(item) = menu::find(&id) else {
        response::error(
            out,
            Status::BadRequest,
            &format!("invalid menu_item_id: {id}"),
            close,
        );
        return Status::BadRequest;
    };
    let line = match api.group_lines.recent(item, crate::clock::unix_now_ms()) {
        Some(line) => line.to_string(),
        None => api.chanter.line(item).await,
    };
    let body = serde_json::to_vec(&serde_json::json!({ "chant": line })).expect("a string encodes");
    response::json(out, Status::Ok, &body, close);
    Status::Ok
}
