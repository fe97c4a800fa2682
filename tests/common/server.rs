//! A real `eunomia serve` on a free loopback port, driven over real HTTP.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A graphql-transport-ws connection, over TCP or TLS.
pub type Ws = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>;

pub struct Server {
    child: Option<Child>,
    pub url: String,
    pub db: PathBuf,
    pub dir: PathBuf,
    pub client: reqwest::blocking::Client,
    /// Set when the server speaks HTTPS: websockets trust the same authority.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// What the server has written to stderr since it listened.
    log: Arc<std::sync::Mutex<String>>,
    /// The directory [`Server::start`] made, removed with this server.
    owned: Option<super::TempDir>,
}

impl Server {
    /// Starts a server on a fresh database in a fresh directory.
    pub fn start(tag: &str, config: Option<&str>) -> Server {
        let dir = super::TempDir::new(&format!("server-{tag}"));
        let mut server = Server::start_in(dir.path(), config);
        server.owned = Some(dir);
        server
    }

    /// Starts a server on the database in `dir` (kept from an earlier server).
    pub fn start_in(dir: &Path, config: Option<&str>) -> Server {
        Server::launch(dir, config, Vec::new(), None)
    }

    /// Starts a server with more `serve` arguments. With `trusted_ca` (PEM), the clients
    /// speak HTTPS and trust that authority alone.
    pub fn launch(
        dir: &Path,
        config: Option<&str>,
        args: Vec<OsString>,
        trusted_ca: Option<&str>,
    ) -> Server {
        Server::launch_on(&dir.join("eunomia.db"), dir, config, args, trusted_ca)
    }

