//! Parsers for command-line values that need more than `FromStr`: ports in 1..65535 and IPv4
//! addresses, with errors that say what was wrong.

use std::net::Ipv4Addr;

/// A port in 1..=65535.
pub fn parse_port(value: &str) -> Result<u16, String> {
    match value.parse::<u32>() {
        Ok(port @ 1..=65535) => Ok(port as u16),
        Ok(port) => Err(format!("port {port} is outside 1..65535")),
        Err(_) => Err(format!("port `{value}` is not a number in 1..65535")),
    }
}

/// A dotted IPv4 address.
pub fn parse_ip(value: &str) -> Result<Ipv4Addr, String> {
    value
        .parse()
        .map_err(|_| format!("`{value}` is not an IPv4 address (expected a.b.c.d)"))
}

/// A `modid` or `cmdid`: an integer in `0..=2147483647` (no route has a negative id).
pub fn parse_id(value: &str) -> Result<i32, String> {
    match value.parse::<i64>() {
        Ok(id @ 0..=0x7fff_ffff) => Ok(id as i32),
        Ok(id) if id < 0 => Err(format!(
            "id {id} is negative; a modid or cmdid is in 0..={} (no route has a negative id)",
            i32::MAX
        )),
        _ => Err(format!(
            "id `{value}` is not an integer in 0..={}",
            i32::MAX
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_outside_1_to_65535_are_refused() {
        assert_eq!(parse_port("80"), Ok(80));
        assert_eq!(parse_port("65535"), Ok(65535));
        assert!(parse_port("0").unwrap_err().contains("outside 1..65535"));
        assert!(
            parse_port("65536")
                .unwrap_err()
                .contains("outside 1..65535")
        );
        assert!(parse_port("-1").is_err());
        assert!(parse_port("http").is_err());
    }

    #[test]
    fn ips_must_be_dotted_ipv4() {
        assert_eq!(parse_ip("10.0.0.1"), Ok(Ipv4Addr::new(10, 0, 0, 1)));
        assert!(parse_ip("10.0.0.256").is_err());
        assert!(parse_ip("::1").is_err());
        assert!(parse_ip("host").is_err());
    }

    #[test]
    fn ids_must_be_non_negative_and_fit_in_i32() {
        assert_eq!(parse_id("0"), Ok(0));
        assert_eq!(parse_id("2147483647"), Ok(i32::MAX));
        assert!(parse_id("-5").unwrap_err().contains("id -5 is negative"));
        assert!(
            parse_id("2147483648")
                .unwrap_err()
                .contains("0..=2147483647")
        );
        assert!(parse_id("x").unwrap_err().contains("`x`"));
    }
}
