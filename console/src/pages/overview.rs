//! The overview: every route with its host count, worst fresh error rate and overloaded hosts,
//! unhealthy first; a search; and the form that adds a host to any route (a new route too).

use super::{
    Viewer, csrf_field, host_fields, input_errors, page, percent, route_label, route_path,
};
use crate::forms::{EditForm, InputError};
use crate::health::RouteSummary;
use crate::names::RouteNames;
use maud::{Markup, html};

/// Whether `summary` matches the search `q`: empty matches all; `M` a modid, `M/C` a key,
/// anything else part of a name (any letter case).
pub fn matches(q: &str, summary: &RouteSummary, names: &RouteNames) -> bool {
    let q = q.trim();
    if q.is_empty() {
        return true;
    }
    let key = summary.key;
    if let Some((m, c)) = q.split_once('/') {
        return m.trim() == key.modid.to_string() && c.trim() == key.cmdid.to_string();
    }
    if q == key.modid.to_string() || q == key.cmdid.to_string() {
        return true;
    }
    names
        .of(key)
        .is_some_and(|name| name.to_lowercase().contains(&q.to_lowercase()))
}

/// The overview page.
pub fn overview(
    viewer: &Viewer,
    q: &str,
    routes: &[RouteSummary],
    names: &RouteNames,
    form: &EditForm,
    errors: &[InputError],
    problem: Option<&str>,
) -> Markup {
    let shown: Vec<&RouteSummary> = routes.iter().filter(|r| matches(q, r, names)).collect();
    page(
        "Overview",
        Some(viewer),
        html! {
            form.search method="get" action="/" {
                label { "search " input name="q" value=(q) placeholder="modid, modid/cmdid or name"; }
                button type="submit" { "Search" }
            }
            p { (shown.len()) " of " (routes.len()) " routes" }
            table #routes {
                thead { tr { th { "route" } th { "hosts" } th { "worst error rate" } th { "overloaded hosts" } th { "stale rows" } } }
                tbody {
                    @for r in &shown {
                        tr class=(if r.unhealthy() { "unhealthy" } else { "healthy" }) {
                            td { a href=(route_path(r.key)) { (route_label(r.key, names.of(r.key).as_deref())) } }
                            td { (r.hosts) }
                            td { (percent(r.worst_err_rate)) }
                            td { (r.overloaded) }
                            td { (r.stale_rows) }
                        }
                    }
                }
            }
            h2 { "Add a host" }
            (input_errors(errors, problem))
            form.edit method="post" action="/edit/add-host" {
                (csrf_field(viewer))
                (host_fields(form, false))
                button type="submit" { "Add host" }
            }
        },
    )
}
