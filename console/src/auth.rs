//! Who may use the console: the operator credential, sessions, CSRF tokens and the login rate
//! limit.
//!
//! Owns [`Credential`] (the password, only ever as an argon2 hash: from the config, or hashed at
//! start from an environment variable, or a one-time token made at start when neither is set),
//! [`Sessions`] (random ids, each with its own CSRF token and an expiry) and [`LoginLimiter`]
//! (attempts per peer and over all peers in a fixed window). The session table and the limiter
//! take the time as an argument and own no clock, so their rules are tested exactly; the server
//! (`server.rs`) holds them behind a mutex, locked only to look up or change an entry, and checks
//! passwords on the blocking pool, since argon2 is deliberately slow.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Bytes of randomness in a session id, a CSRF token and the one-time token: 128 bits, beyond
/// guessing.
const TOKEN_BYTES: usize = 16;

/// Most sessions held at once; logging in past it drops the one closest to expiry. A few
/// operators use a console; this only bounds the memory a login loop could take.
pub const MAX_SESSIONS: usize = 1_000;

/// The window of the login rate limit.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(60);

/// Login attempts one peer address may make per [`LOGIN_WINDOW`]: enough for typos, far too few
/// to guess a password.
pub const LOGIN_ATTEMPTS_PER_PEER: u32 = 5;

/// Login attempts all peers together may make per [`LOGIN_WINDOW`], so many addresses cannot
/// add up to a guessing rate either (and argon2 cannot be used to load the host).
pub const LOGIN_ATTEMPTS_GLOBAL: u32 = 30;

/// Why a password setting cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The hash in the config is not an argon2 PHC string.
    #[error("the password hash is not an argon2 PHC string: {0}")]
    BadHash(String),
    /// Hashing failed (argon2 refused its parameters; does not happen with the defaults).
    #[error("cannot hash the password: {0}")]
    Hash(String),
    /// The environment variable holds no usable text.
    #[error("environment variable {var} is set but empty or not UTF-8")]
    BadEnv {
        /// The variable.
        var: String,
    },
}

/// Checks that `hash` is an argon2 PHC string.
pub fn parse_hash(hash: &str) -> Result<(), CredentialError> {
    let parsed = PasswordHash::new(hash).map_err(|e| CredentialError::BadHash(e.to_string()))?;
    if !parsed.algorithm.as_str().starts_with("argon2") {
        return Err(CredentialError::BadHash(format!(
            "algorithm {} is not argon2",
            parsed.algorithm
        )));
    }
    Ok(())
}

/// The argon2id PHC string of `password`, with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, CredentialError> {
    let mut salt = [0u8; TOKEN_BYTES];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| CredentialError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CredentialError::Hash(e.to_string()))
}

/// A random token as lowercase hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `a` and `b` are equal, in time that depends only on their lengths.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Where the operator credential came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialSource {
    /// `[console] password_hash`.
    ConfigHash,
    /// The environment variable `[console] password_env` names.
    Environment,
    /// Neither was set: a one-time token made at start, valid until the console stops.
    OneTimeToken,
}

/// The operator credential: a user name and an argon2 hash, never the plain password.
#[derive(Debug, Clone)]
pub struct Credential {
    user: String,
    hash: String,
    source: CredentialSource,
}

