//! Acceptance: the control API refuses calls without the token (401) and listens on 127.0.0.1 only.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::io::{Read, Write};
use std::net::TcpStream;

use warren_tests::{NodeProcess, cli};

const BIN: &str = env!("CARGO_BIN_EXE_warren-e2e-node");

fn http_get(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    exchange(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"),
    )
}

/// Sends one raw HTTP/1.1 request and reads the status code and body of the answer.
fn exchange(addr: &str, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let code = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (code, body)
}

/// Local addresses of listening TCP sockets on `port`, from /proc/net/tcp and tcp6.
fn listening_on(port: u16) -> Vec<String> {
    let mut out = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (local, state) = (cols[1], cols[3]);
            let (ip, p) = local.split_once(':').unwrap();
            if state == "0A" && u16::from_str_radix(p, 16).unwrap() == port {
                out.push(ip.to_owned());
            }
        }
    }
    out
}

#[test]
fn api_requires_the_token_and_is_loopback_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let node = NodeProcess::start(BIN, &dir, &["--log-format", "json"]).unwrap();
    let addr = std::fs::read_to_string(dir.join("api.addr")).unwrap();
    let token = std::fs::read_to_string(dir.join("api.token")).unwrap();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("api.token"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    for path in [
        "/v1/status",
        "/v1/peers",
        "/v1/record/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN",
        "/nope",
    ] {
        let (code, body) = http_get(&addr, path, None);
        assert_eq!(code, 401, "{path} without a token: {body}");
        assert!(body.contains("missing API token"), "{body}");
        let (code, _) = http_get(&addr, path, Some("0000"));
        assert_eq!(code, 401, "{path} with a wrong token");
    }
    let (code, body) = http_get(&addr, "/v1/status", Some(&token));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"peer_id\""));
    let (code, body) = http_get(&addr, "/v1/record/not-a-peer", Some(&token));
    assert_eq!(code, 400, "{body}");

    // The only listening socket on the API port is 127.0.0.1 (0100007F in /proc/net/tcp).
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(listening_on(port), vec!["0100007F".to_owned()]);

    // A config asking for a non-loopback API is refused before anything starts.
    let out = cli(
        BIN,
        &tmp.path().join("other"),
        &["start", "--api-listen", "0.0.0.0:0", "--dump-config"],
        false,
    )
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a loopback address"));

    // Logs are JSON lines on request.
    let log = node.log();
    let first = log.lines().next().unwrap();
    let line: serde_json::Value = serde_json::from_str(first).unwrap();
    assert!(
        line["fields"]["message"]
            .as_str()
            .unwrap()
            .starts_with("starting warren"),
        "{first}"
    );

    // --dump-config prints the merged config: defaults < config file < flags.
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(
        other.join("config.toml"),
        "network = \"from-file\"\nmax_peers = 7\n",
    )
    .unwrap();
    let out = cli(
        BIN,
        &other,
        &["start", "--dump-config", "--network", "from-flag"],
        false,
    )
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dumped = String::from_utf8(out.stdout).unwrap();
    assert!(
        dumped.contains("network = \"from-flag\"") && dumped.contains("max_peers = 7"),
        "{dumped}"
    );
    std::fs::write(other.join("config.toml"), "netwrk = \"typo\"\n").unwrap();
    let out = cli(BIN, &other, &["start", "--dump-config"], false).unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field"));

    // A second node on the same data directory is refused.
    let out = cli(
        BIN,
        &dir,
        &["start", "--listen", "/ip4/127.0.0.1/tcp/0"],
        false,
    )
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already running"));
    assert!(node.stop().unwrap().success());
}

fn http_post_json(addr: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    exchange(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// A user's mistake with `warren audit` is a 4xx with a sentence, never a 500: auditing this node
/// itself, naming a block this node does not hold, a peer id that does not parse.
#[test]
fn audit_mistakes_are_4xx_with_a_sentence() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let _node = NodeProcess::start(BIN, &dir, &[]).unwrap();
    let addr = std::fs::read_to_string(dir.join("api.addr")).unwrap();
    let token = std::fs::read_to_string(dir.join("api.token")).unwrap();
    let (addr, token) = (addr.trim(), token.trim());
    let (code, status) = http_get(addr, "/v1/status", Some(token));
    assert_eq!(code, 200, "{status}");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let me = status["peer_id"].as_str().unwrap();

    let (code, body) = http_post_json(addr, "/v1/audit", token, &format!(r#"{{"peer":"{me}"}}"#));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("does not audit itself"), "{body}");

    let other = libp2p::identity::Keypair::generate_ed25519()
        .public()
        .to_peer_id();
    let block = "bafkr4ihdelx6pq4eu2uqcq7hyq6dzdugruqbtqrswcqcrndc2ot3qjlhbm";
    let (code, body) = http_post_json(
        addr,
        "/v1/audit",
        token,
        &format!(r#"{{"peer":"{other}","cid":"{block}"}}"#),
    );
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("is not in this node's store"), "{body}");

    let (code, body) = http_post_json(addr, "/v1/audit", token, r#"{"peer":"not-a-peer"}"#);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("is not a peer id"), "{body}");
}