    /// As [`Server::launch`], on the database `db` (a file, or a PostgreSQL URL).
    pub fn launch_on(
        db: &Path,
        dir: &Path,
        config: Option<&str>,
        args: Vec<OsString>,
        trusted_ca: Option<&str>,
    ) -> Server {
        let db = db.to_path_buf();
        let mut command = Command::new(env!("CARGO_BIN_EXE_eunomia"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--db"])
            .arg(&db)
            .args(args);
        if let Some(config) = config {
            let path = dir.join("eunomia.toml");
            std::fs::write(&path, config).unwrap();
            command.arg("--config").arg(path);
        }
        let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let mut said = String::new();
        let url = loop {
            said.push_str(&line);
            line.clear();
            assert!(
                stderr.read_line(&mut line).unwrap() > 0,
                "server exited before listening, saying:\n{said}"
            );
            if let Some(rest) = line.trim().strip_prefix("eunomia: listening on ") {
                break rest
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .trim_end_matches("/graphql")
                    .to_string();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        let log = Arc::new(std::sync::Mutex::new(String::new()));
        let kept = log.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            while stderr.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                eprint!("[server] {line}");
                kept.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        Server {
            child: Some(child),
            url,
            db,
            dir: dir.to_path_buf(),
            client: http_client(trusted_ca),
            tls: trusted_ca.map(tls_client_config),
            log,
            owned: None,
        }
    }

    /// Waits until the server has written a line containing `text` to stderr; returns the line.
    pub fn wait_for_log(&self, text: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.log.lock().unwrap().lines().find(|l| l.contains(text)) {
                return line.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "the server did not say {text:?} within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The value of the first series of metric `name` whose labels contain `labels`; 0
    /// when there is none.
    pub fn metric(&self, name: &str, labels: &str) -> f64 {
        let (_, text) = self.get("/metrics");
        text.lines()
            .find(|l| l.starts_with(name) && l.contains(labels))
            .and_then(|l| l.rsplit(' ').next())
            .map_or(0.0, |v| v.parse().unwrap())
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// POSTs a query; returns (HTTP status, the JSON body).
    pub fn post(&self, query: &str, variables: Value, token: Option<&str>) -> (u16, Value) {
        let mut request = self
            .client
            .post(format!("{}/graphql", self.url))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().unwrap();
        let status = response.status().as_u16();
        // A body that is not JSON (a 408 from the HTTP layer, say) comes back as a string.
        let text = response.text().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// A query that must succeed; returns `data`.
    pub fn query(&self, query: &str, variables: Value) -> Value {
        self.query_as(query, variables, None)
    }

    pub fn query_as(&self, query: &str, variables: Value, token: Option<&str>) -> Value {
        let (status, body) = self.post(query, variables, token);
        assert!(body.get("errors").is_none(), "errors from {query}: {body}");
        assert_eq!(status, 200);
        body["data"].clone()
    }

    /// A query that must fail; returns the first error's code and message.
    pub fn error(&self, query: &str, variables: Value, token: Option<&str>) -> (String, String) {
        let (_, body) = self.post(query, variables, token);
        let error = &body["errors"][0];
        assert!(
            !error.is_null(),
            "expected an error from {query}, got {body}"
        );
        (
            error["extensions"]["code"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            error["message"].as_str().unwrap_or("").to_string(),
        )
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        self.get_as(path, None)
    }

    /// Opens a websocket to `/graphql/ws` speaking graphql-transport-ws (nothing sent yet),
    /// over TLS when the server speaks HTTPS. Reads time out after 10 s.
    pub fn ws_open(&self) -> tungstenite::Result<Ws> {
        use tungstenite::client::IntoClientRequest;
        let ws_url = self
            .url
            .replacen("https://", "wss://", 1)
            .replacen("http://", "ws://", 1);
        let mut request = format!("{ws_url}/graphql/ws").into_client_request()?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "graphql-transport-ws"
                .parse()
                .expect("a valid header value"),
        );
        let host = request.uri().authority().expect("a host").as_str();
        let stream = TcpStream::connect(host)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let connector = match &self.tls {
            Some(config) => tungstenite::Connector::Rustls(config.clone()),
            None => tungstenite::Connector::Plain,
        };
        match tungstenite::client_tls_with_config(request, stream, None, Some(connector)) {
            Ok((ws, _)) => Ok(ws),
            Err(tungstenite::HandshakeError::Failure(err)) => Err(err),
            Err(tungstenite::HandshakeError::Interrupted(_)) => {
                unreachable!("a blocking socket does not interrupt its handshake")
            }
        }
    }

    /// Opens a graphql-transport-ws connection and sends `connection_init` with `token`;
    /// when the server refuses it, Err with its close code and reason.
    pub fn ws_connect(&self, token: Option<&str>) -> Result<Ws, (u16, String)> {
        let mut ws = self.ws_open().expect("the websocket route answers");
        let payload = token.map_or(
            json!({}),
            |t| json!({ "Authorization": format!("Bearer {t}") }),
        );
        ws.send(tungstenite::Message::text(
            json!({ "type": "connection_init", "payload": payload }).to_string(),
        ))
        .unwrap();
        match ws.read() {
            Ok(tungstenite::Message::Text(text))
                if serde_json::from_str::<Value>(&text).unwrap()["type"] == "connection_ack" =>
            {
                Ok(ws)
            }
            Ok(tungstenite::Message::Close(Some(frame))) => {
                Err((frame.code.into(), frame.reason.to_string()))
            }
            other => panic!("neither an ack nor a close: {other:?}"),
        }
    }

    /// A GET with a bearer token.
    pub fn get_as(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let mut request = self.client.get(format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().unwrap();
        (response.status().as_u16(), response.text().unwrap())
    }

    /// Starts a session; returns its id.
    pub fn start_session(&self, input: Value) -> String {
        let data = self.query(
            "mutation($input: StartSessionInput!) { startSession(input: $input) { id status } }",
            json!({ "input": input }),
        );
        assert_eq!(data["startSession"]["status"], "RUNNING");
        data["startSession"]["id"].as_str().unwrap().to_string()
    }

    /// Stops a running session; returns its status afterwards (STOPPED).
    pub fn stop_session(&self, id: &str) -> String {
        self.query(
            "mutation($id: ID!) { stopSession(id: $id) { status } }",
            json!({ "id": id }),
        )["stopSession"]["status"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub fn session(&self, id: &str, fields: &str) -> Value {
        self.query(
            &format!("query($id: ID!) {{ session(id: $id) {{ {fields} }} }}"),
            json!({ "id": id }),
        )["session"]
            .clone()
    }

    /// Waits until the session has ended; returns its status.
    pub fn wait_ended(&self, id: &str, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            let status = self.session(id, "status")["status"]
                .as_str()
                .unwrap()
                .to_string();
            if status != "RUNNING" || start.elapsed() > timeout {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, then wait: a graceful stop.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server running");
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().unwrap()
    }

    /// SIGKILL: the server dies without ending its sessions.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("server running");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
    }
}

/// The next graphql-transport-ws message that is not a ping or pong.
pub fn ws_next(ws: &mut Ws) -> Value {
    loop {
        match ws.read().unwrap() {
            tungstenite::Message::Text(text) => {
                let message: Value = serde_json::from_str(&text).unwrap();
                if message["type"] != "ping" && message["type"] != "pong" {
                    return message;
                }
            }
            tungstenite::Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
}

/// Subscribes (or runs an operation) over a connection: `id` names it in the answers.
pub fn ws_subscribe(ws: &mut Ws, id: &str, query: &str, variables: Value) {
    ws.send(tungstenite::Message::text(
        json!({ "id": id, "type": "subscribe", "payload": { "query": query, "variables": variables } })
            .to_string(),
    ))
    .unwrap();
}

/// Runs `eunomia serve` on loopback with `config` in a fresh directory, for a start that
/// is to be refused: its exit code and what it said.
pub fn serve_refused(config: &str) -> (Option<i32>, String) {
    let dir = super::TempDir::new("serve-refused");
    let path = dir.join("eunomia.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_eunomia"))
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(dir.join("eunomia.db"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A blocking HTTP client; with a CA (PEM), HTTPS trusting that authority alone.
pub fn http_client(trusted_ca: Option<&str>) -> reqwest::blocking::Client {
    let mut builder = reqwest::blocking::Client::builder();
    if let Some(ca) = trusted_ca {
        builder = builder
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

/// A TLS client configuration trusting the CA (PEM) alone.
pub fn tls_client_config(trusted_ca: &str) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(trusted_ca.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}
