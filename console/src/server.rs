//! The console's HTTP side: the routes, the handlers that load from the store and render a
//! page, the session and CSRF checks, the login, and the security headers of every answer.
//!
//! Owns [`Console`] (the store, the settings, the credential, the session table and the login
//! limiter) and [`router`]. Every page and form needs a session ([`Operator`]): a `GET` without
//! one is sent to the login page, anything else is refused with 401, before any handler runs. A
//! `POST` whose CSRF token is not its session's is refused with 403 and writes nothing. Route
//! edits go through the store's one-transaction edits ([`Store::add_host`] and friends, the same
//! as `lars route`), so lars-dns pushes them to the agents; each edit that changed something is
//! appended to the audit log. Answers carry `Cache-Control: no-store`, a CSP that allows only the
//! console's own script and style, `X-Frame-Options: DENY`, `nosniff` and `no-referrer`. Serving
//! itself (connections, timeouts) is `lars_service::metrics::serve_http`.

use crate::auth::{Credential, LoginLimiter, Sessions, same_token};
use crate::config::{ConsoleSection, ServiceTarget};
use crate::forms::{EditForm, InputError, LoginForm, Search};
use crate::health::{route_health, summarize};
use crate::names::RouteNames;
use crate::pages::{self, Viewer};
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use lars_store::{AuditEntry, EditOutcome, Store, StoreError};
use lars_wire::{HostAddr, RouteKey};
use maud::Markup;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::{info, warn};

/// The session cookie.
pub const SESSION_COOKIE: &str = "lars_console_session";

/// The login page's own CSRF cookie (a token the login form must repeat).
pub const LOGIN_COOKIE: &str = "lars_console_login";

/// Rows of `RouteChange` and of the audit log the Changes page shows.
const CHANGES_SHOWN: u32 = 200;

/// How long the Services page waits for one endpoint.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// Metric families the Services page shows per endpoint, at most.
const FAMILIES_SHOWN: usize = 24;

/// The console's own script (the health table's refresh) and style sheet.
const SCRIPT: &str = include_str!("../static/console.js");
const STYLE: &str = include_str!("../static/console.css");

/// The content security policy: only the console's own script, style and requests; no frames.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Everything the handlers share.
pub struct Console {
    store: Store,
    settings: ConsoleSection,
    services: Vec<ServiceTarget>,
    credential: Credential,
    sessions: Mutex<Sessions>,
    limiter: Mutex<LoginLimiter>,
}

