//! The Changes page: the current route version, the `RouteChange` rows newest first, and the
//! console's audit log newest first.

use super::{Viewer, page, route_label, route_path, when};
use crate::names::RouteNames;
use lars_store::{AuditEntry, RouteChangeRow};
use maud::{Markup, html};

/// The Changes page.
pub fn changes(
    viewer: &Viewer,
    version: i64,
    changes: &[RouteChangeRow],
    audit: &[AuditEntry],
    names: &RouteNames,
) -> Markup {
    page(
        "Changes",
        Some(viewer),
        html! {
            p { "Route version " strong #version { (version) } }
            h2 { "Route changes" }
            p.legend { "RouteChange rows, newest first; lars-dns deletes them once every agent has been told." }
            @if changes.is_empty() { p { "No route change is pending." } }
            @else {
                table #route-changes {
                    thead { tr { th { "id" } th { "route" } th { "version" } } }
                    tbody {
                        @for c in changes {
                            tr {
                                td { (c.id) }
                                td { a href=(route_path(c.key)) { (route_label(c.key, names.of(c.key).as_deref())) } }
                                td { (c.version) }
                            }
                        }
                    }
                }
            }
            h2 { "Console audit log" }
            @if audit.is_empty() { p { "No edit has been made in the console." } }
            @else {
                table #audit {
                    thead { tr { th { "when" } th { "who" } th { "from" } th { "what" } } }
                    tbody {
                        @for e in audit {
                            tr {
                                td { (when(e.ts)) }
                                td { (e.who) }
                                td { (e.peer) }
                                td.action { (e.action) }
                            }
                        }
                    }
                }
            }
        },
    )
}
