//! A real `eunomia serve` on a free loopback port, driven over real HTTP.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub struct Server {
    child: Option<Child>,
    pub url: String,
    pub db: PathBuf,
    pub dir: PathBuf,
    client: reqwest::blocking::Client,
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
        let db = dir.join("eunomia.db");
        let mut command = Command::new(env!("CARGO_BIN_EXE_eunomia"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--db"])
            .arg(&db);
        if let Some(config) = config {
            let path = dir.join("eunomia.toml");
            std::fs::write(&path, config).unwrap();
            command.arg("--config").arg(path);
        }
        let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let url = loop {
            line.clear();
            assert!(
                stderr.read_line(&mut line).unwrap() > 0,
                "server exited before listening"
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
        std::thread::spawn(move || {
            let mut sink = String::new();
            while stderr.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                eprint!("[server] {sink}");
                sink.clear();
            }
        });
        Server {
            child: Some(child),
            url,
            db,
            dir: dir.to_path_buf(),
            client: reqwest::blocking::Client::new(),
            owned: None,
        }
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
        (status, response.json().unwrap())
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

    /// Opens a websocket to `/graphql/ws` speaking graphql-transport-ws (nothing sent yet).
    pub fn ws_open(
        &self,
    ) -> tungstenite::Result<
        tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
    > {
        use tungstenite::client::IntoClientRequest;
        let mut request =
            format!("{}/graphql/ws", self.url.replace("http://", "ws://")).into_client_request()?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "graphql-transport-ws"
                .parse()
                .expect("a valid header value"),
        );
        tungstenite::connect(request).map(|(ws, _)| ws)
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
