//! The server: axum + async-graphql on one port. `POST /graphql`, `GET /graphql` (the
//! console), `/graphql/ws` (subscriptions, graphql-transport-ws), `/metrics`, `/healthz`.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::Data;
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use subtle::ConstantTimeEq;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::api::graphql::{coded, Caller, EunomiaSchema};
use crate::config::{Config, Role, Token};
use crate::session::SessionManager;

#[derive(Clone)]
struct AppState {
    schema: EunomiaSchema,
    manager: Arc<SessionManager>,
    tokens: Arc<Vec<Token>>,
}

/// Why a request carries no usable identity.
#[derive(Debug, PartialEq, Eq)]
enum AuthError {
    Missing,
    Wrong,
}

impl AuthError {
    fn message(&self) -> &'static str {
        match self {
            AuthError::Missing => "no credentials: send `Authorization: Bearer <token>`",
            AuthError::Wrong => "the bearer token is not valid",
        }
    }
}

/// Maps a presented token to a caller. With no tokens configured (loopback only), every
/// caller is the local operator. Every configured token is compared, in constant time.
fn authenticate(tokens: &[Token], presented: Option<&str>) -> Result<Caller, AuthError> {
    if tokens.is_empty() {
        return Ok(Caller {
            name: "local".into(),
            role: Role::Operator,
        });
    }
    let presented = presented.ok_or(AuthError::Missing)?;
    let mut found = None;
    for token in tokens {
        if bool::from(token.token.as_bytes().ct_eq(presented.as_bytes())) {
            found = Some(Caller {
                name: token.name.clone(),
                role: token.role,
            });
        }
    }
    found.ok_or(AuthError::Wrong)
}

fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

pub fn router(schema: EunomiaSchema, manager: Arc<SessionManager>, config: &Config) -> Router {
    let state = AppState {
        schema,
        manager,
        tokens: Arc::new(config.tokens.clone()),
    };
    let http_only = Router::new()
        .route("/graphql", get(console).post(graphql))
        .route("/graphql/assets/console.js", get(console_js))
        .route("/graphql/assets/console.css", get(console_css))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(config.limits.request_timeout_secs),
        ));
    Router::new()
        .route("/graphql/ws", get(subscriptions))
        .merge(http_only)
        .layer(RequestBodyLimitLayer::new(config.limits.body_bytes))
        .with_state(state)
}

async fn graphql(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    match authenticate(&state.tokens, presented) {
        Ok(caller) => GraphQLResponse::from(
            state
                .schema
                .execute(request.into_inner().data(caller))
                .await,
        )
        .into_response(),
        Err(err) => {
            let response =
                async_graphql::Response::from_errors(vec![
                    coded("UNAUTHENTICATED", err.message()).into_server_error(Default::default())
                ]);
            (StatusCode::UNAUTHORIZED, GraphQLResponse::from(response)).into_response()
        }
    }
}

/// Subscriptions authenticate in the `connection_init` payload: `{"Authorization": "Bearer <token>"}`.
async fn subscriptions(
    State(state): State<AppState>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let tokens = state.tokens.clone();
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| {
            GraphQLWebSocket::new(socket, state.schema.clone(), protocol)
                .on_connection_init(move |payload| async move {
                    let presented = ["Authorization", "authorization"]
                        .iter()
                        .find_map(|key| payload.get(key).and_then(|v| v.as_str()))
                        .and_then(bearer);
                    let caller = authenticate(&tokens, presented)
                        .map_err(|e| async_graphql::Error::new(e.message()))?;
                    let mut data = Data::default();
                    data.insert(caller);
                    Ok(data)
                })
                .serve()
        })
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.manager.metrics().render(),
    )
}

async fn console() -> Html<&'static [u8]> {
    Html(include_bytes!("../../web/dist/index.html"))
}

async fn console_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_bytes!("../../web/dist/console.js").as_slice(),
    )
}

async fn console_css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_bytes!("../../web/dist/console.css").as_slice(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(name: &str, role: Role, token: &str) -> Token {
        Token {
            name: name.into(),
            role,
            token: token.into(),
        }
    }

    #[test]
    fn tokens_map_to_roles() {
        let tokens = vec![
            token("ops", Role::Operator, "operator-token-0123"),
            token("view", Role::Viewer, "viewer-token-01234"),
        ];
        assert_eq!(
            authenticate(&tokens, Some("viewer-token-01234")).unwrap(),
            Caller {
                name: "view".into(),
                role: Role::Viewer
            }
        );
        assert_eq!(
            authenticate(&tokens, Some("operator-token-0123"))
                .unwrap()
                .role,
            Role::Operator
        );
        assert_eq!(
            authenticate(&tokens, Some("operator-token-012")),
            Err(AuthError::Wrong)
        );
        assert_eq!(authenticate(&tokens, None), Err(AuthError::Missing));
        assert_eq!(authenticate(&[], None).unwrap().role, Role::Operator);
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
    }
}
