//! IPv4 addresses as Lars carries them: the 32-bit address in host order
//! (`a.b.c.d` = `a<<24|b<<16|c<<8|d`), stored in an `int32` on the wire (so addresses from
//! 128.0.0.0 up are negative) and as an unsigned int in the database.

use std::net::Ipv4Addr;

/// The wire form (`int32`) of an address.
pub fn ip_to_wire(addr: Ipv4Addr) -> i32 {
    u32::from(addr) as i32
}

/// The address a wire `int32` stands for.
pub fn ip_from_wire(ip: i32) -> Ipv4Addr {
    Ipv4Addr::from(ip as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_from_128_up_are_negative_on_the_wire() {
        let addr = Ipv4Addr::new(192, 168, 1, 10);
        assert_eq!(ip_to_wire(addr), 0xC0A8_010Au32 as i32);
        assert!(ip_to_wire(addr) < 0);
        assert_eq!(ip_from_wire(ip_to_wire(addr)), addr);
        assert_eq!(ip_to_wire(Ipv4Addr::new(127, 0, 0, 1)), 0x7F00_0001);
    }
}
