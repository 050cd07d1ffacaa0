//! The console's HTML, server-rendered with `maud` (escaped by default): the page frame and
//! one module per page. Every function here takes what was loaded and returns markup; none
//! touches the store, the clock or a socket (the handlers in `server.rs` do), so what a page
//! shows for given rows is plain to test.

pub mod changes;
pub mod login;
pub mod overview;
pub mod route;
pub mod services;

use crate::forms::InputError;
use lars_wire::RouteKey;
use maud::{DOCTYPE, Markup, html};

/// Who is looking at a page: their name and the CSRF token every form carries.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// The operator's name.
    pub user: String,
    /// The session's CSRF token.
    pub csrf: String,
}

/// A whole page: head, navigation (with the logout form when someone is logged in), `body`.
pub fn page(title: &str, viewer: Option<&Viewer>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Lars console" }
                link rel="stylesheet" href="/static/console.css";
                script src="/static/console.js" defer {}
            }
            body {
                header {
                    strong { "Lars console" }
                    @if let Some(viewer) = viewer {
                        nav {
                            a href="/" { "Overview" }
                            a href="/changes" { "Changes" }
                            a href="/services" { "Services" }
                        }
                        form.logout method="post" action="/logout" {
                            (csrf_field(viewer))
                            span { (viewer.user) }
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// The hidden CSRF field of a form.
pub fn csrf_field(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(viewer.csrf); }
}

/// The problems of a refused form, or nothing.
pub fn input_errors(errors: &[InputError], problem: Option<&str>) -> Markup {
    html! {
        @if !errors.is_empty() || problem.is_some() {
            div.errors role="alert" {
                p { "Nothing was changed:" }
                ul {
                    @for e in errors { li.error { (e.to_string()) } }
                    @if let Some(p) = problem { li.error { (p) } }
                }
            }
        }
    }
}

/// A route as the pages name it: `modid/cmdid`, with its name when it has one.
pub fn route_label(key: RouteKey, name: Option<&str>) -> Markup {
    html! {
        span.key { (key.modid) "/" (key.cmdid) }
        @if let Some(name) = name { " " span.name { (name) } }
    }
}

/// The path of a route's page.
pub fn route_path(key: RouteKey) -> String {
    format!("/route/{}/{}", key.modid, key.cmdid)
}

/// An error rate as a percentage, or a dash without calls.
pub fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "–".to_string(), |r| format!("{:.1} %", r * 100.0))
}

/// A time as an HTTP date, from Unix seconds (0 for a negative one).
pub fn when(unix_secs: i64) -> String {
    let secs = u64::try_from(unix_secs).unwrap_or(0);
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// The add-host fields (modid, cmdid, IP address, port) filled with `values`.
pub fn host_fields(values: &crate::forms::EditForm, key_fixed: bool) -> Markup {
    html! {
        @if key_fixed {
            input type="hidden" name="modid" value=(values.modid);
            input type="hidden" name="cmdid" value=(values.cmdid);
        } @else {
            label { "modid " input name="modid" value=(values.modid) size="10" required; }
            label { "cmdid " input name="cmdid" value=(values.cmdid) size="10" required; }
        }
        label { "IP address " input name="ip" value=(values.ip) size="15" placeholder="10.0.0.1" required; }
        label { "port " input name="port" value=(values.port) size="6" placeholder="9000" required; }
    }
}
