//! Route administration against the store: each edit is one transaction that also bumps the
//! route version and logs a `RouteChange`, which is how lars-dns learns to push it. Prints what
//! happened in a line a person reads at a glance. Also names modules and commands
//! (`lars route name`, larsWeb's `ModIDConfig`/`CmdIDConfig`), and `lars route list` shows the
//! names. Works on an existing Lars database only (see [`crate::store`]): a missing one, or one
//! without the route tables, is an error pointing to `lars init`.

use crate::store::open_routes;
use anyhow::Context;
use lars_store::{EditOutcome, NameChange, Names, Store};
use lars_wire::{HostAddr, RouteKey};
use std::net::Ipv4Addr;

fn version_note(outcome: &EditOutcome) -> String {
    match outcome.version {
        Some(v) => format!(" (route version {v})"),
        None => String::new(),
    }
}

/// `lars route add`.
pub async fn add(
    url: Option<&str>,
    modid: i32,
    cmdid: i32,
    ip: Ipv4Addr,
    port: u16,
) -> anyhow::Result<()> {
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
    url: Option<&str>,
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
pub async fn del_route(url: Option<&str>, modid: i32, cmdid: i32) -> anyhow::Result<()> {
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
pub async fn list(url: Option<&str>, modid: Option<i32>, cmdid: Option<i32>) -> anyhow::Result<()> {
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
    let names = names_or_none(&store).await;
    print!("{}", format_routes(&routes, &names));
    Ok(())
}

/// `lars route name MODID [CMDID] NAME`: names the module, or with `cmdid` the command (in every
/// module: Lars keys command names by cmdid alone).
pub async fn name(
    url: Option<&str>,
    modid: i32,
    cmdid: Option<i32>,
    name: &str,
) -> anyhow::Result<()> {
    let store = open_routes(url).await?;
    let (what, change) = match cmdid {
        None => (
            format!("module {modid}"),
            store
                .set_module_name(modid, name)
                .await
                .with_context(|| format!("naming module {modid}"))?,
        ),
        Some(cmdid) => (
            format!("command {cmdid}"),
            store
                .set_command_name(cmdid, name)
                .await
                .with_context(|| format!("naming command {cmdid}"))?,
        ),
    };
    let name = name.trim();
    match change {
        NameChange::Added => println!("named {what} \"{name}\""),
        NameChange::Renamed { from } => {
            println!(
                "renamed {what} from \"{}\" to \"{name}\"",
                from.escape_debug()
            )
        }
        NameChange::Unchanged => println!("{what} is already named \"{name}\"; nothing changed"),
    }
    if cmdid.is_some() {
        println!("(a command's name holds in every module, as Lars' CmdIDConfig keys it by cmdid)");
    }
    Ok(())
}

/// The names of `store`, or none with a warning on stderr: names only label what is printed,
/// so a store whose names cannot be read still lists its routes and statistics.
pub async fn names_or_none(store: &Store) -> Names {
    match store.load_names().await {
        Ok(names) => {
            for rejected in &names.rejected {
                eprintln!("lars: skipping bad row: {rejected}");
            }
            names
        }
        Err(e) => {
            eprintln!("lars: showing no names: cannot read them: {e}");
            Names::default()
        }
    }
}

/// The route table as text: a header, then one line per host, grouped by route, each with the
/// route's name (see [`Names::label`]) when it has one.
pub fn format_routes(routes: &[(RouteKey, Vec<HostAddr>)], names: &Names) -> String {
    let mut out = format!(
        "{:>11} {:>11}  {:<21}  {}\n",
        "MODID", "CMDID", "HOST", "NAME"
    );
    let mut hosts = 0;
    for (key, list) in routes {
        let mut list = list.clone();
        list.sort();
        let label = names.label(*key).unwrap_or_default();
        for host in list {
            let line = format!(
                "{:>11} {:>11}  {:<21}  {label}",
                key.modid,
                key.cmdid,
                host.to_string()
            );
            out.push_str(line.trim_end());
            out.push('\n');
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
        let text = format_routes(&routes, &Names::default());
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].ends_with("10.0.0.1:8080"));
        assert!(lines[2].ends_with("192.168.0.2:80"));
        assert_eq!(lines[3], "1 route(s), 2 host(s)");

        let mut names = Names::default();
        names.modules.insert(1, "users".into());
        let text = format_routes(&routes, &names);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with("NAME"), "{text}");
        let first: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            first,
            ["1", "2", "10.0.0.1:8080", "users/cmdid", "2"],
            "{text}"
        );
        assert!(lines[2].ends_with("users/cmdid 2"), "{text}");
    }
}
