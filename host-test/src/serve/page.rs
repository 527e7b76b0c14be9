//! The web page the service serves at `/`: one HTML file with its script
//! and style inline (no build step), which reads everything through the
//! API with the token the user gives it (or `#token=` in its address);
//! and the API's OpenAPI description at `/api/openapi.json`.
//!
//! Knows the page; the page knows the API.

use super::http::{reply, Reply};

const PAGE: &str = include_str!("page.html");

/// The API described for clients (OpenAPI 3).
const OPENAPI: &str = include_str!("openapi.json");

pub fn openapi() -> Reply {
    reply(200, "application/json", OPENAPI)
}

pub fn page() -> Reply {
    let mut r = reply(200, "text/html; charset=utf-8", PAGE);
    let csp = "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:";
    r.headers_mut()
        .insert("content-security-policy", csp.parse().expect("header"));
    r
}