impl Credential {
    /// The credential from the config's hash, else from the environment variable `env_var`
    /// (read through `env`, hashed, the plain text dropped), else a new one-time token, which
    /// is returned too so it can be shown once.
    pub fn resolve(
        user: &str,
        config_hash: &str,
        env_var: &str,
        env: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<(Credential, Option<String>), CredentialError> {
        let make = |hash, source| Credential {
            user: user.to_string(),
            hash,
            source,
        };
        if !config_hash.is_empty() {
            parse_hash(config_hash)?;
            return Ok((
                make(config_hash.to_string(), CredentialSource::ConfigHash),
                None,
            ));
        }
        if !env_var.is_empty()
            && let Some(value) = env(env_var)
        {
            let plain = value
                .into_string()
                .ok()
                .filter(|p| !p.is_empty())
                .ok_or_else(|| CredentialError::BadEnv {
                    var: env_var.to_string(),
                })?;
            let hash = hash_password(&plain)?;
            return Ok((make(hash, CredentialSource::Environment), None));
        }
        let token = random_token();
        let hash = hash_password(&token)?;
        Ok((make(hash, CredentialSource::OneTimeToken), Some(token)))
    }

    /// Where it came from.
    pub fn source(&self) -> CredentialSource {
        self.source
    }

    /// The operator's name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Whether `user` and `password` match. Slow on purpose (argon2): call it off the runtime's
    /// worker threads.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let Ok(hash) = PasswordHash::new(&self.hash) else {
            return false;
        };
        let password_ok = Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok();
        password_ok && same_token(user, &self.user)
    }
}

/// One logged-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who logged in.
    pub user: String,
    /// The token every form of this session carries.
    pub csrf: String,
    /// When it ends.
    pub expires: Instant,
}

/// Every session, by id.
#[derive(Debug)]
pub struct Sessions {
    ttl: Duration,
    by_id: HashMap<String, Session>,
}

impl Sessions {
    /// An empty table whose sessions live `ttl`.
    pub fn new(ttl: Duration) -> Sessions {
        Sessions {
            ttl,
            by_id: HashMap::new(),
        }
    }

