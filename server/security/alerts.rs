//! Alerts: what the matcher raises, deduplicated, stored in SQLite and published to
//! subscribers. The matcher runs on a tracker's thread and must never wait, so it hands
//! each alert to a bounded queue; a full queue counts the alert as lost (stage `alerts`).
//! One task drains the queue: the same rule, process and output again within the dedup
//! window counts up the stored alert instead of adding one, so a loop cannot flood.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};

use super::rules::Rule;
use crate::handler::push_json_record;
use crate::metrics::{stage, Metrics};
use crate::model::{EventBody, Record, SessionId, Value};
use crate::results::store::{AlertFilter, AlertRecord, Store, StoreError};
use crate::trackers::Event;

/// How the alert writer behaves.
#[derive(Clone, Debug)]
pub struct AlertOptions {
    /// Repeats within this window count up one alert.
    pub dedup: Duration,
    /// Stored alerts kept at most; the oldest go first.
    pub keep: u64,
    /// Alerts waiting to be stored at most.
    pub queue: usize,
}

impl Default for AlertOptions {
    fn default() -> Self {
        Self {
            dedup: Duration::from_secs(30),
            keep: 100_000,
            queue: 4096,
        }
    }
}

/// One match, on its way to the writer.
pub struct Raised {
    pub rule: Arc<Rule>,
    pub event: Event,
    pub output: String,
    pub session: Option<SessionId>,
}

/// What the writer's queue carries.
enum Queued {
    /// With the process's executable, read when it was raised.
    Alert(Box<Raised>, Option<String>),
    /// Answered once everything queued before it is stored.
    Flush(oneshot::Sender<()>),
}

/// The matcher's end of the queue.
#[derive(Clone)]
pub struct AlertSender {
    tx: mpsc::Sender<Queued>,
    metrics: Metrics,
}

impl AlertSender {
    /// Queues an alert without waiting; counts it raised, and lost when the queue is full.
    pub fn raise(&self, raised: Raised) {
        let rule = &raised.rule;
        self.metrics
            .alerts
            .with_label_values(&[rule.id.as_str(), rule.severity.as_str()])
            .inc();
        let tracker = raised.event.body.info().name;
        let exe = exe_of(&raised.event);
        if self
            .tx
            .try_send(Queued::Alert(Box::new(raised), exe))
            .is_err()
        {
            self.metrics
                .lost
                .with_label_values(&[tracker, stage::ALERTS])
                .inc();
        }
    }
}

/// The security analyzer's alerts: their queue, store and subscribers.
pub struct Alerts {
    store: Arc<Store>,
    sender: AlertSender,
    published: broadcast::Sender<Arc<AlertRecord>>,
}

impl Alerts {
    /// Starts the writer task on the current tokio runtime.
    pub fn start(store: Arc<Store>, metrics: Metrics, options: AlertOptions) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(options.queue.max(1));
        let (published, _) = broadcast::channel(1024);
        let alerts = Arc::new(Self {
            store: store.clone(),
            sender: AlertSender {
                tx,
                metrics: metrics.clone(),
            },
            published: published.clone(),
        });
        tokio::spawn(write_alerts(rx, store, published, metrics, options));
        alerts
    }

    pub fn sender(&self) -> AlertSender {
        self.sender.clone()
    }

    /// Returns once every alert raised before the call is stored (or its storing failed).
    pub async fn flush(&self) {
        let (done, stored) = oneshot::channel();
        if self.sender.tx.send(Queued::Flush(done)).await.is_ok() {
            let _ = stored.await;
        }
    }

    /// New alerts as they are stored (repeats counted up are not new).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<AlertRecord>> {
        self.published.subscribe()
    }

    pub async fn list(
        &self,
        filter: &AlertFilter,
        first: usize,
        after: Option<i64>,
    ) -> Result<(Vec<AlertRecord>, bool), StoreError> {
        self.store.list_alerts(filter, first, after).await
    }
}

/// What makes two alerts the same: rule, process and rendered output.
type DedupKey = (String, u32, String);

async fn write_alerts(
    mut rx: mpsc::Receiver<Queued>,
    store: Arc<Store>,
    published: broadcast::Sender<Arc<AlertRecord>>,
    metrics: Metrics,
    options: AlertOptions,
) {
    let window = u64::try_from(options.dedup.as_nanos()).unwrap_or(u64::MAX);
    let mut recent: HashMap<DedupKey, (i64, u64)> = HashMap::new();
    while let Some(queued) = rx.recv().await {
        let (raised, exe) = match queued {
            Queued::Alert(raised, exe) => (*raised, exe),
            Queued::Flush(done) => {
                let _ = done.send(());
                continue;
            }
        };
        let ts = raised.event.header.ts_ns;
        let key = (
            raised.rule.id.clone(),
            raised.event.header.pid,
            raised.output.clone(),
        );
        if let Some((id, last)) = recent.get_mut(&key) {
            if ts.saturating_sub(*last) < window {
                *last = ts;
                if let Err(err) = store.repeat_alert(*id, ts).await {
                    tracing::warn!(rule = %raised.rule.id, "counting a repeated alert failed: {err}");
                }
                continue;
            }
        }
        let mut alert = record_of(&raised, exe);
        match store.insert_alert(&alert).await {
            Ok(id) => {
                alert.id = id;
                recent.insert(key, (id, ts));
            }
            Err(err) => {
                // Published all the same: a full disk must not hide an attack from those
                // watching.
                tracing::warn!(rule = %raised.rule.id, "storing an alert failed: {err}");
                metrics
                    .lost
                    .with_label_values(&[raised.event.body.info().name, stage::ALERTS])
                    .inc();
            }
        }
        let _ = published.send(Arc::new(alert));
        if recent.len() > 10_000 {
            recent.retain(|_, (_, last)| ts.saturating_sub(*last) < window);
        }
        if let Err(err) = store.trim_alerts(options.keep).await {
            tracing::warn!("trimming stored alerts failed: {err}");
        }
    }
}

/// The executable of the event's process: an exec's own file, or else what
/// `/proc/<pid>/exe` says while the process lives (alerts are rare: one readlink each).
fn exe_of(event: &Event) -> Option<String> {
    if event.body.info().name == "process" && event.body.kind() == "exec" {
        if let Some(Value::Str(path)) = event.get("filename") {
            return Some(path.to_string());
        }
    }
    std::fs::read_link(format!("/proc/{}/exe", event.header.pid))
        .ok()
        .map(|path| path.to_string_lossy().into_owned())
}

fn record_of(raised: &Raised, exe: Option<String>) -> AlertRecord {
    let event = &raised.event;
    let text = |name: &str| match event.get(name) {
        Some(Value::Str(s)) => Some(s.to_string()),
        _ => None,
    };
    let mut json = Vec::new();
    push_json_record(&mut json, event);
    let rule = &raised.rule;
    AlertRecord {
        id: 0,
        ts_ns: event.header.ts_ns,
        last_ts_ns: event.header.ts_ns,
        count: 1,
        rule: rule.id.clone(),
        severity: rule.severity,
        technique: rule.mitre.technique.clone(),
        technique_name: rule.mitre.name.clone(),
        tactic: rule.mitre.tactic.clone(),
        tracker: event.body.info().name.to_string(),
        session_id: raised.session.clone(),
        pid: event.header.pid,
        ppid: event.header.ppid,
        comm: event.header.comm.as_str().to_string(),
        exe,
        container_id: text("container_id"),
        container_name: text("container"),
        container_image: text("container_image"),
        output: raised.output.clone(),
        event: String::from_utf8_lossy(&json).into_owned(),
    }
}
