//! The read-only endpoints: health, menu, the OpenAPI document and metrics.

use super::Api;
use crate::http::request::Head;
use crate::http::response::{self, Status};
use crate::menu::MENU;
use crate::screens::pages::Page;
use std::sync::OnceLock;

/// The OpenAPI 3 document of the whole contract, embedded at build time.
pub const SWAGGER_YAML: &str = include_str!("../../api/swagger.yaml");

pub fn health(head: &Head<'_, '_>, out: &mut Vec<u8>) -> Status {
    response::json(out, Status::Ok, br#"{"status":"ok"}"#, head.close);
    Status::Ok
}

/// The menu never changes, so its JSON is encoded once per process.
fn menu_json() -> &'static [u8] {
    static JSON: OnceLock<Vec<u8>> = OnceLock::new();
    JSON.get_or_init(|| {
        #[derive(serde::Serialize)]
        struct Item {
            id: &'static str,
            name: &'static str,
            description: &'static str,
        }
        #[derive(serde::Serialize)]
        struct Menu {
            menu: Vec<Item>,
        }
        let menu = Menu {
            menu: MENU
                .iter()
                .map(|item| Item {
                    id: item.id,
                    name: item.name,
                    description: item.description,
                })
                .collect(),
        };
        serde_json::to_vec(&menu).expect("menu encodes")
    })
}

pub fn menu(head: &Head<'_, '_>, out: &mut Vec<u8>) -> Status {
    response::json(out, Status::Ok, menu_json(), head.close);
    Status::Ok
}

/// `/kitchen`, `/board` and `/crowd`: the screens' pages.
pub fn page(page: Page, head: &Head<'_, '_>, out: &mut Vec<u8>) -> Status {
    response::write(
        out,
        Status::Ok,
        "text/html; charset=utf-8",
        "",
        page.html().as_bytes(),
        head.close,
    );
    Status::Ok
}

pub fn swagger(head: &Head<'_, '_>, out: &mut Vec<u8>) -> Status {
    response::write(
        out,
        Status::Ok,
        "application/yaml",
        "",
        SWAGGER_YAML.as_bytes(),
        head.close,
    );
    Status::Ok
}

pub async fn metrics(api: &Api, head: &Head<'_, '_>, out: &mut Vec<u8>) -> Status {
    let snapshot = api.scrape.snapshot_all().await;
    let orders = crate::metrics::OrderFigures {
        by_menu_and_status: api.index.counts(),
    };
    let text = snapshot.render(&orders);
    response::write(
        out,
        Status::Ok,
        "text/plain; version=0.0.4; charset=utf-8",
        "",
        text.as_bytes(),
        head.close,
    );
    Status::Ok
}
