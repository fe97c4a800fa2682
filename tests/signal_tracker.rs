//! The signal tracker against the real kernel (root): a program (this test) sends a child
//! 7 SIGUSR1 and 3 SIGTERM, each once the child has handled the one before.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{root_or_skip, start_tracker, Collector};
use eunomia::engine::TrackerConfig;
use eunomia::model::{Record, Value};
use serde_json::json;

const SETTLE: Duration = Duration::from_secs(5);

/// Prints "ready", then the number of each signal it handles, until stdin closes.
const CHILD: &str = "import signal, sys\n\
    def handled(sig, frame):\n    print(sig, flush=True)\n\
    signal.signal(signal.SIGUSR1, handled)\n\
    signal.signal(signal.SIGTERM, handled)\n\
    print('ready', flush=True)\n\
    sys.stdin.read()\n";

#[test]
fn sent_signals_are_reported_exactly_with_sender_target_and_verdict() {
    if !root_or_skip("sent_signals_are_reported_exactly_with_sender_target_and_verdict") {
        return;
    }
    let me = std::process::id();
    let all = Collector::default();
    let every = start_tracker(
        "signal",
        TrackerConfig {
            target_pid: Some(me),
            ..TrackerConfig::default()
        },
        all.clone(),
    );
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", CHILD])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let target = child.id();
    // Only SIGTERM, only to the child, whoever sends it: an instance with the options.
    let terms = Collector::default();
    let mut config = TrackerConfig::default();
    config.options = json!({ "signals": ["TERM"], "target_pid": target })
        .as_object()
        .unwrap()
        .clone();
    let only_term = start_tracker("signal", config, terms.clone());
    // The child's side: each signal as it takes it, to its handler.
    let taken = Collector::default();
    let mut config = TrackerConfig {
        target_pid: Some(target),
        ..TrackerConfig::default()
    };
    config.options = json!({ "deliveries": true }).as_object().unwrap().clone();
    let deliveries = start_tracker("signal", config, taken.clone());

    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let sent: Vec<i32> = [libc::SIGUSR1; 7]
        .into_iter()
        .chain([libc::SIGTERM; 3])
        .collect();
    for &sig in &sent {
        // SAFETY: kill on our own child's pid.
        assert_eq!(unsafe { libc::kill(target as i32, sig) }, 0);
        // Handled before the next is sent: none is merged into a pending one.
        assert_eq!(lines.next().unwrap().unwrap(), sig.to_string());
    }
    child.stdin.take().unwrap().write_all(b"").unwrap();
    assert!(child.wait().unwrap().success());
    all.wait_for(SETTLE, |events| events.len() >= sent.len());
    terms.wait_for(SETTLE, |events| events.len() >= 3);
    taken.wait_for(SETTLE, |events| events.len() >= sent.len());
    std::thread::sleep(Duration::from_millis(200));
    every.stop().unwrap();
    only_term.stop().unwrap();
    deliveries.stop().unwrap();

    let described = |events: Vec<eunomia::trackers::Event>| -> Vec<Vec<String>> {
        events
            .iter()
            .map(|e| {
                [
                    "kind",
                    "pid",
                    "signal",
                    "sig",
                    "code",
                    "target_pid",
                    "target_comm",
                    "group",
                    "result",
                ]
                .iter()
                .map(|f| e.get(f).map_or("?".into(), |v| v.to_string()))
                .collect()
            })
            .collect()
    };
    let expected = |sig: i32, name: &str| -> Vec<String> {
        [
            "signal",
            &me.to_string(),
            name,
            &sig.to_string(),
            "SI_USER",
            &target.to_string(),
            "python3",
            "1",
            "delivered",
        ]
        .map(str::to_string)
        .to_vec()
    };
    let mut want: Vec<Vec<String>> = vec![expected(libc::SIGUSR1, "SIGUSR1"); 7];
    want.extend(vec![expected(libc::SIGTERM, "SIGTERM"); 3]);
    assert_eq!(described(all.events()), want);
    assert_eq!(described(terms.events()), want[7..].to_vec());
    // Delivered in the child, to its handler, in the order sent. (Its own exit at the end
    // raises no signal it takes.)
    let delivered: Vec<(String, String, String)> = taken
        .events()
        .iter()
        .filter(|e| e.kind() == "deliver")
        .map(|e| {
            let text = |f: &str| e.get(f).map_or("?".into(), |v| v.to_string());
            (text("signal"), text("pid"), text("action"))
        })
        .collect();
    let want_delivered: Vec<(String, String, String)> = want
        .iter()
        .map(|w| (w[2].clone(), target.to_string(), "handler".to_string()))
        .collect();
    assert_eq!(delivered, want_delivered);
    assert!(all
        .events()
        .iter()
        .all(|e| e.get("comm") != Some(Value::Str("python3"))));
}
