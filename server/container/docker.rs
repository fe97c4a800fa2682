//! A small client of the Docker Engine API over its unix socket: the running containers,
//! one container's details, and the stream of container events.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

use super::registry::EngineInfo;
use super::ContainerState;

/// Where dockerd listens by default.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// API version asked for: Docker 20.10 and later speak it.
const API: &str = "/v1.41";
/// The longest event line accepted; Docker's are well under a kilobyte.
const MAX_LINE: usize = 1 << 20;
/// `/events` restricted to container life-cycle events, URL-encoded:
/// `{"type":["container"],"event":["create","start","die","destroy","pause","unpause","rename"]}`.
const EVENTS_QUERY: &str = "/events?filters=%7B%22type%22%3A%5B%22container%22%5D%2C%22event%22%3A%5B%22create%22%2C%22start%22%2C%22die%22%2C%22destroy%22%2C%22pause%22%2C%22unpause%22%2C%22rename%22%5D%7D";

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("connecting to {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("Docker API: {0}")]
    Http(#[from] hyper::Error),
    #[error("Docker API {path}: HTTP {status}")]
    Status { path: String, status: StatusCode },
    #[error("Docker API {path}: unexpected answer: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error("Docker event longer than {MAX_LINE} bytes")]
    LineTooLong,
}

pub struct DockerClient {
    socket: PathBuf,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Listed {
    id: String,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Inspected {
    id: String,
    name: String,
    state: InspectedState,
    config: InspectedConfig,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectedState {
    running: bool,
    paused: bool,
    pid: u32,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectedConfig {
    image: String,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

/// A running (or paused) container as Docker describes it, with its init process.
pub struct Details {
    pub info: EngineInfo,
    /// 0 when it is not running.
    pub pid: u32,
}

/// One container event: what happened (`create`, `start`, `die`, ...) to which
/// container, and its name and image as the event gives them.
#[derive(Debug, PartialEq, Eq)]
pub struct DockerEvent {
    pub action: String,
    pub id: String,
    pub name: Option<String>,
    pub image: Option<String>,
}

#[derive(serde::Deserialize)]
struct RawEvent {
    #[serde(rename = "Action")]
    action: String,
    #[serde(rename = "Actor")]
    actor: Actor,
}

#[derive(serde::Deserialize)]
struct Actor {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Attributes", default)]
    attributes: BTreeMap<String, String>,
}

impl DockerClient {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn get(&self, path: &str) -> Result<Response<Incoming>, DockerError> {
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| DockerError::Connect {
                    path: self.socket.clone(),
                    source,
                })?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // Ends when the response is read or the engine closes the connection.
            let _ = connection.await;
        });
        let request = Request::get(format!("{API}{path}"))
            .header(hyper::header::HOST, "docker")
            .body(Empty::<Bytes>::new())
            .expect("a GET with constant headers is a valid request");
        Ok(sender.send_request(request).await?)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<T>, DockerError> {
        let response = self.get(path).await?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            status => {
                return Err(DockerError::Status {
                    path: path.to_string(),
                    status,
                })
            }
        }
        let body = response.into_body().collect().await?.to_bytes();
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|source| DockerError::Json {
                path: path.to_string(),
                source,
            })
    }

    /// Ids of the running containers.
    pub async fn running(&self) -> Result<Vec<String>, DockerError> {
        let listed: Vec<Listed> = self.get_json("/containers/json").await?.unwrap_or_default();
        Ok(listed.into_iter().map(|c| c.id).collect())
    }

    /// A container's details; `None` when Docker no longer has it.
    pub async fn inspect(&self, id: &str) -> Result<Option<Details>, DockerError> {
        let Some(c) = self
            .get_json::<Inspected>(&format!("/containers/{id}/json"))
            .await?
        else {
            return Ok(None);
        };
        let state = match (c.state.running, c.state.paused) {
            (true, true) => ContainerState::Paused,
            (true, false) => ContainerState::Running,
            (false, _) => ContainerState::Exited,
        };
        Ok(Some(Details {
            pid: if c.state.running { c.state.pid } else { 0 },
            info: EngineInfo {
                id: c.id,
                name: c.name.trim_start_matches('/').to_string(),
                image: c.config.image,
                labels: c.config.labels.unwrap_or_default(),
                state,
            },
        }))
    }

    /// Container events from now on, until the engine closes the stream.
    pub async fn events(&self) -> Result<EventStream, DockerError> {
        let response = self.get(EVENTS_QUERY).await?;
        if response.status() != StatusCode::OK {
            return Err(DockerError::Status {
                path: "/events".to_string(),
                status: response.status(),
            });
        }
        Ok(EventStream {
            body: response.into_body(),
            buf: Vec::new(),
        })
    }
}

/// Docker's event stream: one JSON object per line, in HTTP chunks of any size.
pub struct EventStream {
    body: Incoming,
    buf: Vec<u8>,
}

impl EventStream {
    /// The next event; `None` when the stream has ended.
    pub async fn next(&mut self) -> Result<Option<DockerEvent>, DockerError> {
        loop {
            while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                if let Some(event) = parse_event(&line) {
                    return Ok(Some(event));
                }
            }
            if self.buf.len() > MAX_LINE {
                return Err(DockerError::LineTooLong);
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(frame) => {
                    if let Ok(data) = frame?.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

/// An event line; `None` for blank lines and events of no container.
fn parse_event(line: &[u8]) -> Option<DockerEvent> {
    let mut raw: RawEvent = serde_json::from_slice(line).ok()?;
    Some(DockerEvent {
        action: raw.action,
        id: raw.actor.id,
        name: raw.actor.attributes.remove("name"),
        image: raw.actor.attributes.remove("image"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_container_events() {
        let line = br#"{"status":"start","id":"7f2f","from":"bb:latest","Type":"container","Action":"start","Actor":{"ID":"7f2f","Attributes":{"image":"bb:latest","name":"web1"}},"scope":"local","time":1,"timeNano":1}
"#;
        assert_eq!(
            parse_event(line),
            Some(DockerEvent {
                action: "start".into(),
                id: "7f2f".into(),
                name: Some("web1".into()),
                image: Some("bb:latest".into()),
            })
        );
        assert_eq!(parse_event(b"\n"), None);
    }
}
