//! The generated staff token survives restarts whole, and a token file a crash cut
//! short is refused with what to do, never adopted (against the real binary).

mod common;

use common::{run_to_exit, Server};

/// The status of the staff order list asked for with `token`.
fn staff_list_status(server: &Server, token: &str) -> u16 {
    let auth = format!("Bearer {token}");
    let headers = [("Authorization", auth.as_str())];
    server
        .request("GET", "/api/v1/stores/orders", &headers, b"")
        .status
}

#[test]
fn a_torn_staff_token_file_refuses_to_start_and_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let token_path = dir.path().join("staff-token");
    let token = {
        let server = Server::start_with_token(dir.path(), &[], None);
        assert!(server.log_text().contains("generated a staff token"));
        std::fs::read_to_string(&token_path).unwrap()
    };
    // The generated token works after a restart.
    {
        let server = Server::start_with_token(dir.path(), &[], None);
        assert_eq!(staff_list_status(&server, &token), 200);
    }
    let third = token.len() / 3;
    let mut last_third_only = vec![0u8; token.len() - third];
    last_third_only.extend_from_slice(&token.as_bytes()[token.len() - third..]);
    let data_dir = dir.path().to_str().unwrap();
    for torn in [token.as_bytes()[..third].to_vec(), last_third_only] {
        std::fs::write(&token_path, &torn).unwrap();
        let (code, _, stderr) =
            run_to_exit(&["--listen", "127.0.0.1:0", "--data-dir", data_dir], None);
        assert_eq!(code, Some(1), "refuses to start: {stderr}");
        assert!(
            stderr.contains(&token_path.display().to_string()),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("holds {} bytes", torn.len())),
            "{stderr}"
        );
        assert!(stderr.contains("Delete the file"), "{stderr}");
        assert!(!stderr.contains("listening on"), "{stderr}");
        assert_eq!(
            std::fs::read(&token_path).unwrap(),
            torn,
            "left for the operator"
        );
    }
    // Following the advice: a new token is generated and the server starts.
    std::fs::remove_file(&token_path).unwrap();
    let server = Server::start_with_token(dir.path(), &[], None);
    let fresh = std::fs::read_to_string(&token_path).unwrap();
    assert_eq!(fresh.len(), token.len());
    assert_ne!(fresh, token);
    assert_eq!(staff_list_status(&server, &fresh), 200);
    assert_eq!(
        staff_list_status(&server, &token),
        401,
        "the old token is gone"
    );
}

#[test]
fn a_configured_token_needs_no_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("staff-token"), [0u8; 10]).unwrap();
    // The configured token wins; the damaged file is not even read.
    let server = Server::start_in(dir.path(), &[]);
    assert_eq!(server.staff("GET", "/api/v1/stores/orders").status, 200);
}
