//! The endpoints: the REST handlers of SPEC.md §1, each answering into the connection's
//! output buffer, and the mapping from a WebSocket path to the service behind it
//! ([`ws`]). Handlers parse, call a service handle, answer; they own no state.

mod chant;
mod info;
mod orders;
pub mod ws;

use crate::chant::groups::GroupLines;
use crate::chant::Chanter;
use crate::http::request::Head;
use crate::http::response::Status;
use crate::http::route::Route;
use crate::metrics::Snapshot;
use crate::orders::index::OrderIndex;
use crate::services::orders::OrderDesk;
use futures_lite::future::BoxedLocal;
use std::rc::Rc;
use std::sync::Arc;

/// Every core's metrics, merged: the runtime asks the other cores.
pub trait Scrape {
    fn snapshot_all(&self) -> BoxedLocal<Snapshot>;
}

/// What the REST handlers of one core use.
pub struct Api {
    pub store_id: String,
    pub staff_token: String,
    /// Every committed order, readable from any core.
    pub index: Arc<OrderIndex>,
    pub desk: Rc<dyn OrderDesk>,
    pub chanter: Rc<Chanter>,
    /// Lines of lobby groups that formed lately, served to their guests.
    pub group_lines: Arc<GroupLines>,
    pub scrape: Rc<dyn Scrape>,
}

impl crate::net::http::Router for Api {
    async fn answer(
        &self,
        route: Route<'_>,
        head: &Head<'_, '_>,
        body: &[u8],
        out: &mut Vec<u8>,
    ) -> Status {
        handle(self, route, head, body, out).await
    }
}

/// Answers one REST request (method already checked against the route) and returns the
/// status it answered with.
async fn handle(
    api: &Api,
    route: Route<'_>,
    head: &Head<'_, '_>,
    body: &[u8],
    out: &mut Vec<u8>,
) -> Status {
    match route {
        Route::Health => info::health(head, out),
        Route::Menu => info::menu(head, out),
        Route::Swagger => info::swagger(head, out),
        Route::Metrics => info::metrics(api, head, out).await,
        Route::Orders => orders::collection(api, head, body, out).await,
        Route::Order(id) => orders::get(api, id, head, out),
        Route::Advance(id, to) => orders::advance(api, id, to, head, out).await,
        Route::Chant => chant::chant(api, head, body, out).await,
        Route::Page(page) => info::page(page, head, out),
        Route::WebSocket(_) => unreachable!("upgrades are answered by the connection loop"),
    }
}

/// Reads the `menu_item_id` string field of a JSON object body. `None` for anything
/// else: not JSON, not an object, the field missing, empty or not a string.
fn menu_item_id(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Body {
        menu_item_id: Option<String>,
    }
    let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' {
        return None;
    }
    let parsed: Body = serde_json::from_slice(body).ok()?;
    parsed.menu_item_id.filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::menu_item_id;

    #[test]
    fn menu_item_id_accepts_only_a_non_empty_string_field_of_an_object() {
        assert_eq!(
            menu_item_id(br#"{"menu_item_id":"giiku-sai"}"#).as_deref(),
            Some("giiku-sai")
        );
        assert_eq!(
            menu_item_id(br#" {"x":1,"menu_item_id":"a\u0062"}"#).as_deref(),
            Some("ab")
        );
        for bad in [
            &b""[..],
            b"null",
            b"[\"giiku-sai\"]",
            br#"{"menu_item_id":""}"#,
            br#"{"menu_item_id":5}"#,
            b"{}",
            b"{",
            br#""s""#,
        ] {
            assert_eq!(menu_item_id(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
