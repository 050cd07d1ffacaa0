//! The login page.

use super::page;
use maud::{Markup, html};

/// The login form with the login CSRF token `csrf`, `problem` above it when the last try failed.
pub fn login(csrf: &str, user: &str, problem: Option<&str>) -> Markup {
    page(
        "Log in",
        None,
        html! {
            @if let Some(problem) = problem { p.error role="alert" { (problem) } }
            form method="post" action="/login" {
                input type="hidden" name="csrf" value=(csrf);
                label { "user " input name="user" value=(user) autocomplete="username" required; }
                label { "password " input type="password" name="password" autocomplete="current-password" required; }
                button type="submit" { "Log in" }
            }
        },
    )
}
