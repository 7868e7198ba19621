//! The OpenAPI document (`api/swagger.yaml`, served at `/swagger.yaml`): it must be a
//! valid OpenAPI 3 document, and it must describe exactly the paths the server routes,
//! with exactly the methods each answers.
//!
//! Validation uses the Python `openapi-spec-validator` (no Rust YAML dependency):
//! `pip install openapi-spec-validator pyyaml`.

use kakigori::http::request::Method;
use kakigori::http::route;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Every path the server knows (src/http/route.rs), in OpenAPI template form.
const ROUTED_PATHS: &[&str] = &[
    "/healthz",
    "/api/v1/healthz",
    "/ws/health",
    "/api/v1/stores/menu",
    "/api/v1/stores/orders",
    "/api/v1/stores/orders/{orderId}",
    "/api/v1/stores/orders/{orderId}/waiting-pickup",
    "/api/v1/stores/orders/{orderId}/complete",
    "/api/v1/chant",
    "/swagger.yaml",
    "/api/v1/swagger.yaml",
    "/metrics",
    "/ws",
    "/ws/stay",
    "/ws/confirm",
    "/ws/kitchen",
    "/ws/board",
    "/kitchen",
    "/board",
    "/crowd",
];

const VALIDATE: &str = "import sys, yaml; from openapi_spec_validator import validate; \
                        validate(yaml.safe_load(open(sys.argv[1])))";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn document() -> String {
    std::fs::read_to_string(root().join("api/swagger.yaml")).expect("read api/swagger.yaml")
}

/// The document's `paths` with the HTTP methods of each, read from its block layout:
/// a path is a two-space-indented key under `paths:`, an operation a four-space one.
fn documented_operations(doc: &str) -> Vec<(String, BTreeSet<String>)> {
    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let mut paths: Vec<(String, BTreeSet<String>)> = Vec::new();
    let mut in_paths = false;
    for line in doc.lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() {
            in_paths = line.trim_end() == "paths:";
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(key) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':')) {
            if key.starts_with('/') {
                paths.push((
                    key.trim_matches(|c| c == '\'' || c == '"').to_string(),
                    BTreeSet::new(),
                ));
                continue;
            }
        }
        if let Some(key) = line.strip_prefix("    ").and_then(|l| l.strip_suffix(':')) {
            if METHODS.contains(&key) {
                let (_, methods) = paths.last_mut().expect("an operation outside a path");
                methods.insert(key.to_string());
            }
        }
    }
    paths
}

#[test]
fn swagger_yaml_is_a_valid_openapi_document() {
    let output = Command::new("python3")
        .args(["-c", VALIDATE, "api/swagger.yaml"])
        .current_dir(root())
        .env("PYTHONUTF8", "1")
        .output()
        .unwrap_or_else(|e| {
            panic!("could not run python3 ({e}); install Python 3, then: pip install openapi-spec-validator pyyaml")
        });
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        if stderr.contains("No module named") {
            panic!(
                "the OpenAPI validator is not installed; run: pip install openapi-spec-validator pyyaml\n{stderr}"
            );
        }
        panic!("api/swagger.yaml is not a valid OpenAPI 3 document:\n{stderr}");
    }
}

#[test]
fn document_is_openapi_3_0_3() {
    assert!(document().lines().any(|l| l.trim_end() == "openapi: 3.0.3"));
}

#[test]
fn every_routed_path_is_documented_and_nothing_else() {
    let doc = document();
    let documented: BTreeSet<String> = documented_operations(&doc)
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    let routed: BTreeSet<String> = ROUTED_PATHS.iter().map(|p| p.to_string()).collect();
    let missing: Vec<_> = routed.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&routed).collect();
    assert!(
        missing.is_empty(),
        "paths the server routes but api/swagger.yaml lacks: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "paths in api/swagger.yaml the server does not route: {extra:?}"
    );
}

/// The exact paths matched in `route::find` must all be in [`ROUTED_PATHS`], so a new
/// route cannot be added without this test (and so the document) noticing.
#[test]
fn route_table_has_no_path_missing_from_the_list() {
    let source =
        std::fs::read_to_string(root().join("src/http/route.rs")).expect("read src/http/route.rs");
    let start = source
        .find("pub fn find")
        .expect("route.rs has `pub fn find`");
    let body = &source[start..];
    let body = &body[..body.find("\n}\n").unwrap_or(body.len())];
    let literals: Vec<&str> = body
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with('/'))
        .collect();
    assert!(
        literals.len() >= 10,
        "found too few path literals in route::find: {literals:?}"
    );
    for literal in literals {
        assert!(
            ROUTED_PATHS.contains(&literal),
            "route.rs routes {literal} but the test's list (and maybe the document) lacks it"
        );
    }
}

fn method_name(method: Method) -> &'static str {
    match method {
        Method::Get => "get",
        Method::Head => "head",
        Method::Post => "post",
        Method::Put => "put",
        Method::Patch => "patch",
        Method::Delete => "delete",
        Method::Options => "options",
        Method::Other => "other",
    }
}

/// Each documented operation is one the router answers, and each method the router
/// answers is documented (`OPTIONS`, answered on every path, is documented once).
#[test]
fn documented_methods_match_the_router() {
    let doc = document();
    for (path, methods) in documented_operations(&doc) {
        let concrete = path.replace("{orderId}", "store-001-7");
        let route =
            route::find(&concrete).unwrap_or_else(|| panic!("{path} is documented but not routed"));
        let allowed: BTreeSet<String> = route
            .allowed()
            .iter()
            .map(|m| method_name(*m).to_string())
            .collect();
        let documented: BTreeSet<String> = methods.into_iter().filter(|m| m != "options").collect();
        assert_eq!(
            documented, allowed,
            "methods of {path}: documented vs routed"
        );
    }
}

#[test]
fn contract_strings_are_in_the_document() {
    let doc = document();
    for needle in [
        "bearerAuth",
        "Idempotency-Key",
        "Invalid request body",
        "menu item not found: ",
        "Invalid order ID format",
        "Order not found",
        "invalid menu_item_id: ",
        "order status is not pending",
        "order status is not waiting pickup",
        "room is required",
        "order failed",
        "MeterValue:",
        "MeterAverage:",
        "StayStatus:",
        "ConfirmReady:",
        "ConfirmError:",
        "enum: [pending, waitingPickup, completed]",
        "技育祭な いちご味",
        "技育博な メロン味",
        "技育展な ブルーハワイ味",
        "技育CAMPな オレンジ味",
    ] {
        assert!(
            doc.contains(needle),
            "api/swagger.yaml does not mention {needle:?}"
        );
    }
    for code in ["1000", "1001", "1002", "1007", "1009", "1013"] {
        assert!(
            doc.contains(&format!("**{code}**")) || doc.contains(&format!(" {code} ")),
            "close code {code} is not described"
        );
    }
}