impl Console {
    /// A console over `store` with `settings`, the metrics `services` and the operator
    /// `credential`.
    pub fn new(
        store: Store,
        settings: ConsoleSection,
        services: Vec<ServiceTarget>,
        credential: Credential,
    ) -> Console {
        Console {
            sessions: Mutex::new(Sessions::new(settings.session_ttl())),
            limiter: Mutex::new(LoginLimiter::new(Instant::now())),
            store,
            settings,
            services,
            credential,
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The console's routes over `console`.
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/route/{modid}/{cmdid}", get(route_page))
        .route("/changes", get(changes))
        .route("/services", get(services))
        .route("/edit/add-host", post(add_host))
        .route("/edit/remove-host", post(remove_host))
        .route("/edit/remove-route", post(remove_route))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/static/console.js", get(script))
        .route("/static/console.css", get(style))
        .fallback(not_found)
        .layer(middleware::from_fn(security_headers))
        .with_state(console)
}

/// Adds the security headers to every answer.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, path `/`, living `max_age` seconds.
fn set_cookie(name: &str, value: &str, max_age: u64) -> String {
    format!("{name}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}")
}

/// A logged-in operator: a request with a live session. Without one, a `GET` is redirected to
/// the login page and anything else is refused with 401.
#[derive(Debug, Clone)]
pub struct Operator {
    session: String,
    viewer: Viewer,
}

impl Operator {
    /// The refusal (403, nothing written) unless `token` is this session's CSRF token.
    fn csrf_refusal(&self, token: &str) -> Option<Response> {
        if !token.is_empty() && same_token(token, &self.viewer.csrf) {
            return None;
        }
        warn!(user = %self.viewer.user, "form refused: missing or wrong CSRF token");
        Some(
            (
                StatusCode::FORBIDDEN,
                Html(
                    "<!DOCTYPE html><p>This form's CSRF token is missing or not this session's; \
                  nothing was changed. Reload the page and try again.</p>",
                ),
            )
                .into_response(),
        )
    }
}

impl FromRequestParts<Arc<Console>> for Operator {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console>,
    ) -> Result<Operator, Response> {
        let session = cookie(&parts.headers, SESSION_COOKIE)
            .and_then(|id| Some((id.to_string(), console.sessions().get(id, Instant::now())?)));
        match session {
            Some((id, s)) => Ok(Operator {
                session: id,
                viewer: Viewer {
                    user: s.user,
                    csrf: s.csrf,
                },
            }),
            None if parts.method == Method::GET => Err(Redirect::to("/login").into_response()),
            None => Err((
                StatusCode::UNAUTHORIZED,
                Html("<!DOCTYPE html><p>Log in first; nothing was changed.</p>"),
            )
                .into_response()),
        }
    }
}

/// A page as an answer.
fn html(status: StatusCode, markup: Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

/// A store failure as a page (503), logged.
fn store_failed(viewer: &Viewer, doing: &str, e: &StoreError) -> Response {
    warn!(error = %e, "{doing} failed");
    let body = maud::html! {
        p.error role="alert" { "The store could not be read or written while " (doing) ": " (e.to_string()) }
    };
    html(
        StatusCode::SERVICE_UNAVAILABLE,
        pages::page("Store unavailable", Some(viewer), body),
    )
}

/// Now, Unix seconds.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

async fn overview(
    State(console): State<Arc<Console>>,
    op: Operator,
    Query(search): Query<Search>,
) -> Response {
    render_overview(
        &console,
        &op.viewer,
        &search.q,
        &EditForm::default(),
        &[],
        None,
    )
    .await
}

/// The overview, with a refused add-host form's values and problems.
async fn render_overview(
    console: &Console,
    viewer: &Viewer,
    q: &str,
    form: &EditForm,
    errors: &[InputError],
    problem: Option<&str>,
) -> Response {
    let loaded = async {
        let routes = console.store.load_routes().await?;
        let rows = console.store.load_call_status(None, None).await?;
        let names = RouteNames::load(&console.store).await?;
        Ok::<_, StoreError>((routes, rows, names))
    };
    let (routes, rows, names) = match loaded.await {
        Ok(loaded) => loaded,
        Err(e) => return store_failed(viewer, "loading the routes", &e),
    };
    let stale = i64::try_from(console.settings.stale_after_secs).unwrap_or(i64::MAX);
    let summary = summarize(&routes.routes, &rows, unix_now(), stale);
    let status = if errors.is_empty() && problem.is_none() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    html(
        status,
        pages::overview::overview(viewer, q, &summary, &names, form, errors, problem),
    )
}

async fn route_page(
    State(console): State<Arc<Console>>,
    op: Operator,
    Path((modid, cmdid)): Path<(String, String)>,
) -> Response {
    let form = EditForm {
        modid,
        cmdid,
        ..EditForm::default()
    };
    match form.key() {
        Ok(key) => render_route(&console, &op.viewer, key, &form, &[], None).await,
        Err(errors) => render_overview(&console, &op.viewer, "", &form, &errors, None).await,
    }
}

/// The page of route `key`, with a refused form's values and problems.
async fn render_route(
    console: &Console,
    viewer: &Viewer,
    key: RouteKey,
    form: &EditForm,
    errors: &[InputError],
    problem: Option<&str>,
) -> Response {
    let loaded = async {
        let routes = console.store.load_routes().await?;
        let rows = console
            .store
            .load_call_status(Some(key.modid), Some(key.cmdid))
            .await?;
        let names = RouteNames::load(&console.store).await?;
        Ok::<_, StoreError>((routes, rows, names))
    };
    let (routes, rows, names) = match loaded.await {
        Ok(loaded) => loaded,
        Err(e) => return store_failed(viewer, "loading the route", &e),
    };
    let hosts = routes.routes.get(&key).cloned().unwrap_or_default();
    let stale = i64::try_from(console.settings.stale_after_secs).unwrap_or(i64::MAX);
    let health = route_health(&hosts, &rows, unix_now(), stale);
    let view = pages::route::RouteView {
        key,
        name: names.of(key),
        hosts: &hosts,
        health: &health,
        refresh_secs: console.settings.refresh_secs,
        stale_after_secs: console.settings.stale_after_secs,
    };
    let status = if errors.is_empty() && problem.is_none() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    html(
        status,
        pages::route::route(viewer, &view, form, errors, problem),
    )
}

/// `modid/cmdid`, as the pages name a route.
fn slash(key: RouteKey) -> String {
    format!("{}/{}", key.modid, key.cmdid)
}

/// Which edit a form asks for.
#[derive(Debug, Clone, Copy)]
enum Edit {
    AddHost(RouteKey, HostAddr),
    RemoveHost(RouteKey, HostAddr),
    RemoveRoute(RouteKey),
}

impl Edit {
    fn key(self) -> RouteKey {
        match self {
            Edit::AddHost(key, _) | Edit::RemoveHost(key, _) | Edit::RemoveRoute(key) => key,
        }
    }

    /// The edit in words, for the audit log.
    fn describe(self) -> String {
        match self {
            Edit::AddHost(key, host) => format!("add host {host} to route {}", slash(key)),
            Edit::RemoveHost(key, host) => {
                format!("remove host {host} from route {}", slash(key))
            }
            Edit::RemoveRoute(key) => format!("remove route {}", slash(key)),
        }
    }

    /// Why an edit that changed nothing was refused.
    fn unchanged(self) -> String {
        match self {
            Edit::AddHost(key, host) => format!("{host} is already in route {}", slash(key)),
            Edit::RemoveHost(key, host) => format!("{host} is not in route {}", slash(key)),
            Edit::RemoveRoute(key) => format!("route {} has no hosts", slash(key)),
        }
    }

    async fn run(self, store: &Store) -> Result<EditOutcome, StoreError> {
        match self {
            Edit::AddHost(key, host) => store.add_host(key, host).await,
            Edit::RemoveHost(key, host) => store.remove_host(key, host).await,
            Edit::RemoveRoute(key) => store.remove_route(key).await,
        }
    }
}

async fn add_host(
    State(console): State<Arc<Console>>,
    op: Operator,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(form): Form<EditForm>,
) -> Response {
    let edit = form.key_and_host().map(|(k, h)| Edit::AddHost(k, h));
    apply(&console, &op, peer, &form, edit).await
}

async fn remove_host(
    State(console): State<Arc<Console>>,
    op: Operator,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(form): Form<EditForm>,
) -> Response {
    let edit = form.key_and_host().map(|(k, h)| Edit::RemoveHost(k, h));
    apply(&console, &op, peer, &form, edit).await
}

async fn remove_route(
    State(console): State<Arc<Console>>,
    op: Operator,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(form): Form<EditForm>,
) -> Response {
    let edit = form.key().map(Edit::RemoveRoute);
    apply(&console, &op, peer, &form, edit).await
}

/// Checks the CSRF token, then runs `edit` if the form was valid: on success the edit is
/// audited and the browser sent to the route's page; otherwise the page that has the form
/// shows what was wrong, and nothing is written.
async fn apply(
    console: &Console,
    op: &Operator,
    peer: SocketAddr,
    form: &EditForm,
    edit: Result<Edit, Vec<InputError>>,
) -> Response {
    if let Some(refused) = op.csrf_refusal(&form.csrf) {
        return refused;
    }
    let viewer = &op.viewer;
    let edit = match edit {
        Ok(edit) => edit,
        Err(errors) => {
            return match form.key() {
                Ok(key) => render_route(console, viewer, key, form, &errors, None).await,
                Err(_) => render_overview(console, viewer, "", form, &errors, None).await,
            };
        }
    };
    let key = edit.key();
    let outcome = match edit.run(&console.store).await {
        Ok(outcome) => outcome,
        Err(e) => return store_failed(viewer, &edit.describe(), &e),
    };
    let Some(version) = outcome.version else {
        let problem = edit.unchanged();
        return render_route(console, viewer, key, form, &[], Some(&problem)).await;
    };
    let action = format!("{}: route version {version}", edit.describe());
    info!(user = %viewer.user, %peer, %action, "console edit");
    let entry = AuditEntry::new(unix_now(), &viewer.user, &peer.to_string(), &action);
    if let Err(e) = console.store.append_audit(&entry).await {
        warn!(error = %e, %action, "the edit was made but could not be written to the audit log");
    }
    Redirect::to(&pages::route_path(key)).into_response()
}

async fn changes(State(console): State<Arc<Console>>, op: Operator) -> Response {
    let store = &console.store;
    let loaded = async {
        let version = store.route_version().await?;
        let changes = store.load_route_changes(CHANGES_SHOWN).await?;
        let audit = store.load_audit(CHANGES_SHOWN).await?;
        let names = RouteNames::load(store).await?;
        Ok::<_, StoreError>((version, changes, audit, names))
    };
    match loaded.await {
        Ok((version, changes, audit, names)) => html(
            StatusCode::OK,
            pages::changes::changes(&op.viewer, version, &changes, &audit, &names),
        ),
        Err(e) => store_failed(&op.viewer, "loading the changes", &e),
    }
}

async fn services(State(console): State<Arc<Console>>, op: Operator) -> Response {
    // Every endpoint at once, so one that hangs costs the page one timeout, not one each.
    let mut reads = tokio::task::JoinSet::new();
    for (i, target) in console.services.iter().cloned().enumerate() {
        reads.spawn(async move {
            let reading = lars_service::metrics::fetch(&target.url, SCRAPE_TIMEOUT)
                .await
                .map(|text| key_values(&lars_service::metrics::Samples::parse(&text)))
                .map_err(|e| e.to_string());
            let state = pages::services::ServiceState {
                name: target.name,
                url: target.url,
                reading,
            };
            (i, state)
        });
    }
    let mut states: Vec<(usize, pages::services::ServiceState)> = reads.join_all().await;
    states.sort_by_key(|(i, _)| *i);
    let states: Vec<_> = states.into_iter().map(|(_, s)| s).collect();
    html(
        StatusCode::OK,
        pages::services::services(&op.viewer, &states),
    )
}

/// The families of `samples` in the order they came, each summed over its labels: the
/// counters and gauges an operator reads first (serving, connections, requests, errors).
fn key_values(samples: &lars_service::metrics::Samples) -> Vec<(String, f64)> {
    let mut families: Vec<(String, f64)> = Vec::new();
    for sample in samples.iter() {
        match families.iter().position(|(name, _)| *name == sample.name) {
            Some(i) => families[i].1 += sample.value,
            None if families.len() < FAMILIES_SHOWN => {
                families.push((sample.name.clone(), sample.value));
            }
            None => {}
        }
    }
    families
}

async fn login_page(headers: HeaderMap) -> Response {
    let token = cookie(&headers, LOGIN_COOKIE)
        .filter(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .map_or_else(crate::auth::random_token, str::to_string);
    login_answer(StatusCode::OK, &token, "", None)
}

/// The login page with its CSRF token in the form and in its cookie.
fn login_answer(status: StatusCode, token: &str, user: &str, problem: Option<&str>) -> Response {
    let mut response = html(status, pages::login::login(token, user, problem));
    if let Ok(value) = HeaderValue::from_str(&set_cookie(LOGIN_COOKIE, token, 3600)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn login(
    State(console): State<Arc<Console>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if expected.is_empty() || !same_token(expected, &form.csrf) {
        let token = crate::auth::random_token();
        return login_answer(
            StatusCode::FORBIDDEN,
            &token,
            &form.user,
            Some("The login form's CSRF token is missing or stale; try again."),
        );
    }
    let admitted = console
        .limiter
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .admit(peer.ip(), Instant::now());
    if let Err(wait) = admitted {
        warn!(%peer, "login refused: too many attempts");
        let problem = format!(
            "Too many login attempts; try again in {} s.",
            wait.as_secs().max(1)
        );
        return login_answer(
            StatusCode::TOO_MANY_REQUESTS,
            expected,
            &form.user,
            Some(&problem),
        );
    }
    let checker = Arc::clone(&console);
    let (user, password) = (form.user.clone(), form.password);
    let ok = tokio::task::spawn_blocking(move || checker.credential.verify(&user, &password))
        .await
        .unwrap_or(false);
    if !ok {
        warn!(%peer, user = %form.user, "login failed");
        return login_answer(
            StatusCode::UNAUTHORIZED,
            expected,
            &form.user,
            Some("Wrong user or password."),
        );
    }
    let id = console
        .sessions()
        .create(console.credential.user(), Instant::now());
    info!(%peer, user = %console.credential.user(), "operator logged in");
    let mut response = Redirect::to("/").into_response();
    let cookie = set_cookie(SESSION_COOKIE, &id, console.settings.session_ttl_secs);
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn logout(
    State(console): State<Arc<Console>>,
    op: Operator,
    Form(form): Form<EditForm>,
) -> Response {
    if let Some(refused) = op.csrf_refusal(&form.csrf) {
        return refused;
    }
    console.sessions().remove(&op.session);
    let mut response = Redirect::to("/login").into_response();
    if let Ok(value) = HeaderValue::from_str(&set_cookie(SESSION_COOKIE, "", 0)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

async fn not_found(_op: Operator) -> Response {
    (
        StatusCode::NOT_FOUND,
        Html("<!DOCTYPE html><p>No such page.</p>"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_name_among_several() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; lars_console_session=abc"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "c"), None);
        let set = set_cookie(SESSION_COOKIE, "x", 5);
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
    }
}
