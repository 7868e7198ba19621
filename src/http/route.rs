//! The route table: a path maps to one [`Route`], and each route knows which methods it
//! answers, so a known path with the wrong method gets 405 with an `Allow` header.

use super::request::Method;
use crate::orders::Status;
use crate::screens::pages::Page;

/// Which WebSocket endpoint an upgrade is for; part of a room's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WsKind {
    /// `/ws`: the chant meter.
    Meter,
    /// `/ws/stay`: the waiting lobby.
    Stay,
    /// `/ws/confirm`: everybody ready, then order.
    Confirm,
    /// `/ws/kitchen`: the staff kitchen board's live feed.
    Kitchen,
    /// `/ws/board`: the public pickup board's live feed.
    Board,
}

impl WsKind {
    /// Whether the endpoint groups clients by a `room` parameter.
    pub fn has_rooms(self) -> bool {
        matches!(self, WsKind::Meter | WsKind::Stay | WsKind::Confirm)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    Health,
    Menu,
    /// `/api/v1/stores/orders`: create (POST, public) or list (GET, staff).
    Orders,
    Order(&'a str),
    /// A staff move of an order to the given status.
    Advance(&'a str, Status),
    Chant,
    Swagger,
    Metrics,
    WebSocket(WsKind),
    /// A screen's page: `/kitchen`, `/board` or `/crowd`.
    Page(Page),
}

const ORDERS_PREFIX: &str = "/api/v1/stores/orders/";

/// Finds the route for `path`, or `None` for 404.
pub fn find(path: &str) -> Option<Route<'_>> {
    let route = match path {
        "/healthz" | "/api/v1/healthz" | "/ws/health" => Route::Health,
        "/api/v1/stores/menu" => Route::Menu,
        "/api/v1/stores/orders" => Route::Orders,
        "/api/v1/chant" => Route::Chant,
        "/swagger.yaml" | "/api/v1/swagger.yaml" => Route::Swagger,
        "/metrics" => Route::Metrics,
        "/ws" => Route::WebSocket(WsKind::Meter),
        "/ws/stay" => Route::WebSocket(WsKind::Stay),
        "/ws/confirm" => Route::WebSocket(WsKind::Confirm),
        "/ws/kitchen" => Route::WebSocket(WsKind::Kitchen),
        "/ws/board" => Route::WebSocket(WsKind::Board),
        "/kitchen" => Route::Page(Page::Kitchen),
        "/board" => Route::Page(Page::Board),
        "/crowd" => Route::Page(Page::Crowd),
        _ => {
            let rest = path.strip_prefix(ORDERS_PREFIX)?;
            match rest.split_once('/') {
                None if !rest.is_empty() => Route::Order(rest),
                Some((id, "waiting-pickup")) if !id.is_empty() => {
                    Route::Advance(id, Status::WaitingPickup)
                }
                Some((id, "complete")) if !id.is_empty() => Route::Advance(id, Status::Completed),
                _ => return None,
            }
        }
    };
    Some(route)
}

impl Route<'_> {
    /// Methods this route answers besides `OPTIONS` (which every path answers).
    pub fn allowed(&self) -> &'static [Method] {
        match self {
            Route::Orders => &[Method::Get, Method::Post],
            Route::Advance(..) | Route::Chant => &[Method::Post],
            Route::Health
            | Route::Menu
            | Route::Order(_)
            | Route::Swagger
            | Route::Metrics
            | Route::WebSocket(_)
            | Route::Page(_) => &[Method::Get],
        }
    }

    /// The `Allow` header value for a 405.
    pub fn allow_header(&self) -> &'static str {
        match self.allowed() {
            [Method::Get, Method::Post] => "Allow: GET, POST, OPTIONS\r\n",
            [Method::Post] => "Allow: POST, OPTIONS\r\n",
            _ => "Allow: GET, OPTIONS\r\n",
        }
    }

    /// A short, bounded label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Health => "health",
            Route::Menu => "menu",
            Route::Orders => "orders",
            Route::Order(_) => "order",
            Route::Advance(..) => "order_advance",
            Route::Chant => "chant",
            Route::Swagger => "swagger",
            Route::Metrics => "metrics",
            Route::WebSocket(WsKind::Meter) => "ws",
            Route::WebSocket(WsKind::Stay) => "ws_stay",
            Route::WebSocket(WsKind::Confirm) => "ws_confirm",
            Route::WebSocket(WsKind::Kitchen) => "ws_kitchen",
            Route::WebSocket(WsKind::Board) => "ws_board",
            Route::Page(_) => "page",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_contract_path_has_a_route() {
        assert_eq!(find("/healthz"), Some(Route::Health));
        assert_eq!(find("/ws/health"), Some(Route::Health));
        assert_eq!(
            find("/api/v1/stores/orders/store-001-7"),
            Some(Route::Order("store-001-7"))
        );
        assert_eq!(
            find("/api/v1/stores/orders/store-001-7/complete"),
            Some(Route::Advance("store-001-7", Status::Completed))
        );
        assert_eq!(
            find("/api/v1/stores/orders/x/waiting-pickup"),
            Some(Route::Advance("x", Status::WaitingPickup))
        );
        assert_eq!(find("/ws/confirm"), Some(Route::WebSocket(WsKind::Confirm)));
        assert_eq!(find("/crowd"), Some(Route::Page(Page::Crowd)));
        assert_eq!(find("/api/v1/stores/orders/"), None);
        assert_eq!(find("/api/v1/stores/orders/x/cancel"), None);
        assert_eq!(find("/api/v1/stores/orders//complete"), None);
        assert_eq!(find("/nope"), None);
    }

    #[test]
    fn allow_header_lists_the_routes_methods() {
        assert_eq!(
            Route::Orders.allow_header(),
            "Allow: GET, POST, OPTIONS\r\n"
        );
        assert_eq!(Route::Chant.allow_header(), "Allow: POST, OPTIONS\r\n");
        assert_eq!(Route::Menu.allow_header(), "Allow: GET, OPTIONS\r\n");
    }
}