    /// A new session for `user` at `now`; returns its id. Expired sessions are dropped first,
    /// and at [`MAX_SESSIONS`] the one closest to expiry.
    pub fn create(&mut self, user: &str, now: Instant) -> String {
        self.by_id.retain(|_, s| s.expires > now);
        if self.by_id.len() >= MAX_SESSIONS
            && let Some(oldest) = self
                .by_id
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(id, _)| id.clone())
        {
            self.by_id.remove(&oldest);
        }
        let id = random_token();
        self.by_id.insert(
            id.clone(),
            Session {
                user: user.to_string(),
                csrf: random_token(),
                expires: now + self.ttl,
            },
        );
        id
    }

    /// The live session `id`, if any; an expired one is removed.
    pub fn get(&mut self, id: &str, now: Instant) -> Option<Session> {
        match self.by_id.get(id) {
            Some(s) if s.expires > now => Some(s.clone()),
            Some(_) => {
                self.by_id.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends session `id`.
    pub fn remove(&mut self, id: &str) {
        self.by_id.remove(id);
    }

    /// How many sessions are held.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// Attempts counted in one window.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    attempts: u32,
}

impl Window {
    /// Counts one attempt at `now` if fewer than `limit` were made in the current window;
    /// otherwise how long until the window ends.
    fn admit(&mut self, limit: u32, now: Instant) -> Result<(), Duration> {
        if now.duration_since(self.start) >= LOGIN_WINDOW {
            *self = Window {
                start: now,
                attempts: 0,
            };
        }
        if self.attempts >= limit {
            return Err(LOGIN_WINDOW.saturating_sub(now.duration_since(self.start)));
        }
        self.attempts += 1;
        Ok(())
    }
}

/// The login rate limit: [`LOGIN_ATTEMPTS_PER_PEER`] per peer address and
/// [`LOGIN_ATTEMPTS_GLOBAL`] in all per [`LOGIN_WINDOW`]; every attempt counts, right or wrong.
#[derive(Debug)]
pub struct LoginLimiter {
    per_peer: HashMap<IpAddr, Window>,
    global: Window,
}

impl LoginLimiter {
    /// A limiter whose first window starts at `now`.
    pub fn new(now: Instant) -> LoginLimiter {
        LoginLimiter {
            per_peer: HashMap::new(),
            global: Window {
                start: now,
                attempts: 0,
            },
        }
    }

    /// Counts an attempt from `peer` at `now`, or says how long to wait when over a limit.
    pub fn admit(&mut self, peer: IpAddr, now: Instant) -> Result<(), Duration> {
        // Peers whose window ended are forgotten, so the map holds at most the peers of one
        // window.
        self.per_peer
            .retain(|_, w| now.duration_since(w.start) < LOGIN_WINDOW);
        let window = self.per_peer.entry(peer).or_insert(Window {
            start: now,
            attempts: 0,
        });
        let mut peer_window = *window;
        peer_window.admit(LOGIN_ATTEMPTS_PER_PEER, now)?;
        self.global.admit(LOGIN_ATTEMPTS_GLOBAL, now)?;
        *window = peer_window;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn a_hashed_password_verifies_and_nothing_else_does() {
        let hash = hash_password("s3cret").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        let (cred, token) = Credential::resolve("ops", &hash, "UNUSED", |_| None).unwrap();
        assert_eq!((cred.source(), token), (CredentialSource::ConfigHash, None));
        assert!(cred.verify("ops", "s3cret"));
        assert!(!cred.verify("ops", "s3cret "));
        assert!(!cred.verify("root", "s3cret"));
    }

    #[test]
    fn the_environment_password_is_hashed_and_without_any_a_token_is_made() {
        let (cred, token) = Credential::resolve("ops", "", "PW", |var| {
            (var == "PW").then(|| "from-env".into())
        })
        .unwrap();
        assert_eq!(
            (cred.source(), token),
            (CredentialSource::Environment, None)
        );
        assert!(cred.verify("ops", "from-env"));
        assert!(!cred.hash.contains("from-env"));

        let (cred, token) = Credential::resolve("ops", "", "PW", |_| None).unwrap();
        let token = token.expect("a one-time token");
        assert_eq!(cred.source(), CredentialSource::OneTimeToken);
        assert_eq!(token.len(), 2 * TOKEN_BYTES);
        assert!(cred.verify("ops", &token));

        assert!(Credential::resolve("ops", "", "PW", |_| Some("".into())).is_err());
        assert!(Credential::resolve("ops", "plain", "", |_| None).is_err());
    }

    #[test]
    fn sessions_expire_and_each_has_its_own_csrf_token() {
        let t0 = Instant::now();
        let mut sessions = Sessions::new(Duration::from_secs(10));
        let a = sessions.create("ops", t0);
        let b = sessions.create("ops", t0);
        assert_ne!(a, b);
        let (sa, sb) = (sessions.get(&a, t0).unwrap(), sessions.get(&b, t0).unwrap());
        assert_ne!(sa.csrf, sb.csrf);
        assert!(sessions.get("nope", t0).is_none());
        assert!(sessions.get(&a, t0 + Duration::from_secs(9)).is_some());
        assert!(sessions.get(&a, t0 + Duration::from_secs(10)).is_none());
        sessions.remove(&b);
        assert!(sessions.is_empty());
    }

    #[test]
    fn sessions_are_capped() {
        let t0 = Instant::now();
        let mut sessions = Sessions::new(Duration::from_secs(10));
        let first = sessions.create("ops", t0);
        for i in 1..=MAX_SESSIONS {
            sessions.create("ops", t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(sessions.len(), MAX_SESSIONS);
        assert!(sessions.get(&first, t0).is_none(), "the oldest went");
    }

    #[test]
    fn login_attempts_are_limited_per_peer_and_in_all() {
        let t0 = Instant::now();
        let mut limiter = LoginLimiter::new(t0);
        let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for _ in 0..LOGIN_ATTEMPTS_PER_PEER {
            limiter.admit(peer, t0).unwrap();
        }
        let wait = limiter
            .admit(peer, t0 + Duration::from_secs(20))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(40));
        // The window ends, and the peer may try again.
        limiter.admit(peer, t0 + LOGIN_WINDOW).unwrap();

        let mut limiter = LoginLimiter::new(t0);
        let mut admitted = 0;
        for i in 0..=255u8 {
            if limiter
                .admit(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)), t0)
                .is_ok()
            {
                admitted += 1;
            }
        }
        assert_eq!(admitted, LOGIN_ATTEMPTS_GLOBAL);
    }

    #[test]
    fn tokens_compare_equal_only_when_equal() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "ab"));
    }
}
