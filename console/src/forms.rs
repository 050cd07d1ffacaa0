//! What the console's forms send, checked before anything is written.
//!
//! Owns the form bodies ([`EditForm`], [`LoginForm`]) and their validation: a modid or cmdid is
//! an integer from 0 to 2147483647, an address a dotted IPv4 address, a port 1 to 65535. Every
//! problem is an [`InputError`] naming the field and the value as typed, shown on the page; a
//! form with any problem writes nothing. Pure.

use lars_wire::{HostAddr, RouteKey};
use serde::Deserialize;
use std::net::Ipv4Addr;

/// One problem with one field of a form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} `{value}`: {reason}")]
pub struct InputError {
    /// The field, as the page labels it.
    pub field: &'static str,
    /// What was typed.
    pub value: String,
    /// Why it cannot be used.
    pub reason: &'static str,
}

/// The route edit forms: add host, remove host (all four fields), remove route (the key only).
/// Every field is text, so a missing or malformed one is reported by [`EditForm::key`] and
/// [`EditForm::key_and_host`] instead of refused without a word.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct EditForm {
    /// The session's CSRF token.
    pub csrf: String,
    /// The route's modid.
    pub modid: String,
    /// The route's cmdid.
    pub cmdid: String,
    /// The host's IPv4 address.
    pub ip: String,
    /// The host's port.
    pub port: String,
}

/// The login form.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LoginForm {
    /// The login page's CSRF token (the one in its cookie).
    pub csrf: String,
    /// The operator's name.
    pub user: String,
    /// The password or the one-time token.
    pub password: String,
}

/// The search of the overview page.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Search {
    /// A modid, `modid/cmdid`, or part of a name.
    pub q: String,
}

fn bad(field: &'static str, value: &str, reason: &'static str) -> InputError {
    InputError {
        field,
        value: value.to_string(),
        reason,
    }
}

/// A modid or cmdid: an integer from 0 to `i32::MAX`.
pub fn parse_id(field: &'static str, value: &str) -> Result<i32, InputError> {
    let text = value.trim();
    if text.is_empty() {
        return Err(bad(field, value, "is required"));
    }
    match text.parse::<i64>() {
        Ok(v) if (0..=i64::from(i32::MAX)).contains(&v) => Ok(v as i32),
        Ok(_) => Err(bad(field, value, "must be from 0 to 2147483647")),
        Err(_) => Err(bad(
            field,
            value,
            "must be a whole number from 0 to 2147483647",
        )),
    }
}

/// A dotted IPv4 address.
pub fn parse_ip(value: &str) -> Result<Ipv4Addr, InputError> {
    let text = value.trim();
    if text.is_empty() {
        return Err(bad("IP address", value, "is required"));
    }
    text.parse()
        .map_err(|_| bad("IP address", value, "is not an IPv4 address like 10.0.0.1"))
}

/// A port from 1 to 65535.
pub fn parse_port(value: &str) -> Result<u16, InputError> {
    let text = value.trim();
    if text.is_empty() {
        return Err(bad("port", value, "is required"));
    }
    match text.parse::<u64>() {
        Ok(p) if (1..=65_535).contains(&p) => Ok(p as u16),
        Ok(_) => Err(bad("port", value, "must be from 1 to 65535")),
        Err(_) => Err(bad("port", value, "must be a whole number from 1 to 65535")),
    }
}

impl EditForm {
    /// The route key, or every problem with it.
    pub fn key(&self) -> Result<RouteKey, Vec<InputError>> {
        match (
            parse_id("modid", &self.modid),
            parse_id("cmdid", &self.cmdid),
        ) {
            (Ok(m), Ok(c)) => Ok(RouteKey::new(m, c)),
            (m, c) => Err([m.err(), c.err()].into_iter().flatten().collect()),
        }
    }

    /// The route key and host, or every problem with them.
    pub fn key_and_host(&self) -> Result<(RouteKey, HostAddr), Vec<InputError>> {
        let key = self.key();
        let ip = parse_ip(&self.ip);
        let port = parse_port(&self.port);
        match (key, ip, port) {
            (Ok(key), Ok(ip), Ok(port)) => Ok((key, HostAddr::new(ip, port))),
            (key, ip, port) => {
                let mut errors = key.err().unwrap_or_default();
                errors.extend(ip.err());
                errors.extend(port.err());
                Err(errors)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(modid: &str, cmdid: &str, ip: &str, port: &str) -> EditForm {
        EditForm {
            csrf: String::new(),
            modid: modid.into(),
            cmdid: cmdid.into(),
            ip: ip.into(),
            port: port.into(),
        }
    }

    #[test]
    fn a_good_form_gives_its_key_and_host() {
        let (key, host) = form(" 1", "2 ", "10.0.0.1", "9000").key_and_host().unwrap();
        assert_eq!(key, RouteKey::new(1, 2));
        assert_eq!(host, HostAddr::new(Ipv4Addr::new(10, 0, 0, 1), 9000));
    }

    #[test]
    fn every_bad_field_is_named_with_what_was_typed() {
        let errors = form("-1", "x", "300.1.1.1", "70000")
            .key_and_host()
            .unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "modid `-1`: must be from 0 to 2147483647",
                "cmdid `x`: must be a whole number from 0 to 2147483647",
                "IP address `300.1.1.1`: is not an IPv4 address like 10.0.0.1",
                "port `70000`: must be from 1 to 65535",
            ]
        );
        assert_eq!(form("", "1", "", "0").key_and_host().unwrap_err().len(), 3);
        assert!(form("2147483648", "1", "", "").key().is_err());
    }
}
