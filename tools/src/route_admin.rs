//! Route administration against the store: each edit is one transaction that also bumps the
//! route version and logs a `RouteChange`, which is how lars-dns learns to push it. Prints what
//! happened in a line a person reads at a glance. Works on an existing Lars database only (see
//! [`crate::store`]): a missing one, or one without the route tables, is an error pointing to
//! `lars init`.

use crate::store::open_routes;
use anyhow::Context;
use lars_store::EditOutcome;
use lars_wire::{HostAddr, RouteKey};
use std::net::Ipv4Addr;

fn version_note(outcome: &EditOutcome) -> String {
    match outcome.version {
        Some(v) => format!(" (route version {v})"),
        None => String::new(),
    }
}

/// `lars route add`.
pub async fn add(url: &str, modid: i32, cmdid: i32, ip: Ipv4Addr, port: u16) -> anyhow::Result<()> {
    let store = open_routes(url).await?;
    let host = HostAddr::new(ip, port);
    let outcome = store
        .add_host(RouteKey::new(modid, cmdid), host)
        .await
        .with_context(|| format!("adding {ip}:{port} to route ({modid}, {cmdid})"))?;
    if outcome.rows_changed == 0 {
        println!("{ip}:{port} is already in route ({modid}, {cmdid}); nothing changed");
    } else {
        println!(
            "added {ip}:{port} to route ({modid}, {cmdid}){}",
            version_note(&outcome)
        );
    }
    Ok(())
}

/// `lars route del MODID CMDID IP PORT`.
pub async fn del_host(
    url: &str,
    modid: i32,
    cmdid: i32,
    ip: Ipv4Addr,
    port: u16,
) -> anyhow::Result<()> {
    let store = open_routes(url).await?;
    let outcome = store
        .remove_host(RouteKey::new(modid, cmdid), HostAddr::new(ip, port))
        .await
        .with_context(|| format!("removing {ip}:{port} from route ({modid}, {cmdid})"))?;
    if outcome.rows_changed == 0 {
        println!("{ip}:{port} is not in route ({modid}, {cmdid}); nothing changed");
    } else {
        println!(
            "removed {ip}:{port} from route ({modid}, {cmdid}){}",
            version_note(&outcome)
        );
    }
    Ok(())
}

/// `lars route del MODID CMDID`.
pub async fn del_route(url: &str, modid: i32, cmdid: i32) -> anyhow::Result<()> {
    let store = open_routes(url).await?;
    let outcome = store
        .remove_route(RouteKey::new(modid, cmdid))
        .await
        .with_context(|| format!("removing route ({modid}, {cmdid})"))?;
    if outcome.rows_changed == 0 {
        println!("route ({modid}, {cmdid}) has no hosts; nothing changed");
    } else {
        println!(
            "removed route ({modid}, {cmdid}) with {} host(s){}",
            outcome.rows_changed,
            version_note(&outcome)
        );
    }
    Ok(())
}

/// `lars route list [MODID [CMDID]]`.
pub async fn list(url: &str, modid: Option<i32>, cmdid: Option<i32>) -> anyhow::Result<()> {
    let store = open_routes(url).await?;
    let load = store.load_routes().await.context("loading routes")?;
    for rejected in &load.rejected {
        eprintln!("lars: skipping bad row: {rejected}");
    }
    let mut routes: Vec<(RouteKey, Vec<HostAddr>)> = load
        .routes
        .into_iter()
        .filter(|(key, _)| modid.is_none_or(|m| key.modid == m))
        .filter(|(key, _)| cmdid.is_none_or(|c| key.cmdid == c))
        .collect();
    routes.sort_by_key(|(key, _)| (key.modid, key.cmdid));
    print!("{}", format_routes(&routes));
    Ok(())
}

/// The route table as text: a header, then one line per host, grouped by route.
pub fn format_routes(routes: &[(RouteKey, Vec<HostAddr>)]) -> String {
    let mut out = format!("{:>11} {:>11}  {}\n", "MODID", "CMDID", "HOST");
    let mut hosts = 0;
    for (key, list) in routes {
        let mut list = list.clone();
        list.sort();
        for host in list {
            out.push_str(&format!("{:>11} {:>11}  {host}\n", key.modid, key.cmdid));
            hosts += 1;
        }
    }
    out.push_str(&format!("{} route(s), {hosts} host(s)\n", routes.len()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_print_dotted_and_counted() {
        let routes = vec![(
            RouteKey::new(1, 2),
            vec![
                HostAddr::new(Ipv4Addr::new(192, 168, 0, 2), 80),
                HostAddr::new(Ipv4Addr::new(10, 0, 0, 1), 8080),
            ],
        )];
        let text = format_routes(&routes);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].ends_with("10.0.0.1:8080"));
        assert!(lines[2].ends_with("192.168.0.2:80"));
        assert_eq!(lines[3], "1 route(s), 2 host(s)");
    }
}
