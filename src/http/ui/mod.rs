//! The support web UI at `/ui`: server-rendered pages in Indonesian for
//! help-desk staff, with no JavaScript at all.
//!
//! # Layout
//! - [`session`]: sign-in sessions (in memory), cookies, CSRF and Origin
//!   checks, the [`session::Staff`] extractor.
//! - [`view`]: the embedded tera templates (`templates/ui/`), filters,
//!   Indonesian labels, the page-rendering [`view::UiError`].
//! - [`pages`]: the handlers.
//!
//! # Pages
//! | path | who | what |
//! |---|---|---|
//! | `GET/POST /ui/login` | anyone | sign in with an API token |
//! | `POST /ui/keluar` | signed in | sign out |
//! | `GET /ui`, `POST /ui/cari` | support | search by NIK, phone or name (a POST with the CSRF token, so identifiers stay out of URLs; `GET /ui/cari` redirects to `/ui`) |
//! | `GET /ui/nakes/{id}` | support | a worker's full timeline |
//! | `POST /ui/nakes/{id}/kirim-ulang` | support | resend, with a reason |
//! | `POST /ui/nakes/{id}/tanda/{flag}/selesai` | support | resolve a flag, with a note |
//! | `GET /ui/kampanye`, `GET /ui/kampanye/{id}` | support, operator | campaign dashboard |
//! | `GET /ui/static/app.css` | anyone | the stylesheet |
//!
//! Any other path under `/ui` gets the Indonesian 404 page (the server's
//! fallback calls [`not_found`]). The table is [`ui_routes`]; the router is
//! built from it and the OpenAPI document is checked against it.
//!
//! Support tokens see everything; operator tokens may sign in for the
//! campaign dashboard only (search and timelines show personal data that
//! operators have no need for). Other roles cannot sign in.
//!
//! Every page is sent with a Content-Security-Policy that allows no script
//! and no inline style, `X-Frame-Options: DENY`, `Cache-Control: no-store`
//! (pages hold personal data) and `Referrer-Policy: same-origin`.
//!
//! Logs name the token and the worker id, never a name, NIK or phone.

mod chart;
mod pages;
pub mod session;
pub mod view;

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use utoipa::OpenApi;

use super::routes::{build, line, Auth, Line, RouteSpec};
use super::AppState;

/// State of the UI, beside [`AppState`].
#[derive(Clone)]
pub struct Ui {
    pub sessions: session::Sessions,
    /// Always mark cookies `Secure` (decided at start by
    /// [`session::secure_cookies`]).
    pub secure_cookies: bool,
}

impl Ui {
    fn new(secure_cookies: bool) -> Ui {
        Ui {
            sessions: session::Sessions::default(),
            secure_cookies,
        }
    }
}

/// Every `/ui` route with its handler.
fn ui_routes() -> Vec<Line> {
    use Auth::{Public, Session};
    use Method as M;
    vec![
        line(M::GET, "/ui", Session, pages::home),
        line(M::GET, "/ui/login", Public, pages::login_form),
        line(M::POST, "/ui/login", Public, pages::login),
        line(M::POST, "/ui/keluar", Session, pages::logout),
        line(M::GET, "/ui/cari", Public, pages::search_get),
        line(M::POST, "/ui/cari", Session, pages::search),
        line(M::GET, "/ui/nakes/{id}", Session, pages::worker),
        line(
            M::POST,
            "/ui/nakes/{id}/kirim-ulang",
            Session,
            pages::resend,
        ),
        line(
            M::POST,
            "/ui/nakes/{id}/tanda/{flag}/selesai",
            Session,
            pages::resolve_flag,
        ),
        line(
            M::POST,
            "/ui/nakes/{id}/kunci/{lock}/buka",
            Session,
            pages::lift_lock,
        ),
        line(
            M::POST,
            "/ui/nakes/{id}/registrasi-ulang/{rereg}/setujui",
            Session,
            pages::approve_reregistration,
        ),
        line(M::GET, "/ui/kampanye", Session, pages::campaigns),
        line(M::GET, "/ui/kampanye/{id}", Session, pages::campaign),
        line(M::GET, "/ui/static/app.css", Public, pages::stylesheet),
    ]
}

/// The `/ui` routes (see [`super::routes::route_table`] for all).
pub fn route_table() -> Vec<RouteSpec> {
    ui_routes().into_iter().map(|(spec, _)| spec).collect()
}

/// The `/ui` routes, with a fresh session map: sessions live as long as
/// the router. `secure_cookies`: mark every cookie `Secure`.
pub fn routes(secure_cookies: bool) -> Router<AppState> {
    build(ui_routes())
        .layer(axum::middleware::from_fn(security_headers))
        .layer(Extension(Ui::new(secure_cookies)))
}

/// The Indonesian 404 page, for any path under `/ui` no route serves.
pub async fn not_found() -> Response {
    let mut resp = pages::not_found().await.into_response();
    add_security_headers(resp.headers_mut());
    resp
}

/// The UI pages in the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(
        pages::home,
        pages::login_form,
        pages::login,
        pages::logout,
        pages::search_get,
        pages::search,
        pages::worker,
        pages::resend,
        pages::resolve_flag,
        pages::lift_lock,
        pages::approve_reregistration,
        pages::campaigns,
        pages::campaign,
        pages::stylesheet,
    ),
    components(schemas(
        pages::LoginForm,
        pages::CsrfForm,
        pages::ResendForm,
        pages::SearchForm,
        pages::ResolveForm,
        pages::LiftForm,
        pages::ApproveForm
    ))
)]
pub struct UiDoc;

/// Headers on every UI response.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    add_security_headers(resp.headers_mut());
    resp
}

fn add_security_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}
