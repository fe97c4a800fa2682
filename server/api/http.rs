//! The server: axum + async-graphql on one port. `POST /graphql`, `GET /graphql` (the
//! console for a browser; a query from the URL for other clients), `/` (to the console),
//! `/graphql/ws` (subscriptions, graphql-transport-ws), `/metrics`, `/healthz`, and
//! `/sessions/<id>/flamegraph.svg` for the stack trackers' sessions.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use futures_util::{SinkExt, StreamExt};

use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::Data;
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::{ConnectInfo, Path, State, WebSocketUpgrade};
use axum::http::Uri;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use subtle::ConstantTimeEq;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::api::graphql::{coded, Caller, EunomiaSchema};
use crate::config::{Config, Role, Token};
use crate::model::wall_clock_ns;
use crate::model::SessionId;
use crate::results::stacks::{flame_graph as draw_flame_graph, folded_stacks};
use crate::results::store::AuditEntry;
use crate::results::ResultsError;
use crate::session::{tracker_info, SessionError, SessionManager};

#[derive(Clone)]
struct AppState {
    schema: EunomiaSchema,
    manager: Arc<SessionManager>,
    tokens: Arc<Vec<Token>>,
    sockets: Arc<Sockets>,
    /// When each client address last had a refusal audited.
    refusals: Arc<DashMap<IpAddr, Instant>>,
}

/// At most one audited refusal per client address in this time: a client sending bad
/// tokens in a loop must not fill the disk with audit rows (the metric counts them all).
const REFUSAL_AUDIT_EVERY: Duration = Duration::from_secs(1);

/// Open websockets, counted in all and per client address, within the configured caps: an
/// idle socket costs memory, and a client must not be able to open them without end.
struct Sockets {
    open: DashMap<IpAddr, usize>,
    total: AtomicUsize,
    max: usize,
    max_per_client: usize,
    init_timeout: Duration,
}

/// A websocket's place among the open ones; given back when it closes.
struct SocketSlot {
    sockets: Arc<Sockets>,
    client: IpAddr,
}

impl Sockets {
    fn admit(self: &Arc<Self>, client: IpAddr) -> Option<SocketSlot> {
        let total = self.total.fetch_add(1, Ordering::AcqRel);
        let per_client = {
            let mut count = self.open.entry(client).or_insert(0);
            *count += 1;
            *count
        };
        let slot = SocketSlot {
            sockets: self.clone(),
            client,
        };
        // Over a cap: dropping the slot gives both counts back.
        (total < self.max && per_client <= self.max_per_client).then_some(slot)
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        self.sockets.total.fetch_sub(1, Ordering::AcqRel);
        self.sockets.open.remove_if_mut(&self.client, |_, n| {
            *n -= 1;
            *n == 0
        });
    }
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
        sockets: Arc::new(Sockets {
            open: DashMap::new(),
            total: AtomicUsize::new(0),
            max: config.limits.websockets,
            max_per_client: config.limits.websockets_per_client,
            init_timeout: Duration::from_secs(config.limits.websocket_init_timeout_secs),
        }),
        refusals: Arc::new(DashMap::new()),
    };
    let http_only = Router::new()
        .route("/", get(|| async { Redirect::to("/graphql") }))
        .route("/graphql", get(graphql_get).post(graphql))
        .route("/graphql/assets/console.js", get(console_js))
        .route("/graphql/assets/console.css", get(console_css))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/sessions/{id}/flamegraph.svg", get(flame_graph))
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

/// The bearer token of a request's `Authorization` header.
fn presented(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
}

impl AppState {
    /// For plain HTTP endpoints: any role's token (when tokens are configured), or a 401
    /// response, the refusal counted and audited as `what`.
    async fn authorize(
        &self,
        client: IpAddr,
        headers: &HeaderMap,
        what: &str,
    ) -> Result<(), Response> {
        match authenticate(&self.tokens, presented(headers)) {
            Ok(_) => Ok(()),
            Err(err) => {
                self.refused(client, what, &err).await;
                Err((StatusCode::UNAUTHORIZED, err.message()).into_response())
            }
        }
    }

    /// Counts a refused request and audits it, at most once a second per client address.
    async fn refused(&self, client: IpAddr, what: &str, err: &AuthError) {
        self.manager.metrics().auth_refused.inc();
        let now = Instant::now();
        let due = match self.refusals.entry(client) {
            dashmap::Entry::Occupied(last)
                if now.duration_since(*last.get()) < REFUSAL_AUDIT_EVERY =>
            {
                false
            }
            dashmap::Entry::Occupied(mut last) => {
                last.insert(now);
                true
            }
            dashmap::Entry::Vacant(slot) => {
                slot.insert(now);
                true
            }
        };
        if !due {
            return;
        }
        let entry = AuditEntry {
            id: 0,
            at_ns: wall_clock_ns(),
            actor: client.to_string(),
            role: "none".into(),
            action: what.into(),
            args: serde_json::json!({ "client": client.to_string() }),
            outcome: "refused".into(),
            error: Some(err.message().into()),
            session_id: None,
        };
        if let Err(err) = self.manager.store().audit(&entry).await {
            tracing::error!("auditing a refused request failed: {err}");
        }
    }
}

