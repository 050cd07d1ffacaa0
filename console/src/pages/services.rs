//! The Services page: each configured metrics endpoint, up or down, with its counters.

use super::{Viewer, page};
use maud::{Markup, html};

/// What one endpoint answered.
#[derive(Debug, Clone)]
pub struct ServiceState {
    /// The configured name.
    pub name: String,
    /// The configured URL.
    pub url: String,
    /// Its key values (a family's name and its sum over labels), or why it could not be read.
    pub reading: Result<Vec<(String, f64)>, String>,
}

/// The Services page.
pub fn services(viewer: &Viewer, states: &[ServiceState]) -> Markup {
    page(
        "Services",
        Some(viewer),
        html! {
            @if states.is_empty() {
                p { "No service is configured; list them as [[services]] in lars_console.toml." }
            }
            @for s in states {
                section.service {
                    h2 {
                        (s.name) " "
                        @match &s.reading {
                            Ok(_) => span.up { "up" },
                            Err(_) => span.down { "down" },
                        }
                    }
                    p { code { (s.url) } }
                    @match &s.reading {
                        Err(why) => p.error { (why) },
                        Ok(values) => table {
                            tbody {
                                @for (name, value) in values {
                                    tr { td { code { (name) } } td.num { (value) } }
                                }
                            }
                        },
                    }
                }
            }
        },
    )
}
