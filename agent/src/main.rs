//! `lars-agent` command line: loads the config, starts the agent, serves until SIGINT/SIGTERM.

use anyhow::Context;
use argh::FromArgs;
use lars_agent::{Agent, AgentConfig};
use lars_service::signals::BlockingStopSignals;
use std::path::PathBuf;
use tracing::info;

/// lars-agent: tells local callers which host to call for a (modid, cmdid), over UDP.
///
/// Runs one worker per CPU it may use (see `taskset`), pulls routes from lars-dns and uploads
/// call statistics to lars-reporter. Its counters are served by its metrics endpoint on `[agent]
/// stats_addr` (read them with `lars agent-stats`). Logs go to stderr; RUST_LOG sets the level.
#[derive(FromArgs)]
struct Args {
    /// config file (TOML, see conf/lars_agent.toml); built-in defaults when absent
    #[argh(option)]
    config: Option<PathBuf>,
    /// directory of the agent's route cache, instead of `[agent] state_dir` ("" turns it off)
    #[argh(option)]
    state_dir: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args: Args = argh::from_env();
    lars_service::logging::init();
    let mut config = match &args.config {
        Some(path) => AgentConfig::load(path)?,
        None => AgentConfig::default(),
    };
    if let Some(dir) = args.state_dir {
        config.agent.state_dir = dir;
    }
    // The signal handlers go in before the agent starts, so a SIGTERM or SIGINT that comes as
    // soon as it says it is serving stops it cleanly rather than killing it.
    let signals = BlockingStopSignals::install().context("starting the signal runtime")?;
    let agent = Agent::start(&config).context("starting lars-agent")?;
    let stats = agent
        .stats_addr()
        .map_or_else(|| "off".to_string(), |a| a.to_string());
    info!(
        ip = %config.agent.ip,
        base_port = agent.base_port(),
        shards = config.agent.shards,
        workers = agent.workers(),
        io = %agent.driver(),
        stats = %stats,
        "lars-agent serving"
    );
    signals.wait();
    agent.stop();
    Ok(())
}