async fn graphql(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> Response {
    execute(&state, client, &headers, request.into_inner()).await
}

/// `GET /graphql`. A browser (it accepts HTML), or a request without `query`, gets the
/// console, which reads `query` and `variables` from the URL itself. Any other client has
/// the query in the URL run (GraphQL over HTTP): queries only, since a link, a prefetch
/// or a crawler must change nothing; a mutation is answered 405.
async fn graphql_get(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let browser = headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if browser {
        return console().await.into_response();
    }
    let Some(request) = url_request(uri.query().unwrap_or_default()) else {
        return console().await.into_response();
    };
    let request = match request {
        Ok(request) => request,
        Err(message) => return refusal(StatusCode::BAD_REQUEST, "BAD_REQUEST", &message),
    };
    if !only_queries(&request) {
        let mut response = refusal(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "only queries run over GET: send mutations and subscriptions with POST",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, POST"));
        return response;
    }
    execute(&state, client, &headers, request).await
}

/// The GraphQL request in a URL's query string (`query`, `variables` and `operationName`,
/// as GraphQL over HTTP names them); None without `query`, an error for variables that
/// are not a JSON object.
fn url_request(query_string: &str) -> Option<Result<async_graphql::Request, String>> {
    let (mut query, mut variables, mut operation) = (None, None, None);
    for (key, value) in form_urlencoded::parse(query_string.as_bytes()) {
        match key.as_ref() {
            "query" => query = Some(value.into_owned()),
            "variables" => variables = Some(value.into_owned()),
            "operationName" => operation = Some(value.into_owned()),
            _ => {}
        }
    }
    let mut request = async_graphql::Request::new(query?);
    if let Some(name) = operation {
        request = request.operation_name(name);
    }
    if let Some(variables) = variables.filter(|v| !v.is_empty()) {
        match serde_json::from_str::<serde_json::Value>(&variables) {
            Ok(value @ serde_json::Value::Object(_)) => {
                request = request.variables(async_graphql::Variables::from_json(value));
            }
            _ => return Some(Err("variables must be a JSON object".into())),
        }
    }
    Some(Ok(request))
}

/// Whether the operation `request` runs is a query. A document that does not parse is
/// left to the executor, which reports it as it would over POST.
fn only_queries(request: &async_graphql::Request) -> bool {
    use async_graphql::parser::types::{DocumentOperations, OperationType};
    let Ok(document) = async_graphql::parser::parse_query(&request.query) else {
        return true;
    };
    let is_query = |ty: OperationType| ty == OperationType::Query;
    match &document.operations {
        DocumentOperations::Single(operation) => is_query(operation.node.ty),
        DocumentOperations::Multiple(operations) => match &request.operation_name {
            Some(name) => operations
                .get(name.as_str())
                .is_none_or(|operation| is_query(operation.node.ty)),
            None => operations
                .values()
                .all(|operation| is_query(operation.node.ty)),
        },
    }
}

/// A GraphQL error answer with `code`, before anything ran.
fn refusal(status: StatusCode, code: &'static str, message: &str) -> Response {
    let response = async_graphql::Response::from_errors(vec![
        coded(code, message).into_server_error(Default::default())
    ]);
    (status, GraphQLResponse::from(response)).into_response()
}

/// Runs `request` for the caller its headers present.
async fn execute(
    state: &AppState,
    client: SocketAddr,
    headers: &HeaderMap,
    request: async_graphql::Request,
) -> Response {
    match authenticate(&state.tokens, presented(headers)) {
        Ok(caller) => {
            GraphQLResponse::from(state.schema.execute(request.data(caller)).await).into_response()
        }
        Err(err) => {
            state.refused(client.ip(), "graphql", &err).await;
            refusal(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", err.message())
        }
    }
}

/// The graphql-transport-ws close codes the protocol gives for a refused
/// `connection_init` and for none in time.
const CLOSE_FORBIDDEN: u16 = 4403;
const CLOSE_INIT_TIMEOUT: u16 = 4408;
/// Prefix of our refusals of `connection_init`, so that their close frame can be told
/// from other 1002s (async-graphql closes every refused init with 1002).
const REFUSED: &str = "Forbidden: ";

/// Subscriptions authenticate in the `connection_init` payload: `{"Authorization": "Bearer <token>"}`.
async fn subscriptions(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some(slot) = state.sockets.admit(client.ip()) else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many open websockets, from this address or in all\n",
        )
            .into_response();
    };
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| serve_socket(socket, state, protocol, slot))
}

