//! The dashboard page; its views and the activity feed are in [`crate::view::dashboard`], the DHT
//! size estimate in [`crate::net::dht`].
//!
//! `GET /dashboard` (public, no data in it) serves one static HTML page; the page reads the API
//! token from its URL fragment (`/dashboard#token=…`, printed by `warren dashboard`) and polls
//! `GET /v1/dashboard` (token required, like every `/v1` call) every two seconds. A fragment is
//! never sent to the server, never logged, and stays out of `Referer` headers, so the token is
//! only ever sent as the `Authorization` header, exactly as the CLI sends it.
//!
//! Jobs and circuits are read from the inference and onion services each time `/v1/dashboard`
//! answers (`api::activity`); storage refusals come from [`crate::view::Activity`], the feed the mesh and the
//! API fill. The page shows "none yet" for an empty list.

/// The page, served as is.
pub const PAGE_HTML: &str = include_str!("dashboard.html");
