//! A route's page: its hosts with a remove button each, the health table (refreshed by
//! `console.js` every few seconds), the add-host form and the remove-route form.

use super::{
    Viewer, csrf_field, host_fields, input_errors, page, percent, route_label, route_path,
};
use crate::forms::{EditForm, InputError};
use crate::health::HostHealth;
use lars_wire::{HostAddr, RouteKey};
use maud::{Markup, html};

/// What a route page shows.
#[derive(Debug)]
pub struct RouteView<'a> {
    /// The route.
    pub key: RouteKey,
    /// Its name, if it has one.
    pub name: Option<String>,
    /// Its hosts, in `RouteData` order.
    pub hosts: &'a [HostAddr],
    /// Its health rows.
    pub health: &'a [HostHealth],
    /// Seconds between refreshes of the health table.
    pub refresh_secs: u64,
    /// The stale limit, for the legend.
    pub stale_after_secs: u64,
}

/// The route page; `form`, `errors` and `problem` are those of a refused edit.
pub fn route(
    viewer: &Viewer,
    view: &RouteView<'_>,
    form: &EditForm,
    errors: &[InputError],
    problem: Option<&str>,
) -> Markup {
    let key = view.key;
    let title = format!("Route {}/{}", key.modid, key.cmdid);
    let fixed = EditForm {
        modid: key.modid.to_string(),
        cmdid: key.cmdid.to_string(),
        ..form.clone()
    };
    page(
        &title,
        Some(viewer),
        html! {
            p { (route_label(key, view.name.as_deref())) }
            (input_errors(errors, problem))
            h2 { "Hosts" }
            @if view.hosts.is_empty() { p #no-hosts { "This route has no hosts." } }
            ul #hosts {
                @for host in view.hosts {
                    li {
                        span.host { (host.to_string()) }
                        form.inline method="post" action="/edit/remove-host" {
                            (csrf_field(viewer))
                            input type="hidden" name="modid" value=(key.modid);
                            input type="hidden" name="cmdid" value=(key.cmdid);
                            input type="hidden" name="ip" value=(host.ip.to_string());
                            input type="hidden" name="port" value=(host.port);
                            button type="submit" { "Remove" }
                        }
                    }
                }
            }
            h3 { "Add a host" }
            form.edit method="post" action="/edit/add-host" {
                (csrf_field(viewer))
                (host_fields(&fixed, true))
                button type="submit" { "Add host" }
            }
            h2 { "Health" }
            p.legend {
                "What each caller's agent last reported; rows older than " (view.stale_after_secs)
                " s are stale. Refreshes every " (view.refresh_secs) " s."
            }
            div #health data-refresh=(view.refresh_secs) data-refresh-url=(route_path(key)) {
                (health_table(view.health))
            }
            h2 { "Remove the route" }
            form.edit method="post" action="/edit/remove-route" {
                (csrf_field(viewer))
                input type="hidden" name="modid" value=(key.modid);
                input type="hidden" name="cmdid" value=(key.cmdid);
                button.danger type="submit" { "Remove every host of " (title) }
            }
        },
    )
}

/// The health table.
fn health_table(rows: &[HostHealth]) -> Markup {
    html! {
        @if rows.is_empty() { p #no-health { "No caller has reported on this route." } }
        @else {
            table {
                thead { tr { th { "host" } th { "caller" } th { "succ" } th { "err" } th { "error rate" } th { "state" } th { "age" } } }
                tbody {
                    @for h in rows {
                        tr class={ "health-row " (row_class(h)) } data-host=(h.host.to_string()) {
                            td { (h.host.to_string()) @if !h.in_route { " (not in the route)" } }
                            td { (h.caller.to_string()) }
                            td { (h.succ) }
                            td { (h.err) }
                            td { (percent(h.err_rate)) }
                            td.state { @if h.overload { "overloaded" } @else { "idle" } }
                            td { (h.age_secs) " s" @if h.stale { " (stale)" } }
                        }
                    }
                }
            }
        }
    }
}

fn row_class(h: &HostHealth) -> &'static str {
    match (h.stale, h.overload) {
        (true, _) => "stale",
        (false, true) => "overloaded",
        (false, false) => "fresh",
    }
}