/// Serves one websocket: closes it with 4408 when `connection_init` does not come in
/// time, and with 4403 when its credentials are refused.
async fn serve_socket(
    socket: WebSocket,
    state: AppState,
    protocol: GraphQLProtocol,
    slot: SocketSlot,
) {
    let (mut to_client, from_client) = socket.split();
    // async-graphql writes into a channel, so that the timeout below can still close the
    // socket properly after dropping it.
    let (frames, mut outgoing) = tokio::sync::mpsc::channel::<Message>(16);
    let closer = frames.clone();
    let sink = futures_util::sink::unfold(frames, |frames, frame: Message| async move {
        frames
            .send(forbidden_code(frame))
            .await
            .map_err(|_| axum::Error::new("the websocket is closed"))?;
        Ok::<_, axum::Error>(frames)
    });
    let initialized = Arc::new(AtomicBool::new(false));
    let tokens = state.tokens.clone();
    let refusing = state.clone();
    let client = slot.client;
    let init = initialized.clone();
    let graphql =
        GraphQLWebSocket::new_with_pair(sink, from_client, state.schema.clone(), protocol)
            .on_connection_init(move |payload| async move {
                init.store(true, Ordering::Release);
                let presented = ["Authorization", "authorization"]
                    .iter()
                    .find_map(|key| payload.get(key).and_then(|v| v.as_str()))
                    .and_then(bearer);
                let caller = match authenticate(&tokens, presented) {
                    Ok(caller) => caller,
                    Err(err) => {
                        refusing.refused(client, "websocket", &err).await;
                        return Err(async_graphql::Error::new(format!(
                            "{REFUSED}{}",
                            err.message()
                        )));
                    }
                };
                let mut data = Data::default();
                data.insert(caller);
                Ok(data)
            })
            .serve();
    let init_timeout = state.sockets.init_timeout;
    let protocol_side = async move {
        tokio::select! {
            _ = graphql => {}
            _ = async {
                tokio::time::sleep(init_timeout).await;
                if initialized.load(Ordering::Acquire) {
                    std::future::pending::<()>().await;
                }
            } => {
                let frame = CloseFrame {
                    code: CLOSE_INIT_TIMEOUT,
                    reason: "Connection initialisation timeout".into(),
                };
                let _ = closer.send(Message::Close(Some(frame))).await;
            }
        }
    };
    let socket_side = async move {
        while let Some(frame) = outgoing.recv().await {
            if to_client.send(frame).await.is_err() {
                break;
            }
        }
    };
    futures_util::join!(protocol_side, socket_side);
    drop(slot);
}

/// Our refusal of `connection_init` closes with the protocol's 4403, not 1002.
fn forbidden_code(frame: Message) -> Message {
    match frame {
        Message::Close(Some(CloseFrame { code: 1002, reason })) if reason.starts_with(REFUSED) => {
            Message::Close(Some(CloseFrame {
                code: CLOSE_FORBIDDEN,
                reason,
            }))
        }
        other => other,
    }
}

/// With tokens configured, `/metrics` wants one of them too (a viewer's will do; Prometheus
/// sends it with `authorization: {credentials: ...}` in its scrape config).
async fn metrics(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = state.authorize(client.ip(), &headers, "metrics").await {
        return refused;
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.manager.metrics().render(),
    )
        .into_response()
}

/// A stack tracker's session (profile, offcpu, memleak) as an SVG flame graph; any
/// role's token, as for `/metrics`. 404 for an unknown session, 400 for one without stacks.
async fn flame_graph(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = state.authorize(client.ip(), &headers, "flamegraph").await {
        return refused;
    }
    let failed = |status: StatusCode, err: &dyn std::fmt::Display| {
        (status, format!("{err}\n")).into_response()
    };
    let record = match state.manager.find(&SessionId::from(id)).await {
        Ok(record) => record,
        Err(err @ SessionError::NotFound(_)) => return failed(StatusCode::NOT_FOUND, &err),
        Err(err) => return failed(StatusCode::INTERNAL_SERVER_ERROR, &err),
    };
    let (info, results) = match tracker_info(&record.tracker)
        .and_then(|info| Ok((info, state.manager.results(&record)?)))
    {
        Ok(found) => found,
        Err(err) => return failed(StatusCode::INTERNAL_SERVER_ERROR, &err),
    };
    let folded = match folded_stacks(&*results, info, Vec::new()).await {
        Ok(folded) => folded,
        Err(err @ ResultsError::Query(_)) => return failed(StatusCode::BAD_REQUEST, &err),
        Err(err) => return failed(StatusCode::INTERNAL_SERVER_ERROR, &err),
    };
    let title = format!(
        "{} {}",
        record.tracker,
        record.label.as_deref().unwrap_or(record.id.as_str())
    );
    // Laying out thousands of frames is CPU work: off the async workers.
    match tokio::task::spawn_blocking(move || draw_flame_graph(info, &folded, &title)).await {
        Ok(Ok(svg)) => ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response(),
        Ok(Err(err)) => failed(StatusCode::INTERNAL_SERVER_ERROR, &err),
        Err(err) => failed(StatusCode::INTERNAL_SERVER_ERROR, &err),
    }
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
