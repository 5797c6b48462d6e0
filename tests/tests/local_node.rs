//! Issue 20, attack 10: the local node against other users and web pages on the same machine.
//! One real node process (`WARREN_TEST_NODE_BIN` may point at an older build).
//!
//! - DNS rebinding: a page on `evil.example`, re-pointed at 127.0.0.1, makes the browser send
//!   `Host: evil.example:PORT`. Before the fix the API answered it (the open `/metrics`, and any
//!   route given the token); now any request for a host that is not loopback gets 421.
//! - A capability in argv (`ps` shows it to every user): `warren get` reads it from
//!   `WARREN_CAPABILITY` or `--capability-file -` (standard input) with the bare CID.
//! - A data directory other users may write into is refused at start.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use warren_tests::hostile::node_bin;
use warren_tests::{NodeProcess, api_of, cli_json, test_bytes};

/// A raw HTTP/1.1 GET with the given `Host` header; answers the status code.
fn get_with_host(addr: &str, host: &str, path: &str, token: Option<&str>) -> u16 {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn the_local_node_refuses_rebinding_and_takes_keys_off_the_command_line() {
    let bin = node_bin(env!("CARGO_BIN_EXE_warren-e2e-node"));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n0");
    let node = NodeProcess::start(&bin, &dir, &[]).unwrap();
    let (addr, token) = api_of(&dir).unwrap();
    let mut failures: Vec<String> = Vec::new();

    // DNS rebinding.
    let port = addr.rsplit_once(':').unwrap().1;
    assert_eq!(get_with_host(&addr, &addr, "/metrics", None), 200);
    assert_eq!(
        get_with_host(
            &addr,
            &format!("localhost:{port}"),
            "/v1/status",
            Some(&token)
        ),
        200
    );
    for path in ["/metrics", "/dashboard", "/v1/status"] {
        let code = get_with_host(&addr, &format!("evil.example:{port}"), path, Some(&token));
        println!("GET {path} with Host: evil.example:{port} -> {code}");
        if !(400..500).contains(&code) {
            failures.push(format!("GET {path} for Host evil.example answered {code}"));
        }
    }

    // A shared file read with its capability from the environment and from standard input.
    let data = test_bytes(100_000, 5, true);
    let file = tmp.path().join("doc.txt");
    std::fs::write(&file, &data).unwrap();
    let put = cli_json(
        &bin,
        &dir,
        &[
            "put",
            file.to_str().unwrap(),
            "--class",
            "shared",
            "--rf",
            "0",
        ],
    )
    .unwrap();
    let cap = put["capability"].as_str().unwrap().to_owned();
    let cid = put["cid"].as_str().unwrap().to_owned();
    let mut get = |how: &str, args: &[&str], env: Option<&str>, stdin: Option<&str>| {
        let out = tmp.path().join(format!("{how}.out"));
        let mut cmd = Command::new(&bin);
        cmd.arg("--data-dir")
            .arg(&dir)
            .arg("get")
            .args(args)
            .args(["-o", out.to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(e) = env {
            cmd.env("WARREN_CAPABILITY", e);
        }
        let mut child = cmd.spawn().unwrap();
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        } else {
            drop(child.stdin.take());
        }
        let o = child.wait_with_output().unwrap();
        let got = std::fs::read(&out).unwrap_or_default();
        println!(
            "get via {how}: {} {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        );
        if !o.status.success() || got != data {
            failures.push(format!(
                "get with the capability from {how} failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
    };
    get("WARREN_CAPABILITY", &[&cid], Some(&cap), None);
    get("WARREN_CAPABILITY alone", &[], Some(&cap), None);
    get(
        "stdin",
        &[&cid, "--capability-file", "-"],
        None,
        Some(&format!("{cap}\n")),
    );
    // The argument form still works.
    get("argv", &[&cap], None, None);
    drop(node);

    // A data directory every user may write into is refused.
    let open_dir = tmp.path().join("open");
    std::fs::create_dir(&open_dir).unwrap();
    std::fs::set_permissions(
        &open_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    match NodeProcess::start(&bin, &open_dir, &[]) {
        Ok(_) => failures.push("a node started on a world-writable data directory".into()),
        Err(e) => {
            let e = e.to_string();
            println!(
                "world-writable data directory: {}",
                e.lines().last().unwrap_or("")
            );
            assert!(
                e.contains("unsafe data directory") || e.contains("exited"),
                "{e}"
            );
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
