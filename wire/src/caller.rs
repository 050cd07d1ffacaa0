//! [`Caller`]: either client behind the four Lars calls, for programs that let their user pick
//! the classic per-call protocol ([`Client`]) or the fast path ([`FastClient`]) at run time,
//! such as `lars simulator --fast` and the convergence benchmark. Owns nothing but the choice;
//! every call goes to the chosen client unchanged.

use crate::{Client, ClientConfig, ClientError, FastClient, FastConfig, HostAddr};

/// A classic or a fast-path client, chosen when it is made.
pub enum Caller {
    /// One datagram per call ([`Client`]).
    Classic(Box<Client>),
    /// Picks from route views held in the process, reports in batches ([`FastClient`]).
    Fast(Box<FastClient>),
}

impl Caller {
    /// A client of the agent `config` names: the fast path when `fast`, with the default fast
    /// settings, else the classic one.
    pub fn new(config: ClientConfig, fast: bool) -> Result<Caller, ClientError> {
        Ok(if fast {
            Caller::Fast(Box::new(FastClient::new(FastConfig {
                client: config,
                ..FastConfig::default()
            })?))
        } else {
            Caller::Classic(Box::new(Client::new(config)?))
        })
    }

    /// `"fast"` or `"classic"`, as the tools print it.
    pub fn name(&self) -> &'static str {
        match self {
            Caller::Classic(_) => "classic",
            Caller::Fast(_) => "fast",
        }
    }

    /// [`Client::reg_init`] / [`FastClient::reg_init`].
    pub fn reg_init(&mut self, modid: i32, cmdid: i32) -> Result<Vec<HostAddr>, ClientError> {
        match self {
            Caller::Classic(c) => c.reg_init(modid, cmdid),
            Caller::Fast(c) => c.reg_init(modid, cmdid),
        }
    }

    /// [`Client::get_host`] / [`FastClient::get_host`].
    pub fn get_host(&mut self, modid: i32, cmdid: i32) -> Result<HostAddr, ClientError> {
        match self {
            Caller::Classic(c) => c.get_host(modid, cmdid),
            Caller::Fast(c) => c.get_host(modid, cmdid),
        }
    }

    /// [`Client::report`] / [`FastClient::report`].
    pub fn report(
        &mut self,
        modid: i32,
        cmdid: i32,
        host: HostAddr,
        retcode: i32,
    ) -> Result<(), ClientError> {
        match self {
            Caller::Classic(c) => c.report(modid, cmdid, host, retcode),
            Caller::Fast(c) => c.report(modid, cmdid, host, retcode),
        }
    }

    /// [`Client::get_route`] / [`FastClient::get_route`].
    pub fn get_route(&mut self, modid: i32, cmdid: i32) -> Result<Vec<HostAddr>, ClientError> {
        match self {
            Caller::Classic(c) => c.get_route(modid, cmdid),
            Caller::Fast(c) => c.get_route(modid, cmdid),
        }
    }
}
