//! DNS rebinding: a web page on `evil.example` whose name is re-pointed at 127.0.0.1 can make the
//! browser send requests to the control API that the browser treats as same-origin, so the page
//! may read the answers. The token stops such a page from using the API, but not from reaching
//! `/dashboard` and `/metrics`, and a rebinding page that ever learns the token (the dashboard
//! URL carries it in its fragment) could use everything. Every such request names the attacker's
//! host in its `Host` header; the API answers only requests whose `Host` is a loopback address
//! or `localhost` (any port), and a missing `Host` (HTTP/1.0 clients; every browser sends one).

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// Whether a `Host` header value names this machine's loopback interface.
pub(super) fn is_local_host(host: &str) -> bool {
    let host = host.trim();
    // `[::1]:8080`, `[::1]`, `127.0.0.1:8080`, `localhost`.
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inside, port)) if port.is_empty() || port.starts_with(':') => inside,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
            Some(_) => return false,
            None => host,
        }
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Refuses (421 Misdirected Request) a request whose `Host` is not local.
pub(super) async fn check(req: Request, next: Next) -> Response {
    match req.headers().get(header::HOST).map(|v| v.to_str()) {
        None => next.run(req).await,
        Some(Ok(h)) if is_local_host(h) => next.run(req).await,
        Some(_) => ApiError(
            StatusCode::MISDIRECTED_REQUEST,
            "the control API answers only requests for a loopback host (Host: 127.0.0.1 or localhost)"
                .into(),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_are_local() {
        for h in [
            "127.0.0.1:4001",
            "127.0.0.1",
            "localhost:80",
            "LOCALHOST",
            "[::1]:9",
            "[::1]",
            "127.1.2.3:5",
        ] {
            assert!(is_local_host(h), "{h}");
        }
        for h in [
            "evil.example:4001",
            "evil.example",
            "10.0.0.1:80",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "[::1]x",
            "[2001:db8::1]:80",
            "localhost:80x",
            "",
        ] {
            assert!(!is_local_host(h), "{h}");
        }
    }
}
