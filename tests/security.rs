//! The security analyzer. Loading rules: the built-in set, and every kind of bad rules file
//! named precisely (no kernel). Each built-in rule against the real kernel (root): a
//! harmless trigger gives exactly one alert, with the rule, pid, comm and output, stored in
//! a real SQLite file; a benign lookalike gives none.

mod common;

use std::sync::Arc;

use common::{root_or_skip, trace_python_also, TempDir};
use eunomia::metrics::Metrics;
use eunomia::model::Severity;
use eunomia::results::sqlite::{AlertFilter, AlertRecord, Store, StoreOptions};
use eunomia::security::{AlertOptions, Alerts, RuleError, RuleMatcher, RuleSet};

#[test]
fn the_builtin_rules_load_each_with_a_mitre_technique() {
    let set = RuleSet::builtin();
    assert!(set.rules().len() >= 10, "{} rules", set.rules().len());
    for rule in set.rules() {
        assert!(rule.mitre.technique.starts_with('T'), "{}", rule.id);
        assert!(!rule.mitre.tactic.is_empty(), "{}", rule.id);
        assert!(rule.enabled(), "{}", rule.id);
    }
}

/// Loads `text`, which must fail; returns the error's text.
fn refused(text: &str) -> String {
    RuleSet::parse(text).unwrap_err().to_string()
}

const GOOD: &str = r#"
- list: secrets
  items: [/etc/shadow]
- rule: r1
  severity: LOW
  mitre: {technique: T1, name: n, tactic: t}
  sources: [{tracker: files}]
  condition: path in secrets
  output: "{comm} {path}"
"#;

#[test]
fn bad_rules_files_are_refused_naming_the_entry_and_its_line() {
    assert_eq!(RuleSet::parse(GOOD).unwrap().rules().len(), 1);
    let rule = |condition: &str, output: &str| {
        GOOD.replace("path in secrets", condition)
            .replace("\"{comm} {path}\"", output)
    };
    assert!(refused("- rule: [").starts_with("rules file: "));
    let err = RuleSet::parse(&rule("path in secrets &&", "\"x\"")).unwrap_err();
    assert!(
        matches!(&err, RuleError::Entry { index: 2, line: 4, name, message }
            if name == "r1" && message.starts_with("condition: ")),
        "{err:?}"
    );
    let message = refused(&rule("paht == '/x'", "\"x\""));
    assert!(
        message.contains("entry 2 (line 4, `r1`)")
            && message.contains("`paht` is no field of files and no list"),
        "{message}"
    );
    let message = refused(&rule("pid > 'x'", "\"x\""));
    assert!(
        message.contains("`r1`") && message.contains("condition"),
        "{message}"
    );
    let message = refused(&rule("path.matches('(')", "\"x\""));
    assert!(
        message.contains("`r1`") && message.contains("condition"),
        "{message}"
    );
    let message = refused(&rule("path == '/x'", "\"{nope}\""));
    assert!(message.contains("`{nope}` is no field"), "{message}");
    let message = refused(&GOOD.replace("tracker: files", "tracker: nosuch"));
    assert!(message.contains("unknown tracker `nosuch`"), "{message}");
    let message = refused(&GOOD.replace("severity: LOW", "severity: LOUD"));
    assert!(message.starts_with("rules file: "), "{message}");
    let message = refused(&format!("{GOOD}{GOOD}"));
    assert!(message.contains("a second rule with this id"), "{message}");
    let message = refused(&format!(
        "{}- macro: loop\n  condition: loop\n",
        GOOD.replace("path in secrets", "loop")
    ));
    assert!(message.contains("cycle"), "{message}");
}

/// A store, the alert writer and the built-in rules, on a runtime of their own.
struct Analyzer {
    runtime: tokio::runtime::Runtime,
    alerts: Arc<Alerts>,
    set: RuleSet,
    _dir: TempDir,
}

impl Analyzer {
    fn new(test: &str) -> Self {
        let dir = TempDir::new(&format!("security-{test}"));
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let alerts = runtime.block_on(async {
            let store = Store::open(
                &dir.join("eunomia.db"),
                StoreOptions::default(),
                Metrics::new(),
            )
            .await
            .unwrap();
            Alerts::start(Arc::new(store), Metrics::new(), AlertOptions::default())
        });
        Self {
            runtime,
            alerts,
            set: RuleSet::builtin(),
            _dir: dir,
        }
    }

    /// Runs python `script` (see `trace_python`) under `tracker` with rule `id`; returns
    /// the stored alerts of that rule, and the python's pid.
    fn alerts_of(
        &self,
        id: &str,
        tracker: &str,
        options: serde_json::Value,
        script: &str,
        args: &[&str],
    ) -> Vec<AlertRecord> {
        let rules = self.set.select(&[id.to_string()]).unwrap();
        let matcher = RuleMatcher::new(
            &self.set,
            &rules,
            tracker,
            self.alerts.sender(),
            Metrics::new(),
        );
        trace_python_also(
            tracker,
            options,
            script,
            args,
            None,
            0,
            vec![Box::new(matcher)],
        );
        self.runtime.block_on(async {
            self.alerts.flush().await;
            let filter = AlertFilter {
                rule: Some(id.to_string()),
                ..AlertFilter::default()
            };
            self.alerts.list(&filter, 100, None).await.unwrap().0
        })
    }
}

/// The python that runs `action` once told to go, printing its pid first.
fn python(action: &str) -> String {
    format!(
        "import os, sys\nprint('ready', flush=True)\nsys.stdin.readline()\n\
         print(os.getpid(), flush=True)\n{action}\n"
    )
}

/// A files-tracker rule: `trigger` gives exactly one alert of `id` from the python, whose
/// output names `path`; `lookalike` gives none.
fn file_rule(id: &str, trigger: &str, lookalike: &str, path: &str) {
    let analyzer = Analyzer::new(id);
    let options = serde_json::json!({ "opens": "stream" });
    let quiet = analyzer.alerts_of(id, "files", options.clone(), &python(lookalike), &[]);
    assert_eq!(quiet, [], "the lookalike raised {id}");
    let raised = analyzer.alerts_of(id, "files", options, &python(trigger), &[]);
    assert_eq!(raised.len(), 1, "{raised:#?}");
    let alert = &raised[0];
    assert_eq!(alert.rule, id);
    assert_eq!(alert.comm, "python3");
    assert_eq!(alert.tracker, "files");
    assert_eq!(alert.count, 1);
    assert_eq!(alert.container_id, None);
    assert!(alert.output.contains(path), "{}", alert.output);
    assert!(
        alert.output.contains(&format!("(pid {})", alert.pid)),
        "{}",
        alert.output
    );
    let event: serde_json::Value = serde_json::from_str(&alert.event).unwrap();
    assert_eq!(event["pid"], alert.pid);
    assert_eq!(event["path"], path);
    assert!(alert.severity >= Severity::Medium);
}

/// A path of this test's own, under `dir`.
fn own(dir: &str, name: &str) -> String {
    format!("{dir}/eunomia-rule-{}-{name}", std::process::id())
}

#[test]
fn read_sensitive_file() {
    if root_or_skip("read_sensitive_file") {
        file_rule(
            "read_sensitive_file",
            "open('/etc/shadow').read()",
            "open('/etc/hostname').read()",
            "/etc/shadow",
        );
    }
}

#[test]
fn write_below_etc() {
    if root_or_skip("write_below_etc") {
        let path = own("/etc", "etc");
        file_rule(
            "write_below_etc",
            &format!("open('{path}', 'w').close(); os.unlink('{path}')"),
            &format!(
                "open('/etc/hostname').read(); open('{}', 'w').close()",
                own("/tmp", "etc")
            ),
            &path,
        );
        let _ = std::fs::remove_file(own("/tmp", "etc"));
    }
}

#[test]
fn write_below_binary_dir() {
    if root_or_skip("write_below_binary_dir") {
        let path = own("/usr/local/bin", "bin");
        file_rule(
            "write_below_binary_dir",
            &format!("open('{path}', 'w').close(); os.unlink('{path}')"),
            "open('/usr/bin/env', 'rb').read(16)",
            &path,
        );
    }
}

#[test]
fn create_file_below_dev() {
    if root_or_skip("create_file_below_dev") {
        let path = own("/dev", "dev");
        let shm = own("/dev/shm", "dev");
        file_rule(
            "create_file_below_dev",
            &format!("open('{path}', 'w').close(); os.unlink('{path}')"),
            &format!(
                "open('/dev/null', 'w').close(); open('{shm}', 'w').close(); os.unlink('{shm}')"
            ),
            &path,
        );
    }
}

#[test]
fn clear_log_file() {
    if root_or_skip("clear_log_file") {
        let path = own("/var/log", "log.log");
        std::fs::write(&path, "a line\n").unwrap();
        file_rule(
            "clear_log_file",
            &format!("open('{path}', 'w').close()"),
            &format!("open('{path}', 'a').write('another\\n')"),
            &path,
        );
        std::fs::remove_file(&path).unwrap();
    }
}

#[test]
fn shell_history_truncated() {
    if root_or_skip("shell_history_truncated") {
        let dir = TempDir::new("history");
        let path = format!("{}/.bash_history", dir.path().display());
        file_rule(
            "shell_history_truncated",
            &format!("open('{path}', 'w').close()"),
            &format!("open('{path}', 'a').write('ls\\n')"),
            &path,
        );
    }
}

#[test]
fn authorized_keys_modified() {
    if root_or_skip("authorized_keys_modified") {
        let dir = TempDir::new("ssh");
        std::fs::create_dir(dir.join(".ssh")).unwrap();
        let path = format!("{}/.ssh/authorized_keys", dir.path().display());
        file_rule(
            "authorized_keys_modified",
            &format!("open('{path}', 'a').write('ssh-ed25519 AAAA test\\n')"),
            &format!(
                "open('{}/.ssh/known_hosts', 'a').write('host\\n')",
                dir.path().display()
            ),
            &path,
        );
    }
}

#[test]
fn cron_modified() {
    if root_or_skip("cron_modified") {
        // A machine without cron has neither: made for the test, removed after.
        let made_dir = !std::path::Path::new("/etc/cron.d").exists();
        std::fs::create_dir_all("/etc/cron.d").unwrap();
        let made_table = !std::path::Path::new("/etc/crontab").exists();
        if made_table {
            std::fs::write("/etc/crontab", "# made by eunomia's tests\n").unwrap();
        }
        let path = own("/etc/cron.d", "cron");
        file_rule(
            "cron_modified",
            &format!("open('{path}', 'w').close(); os.unlink('{path}')"),
            "open('/etc/crontab').read()",
            &path,
        );
        if made_table {
            std::fs::remove_file("/etc/crontab").unwrap();
        }
        if made_dir {
            std::fs::remove_dir("/etc/cron.d").unwrap();
        }
    }
}

#[test]
fn shell_rc_modified() {
    if root_or_skip("shell_rc_modified") {
        let dir = TempDir::new("shellrc");
        let path = format!("{}/.bashrc", dir.path().display());
        std::fs::write(&path, "# rc\n").unwrap();
        file_rule(
            "shell_rc_modified",
            &format!("open('{path}', 'a').write('alias ls=x\\n')"),
            &format!("open('{path}').read()"),
            &path,
        );
    }
}

#[test]
fn proc_mem_opened() {
    if root_or_skip("proc_mem_opened") {
        // The python opens its own memory: the path names its pid, which the test learns
        // from the alert and checks against the event.
        let analyzer = Analyzer::new("proc_mem_opened");
        let options = serde_json::json!({ "opens": "stream" });
        let status = "open(f'/proc/{os.getpid()}/status').read()";
        let quiet = analyzer.alerts_of(
            "proc_mem_opened",
            "files",
            options.clone(),
            &python(status),
            &[],
        );
        assert_eq!(quiet, []);
        let mem = "open(f'/proc/{os.getpid()}/mem', 'rb').close()";
        let raised = analyzer.alerts_of("proc_mem_opened", "files", options, &python(mem), &[]);
        assert_eq!(raised.len(), 1, "{raised:#?}");
        let path = format!("/proc/{}/mem", raised[0].pid);
        assert!(
            raised[0].output.ends_with(&format!("opened {path}")),
            "{}",
            raised[0].output
        );
    }
}

#[test]
fn exec_from_dev_shm() {
    if !root_or_skip("exec_from_dev_shm") {
        return;
    }
    let copy = own("/dev/shm", "true");
    std::fs::copy("/bin/true", &copy).unwrap();
    let analyzer = Analyzer::new("exec_from_dev_shm");
    // The python becomes the program (same pid), so the pid filter keeps its exec.
    let quiet = analyzer.alerts_of(
        "exec_from_dev_shm",
        "process",
        serde_json::json!({}),
        &python("os.execv('/bin/true', ['true'])"),
        &[],
    );
    assert_eq!(quiet, []);
    let raised = analyzer.alerts_of(
        "exec_from_dev_shm",
        "process",
        serde_json::json!({}),
        &python(&format!("os.execv('{copy}', ['x'])")),
        &[],
    );
    std::fs::remove_file(&copy).unwrap();
    assert_eq!(raised.len(), 1, "{raised:#?}");
    assert_eq!(raised[0].tracker, "process");
    assert!(
        raised[0]
            .output
            .ends_with(&format!("was executed from {copy}")),
        "{}",
        raised[0].output
    );
}

/// Through the server: a files session with every rule raises one alert for two reads of
/// /etc/shadow (the repeat counted up), which `alerts`, `rules`, the `alertRaised`
/// subscription and /metrics all show; a rule turned off raises nothing more; a bad rules
/// file is refused by reloadRules with the rules kept, and a good one replaces them.
#[test]
fn sessions_raise_alerts_that_the_api_lists_streams_and_counts() {
    use std::io::{BufRead, Write};

    if !root_or_skip("sessions_raise_alerts_that_the_api_lists_streams_and_counts") {
        return;
    }
    let rules_dir = TempDir::new("security-rules");
    let rules_file = rules_dir.join("rules.yaml");
    std::fs::write(&rules_file, eunomia::security::rules::BUILTIN).unwrap();
    let config = format!("[security]\nrules_file = \"{}\"\n", rules_file.display());
    let server = common::server::Server::start("security", Some(&config));
    let builtin = RuleSet::builtin().rules().len();

    let start = |pid: u32, rules: &str| {
        format!(
            r#"mutation {{ startSession(input: {{tracker: "files", durationSecs: 30,
                 filter: {{pid: {pid}}}, config: {{opens: "stream"}}, rules: {rules}}}) {{ id }} }}"#
        )
    };
    let (code, message) = server.error(&start(1, r#"["nope"]"#), serde_json::json!({}), None);
    assert_eq!(code, "UNKNOWN_RULE", "{message}");
    let (code, message) = server.error(
        &start(1, r#"["exec_from_dev_shm"]"#),
        serde_json::json!({}),
        None,
    );
    assert_eq!(
        (code.as_str(), message.contains("reads files")),
        ("UNKNOWN_RULE", true),
        "{message}"
    );

    let mut ws = server.ws_connect(None).unwrap();
    common::server::ws_subscribe(
        &mut ws,
        "a",
        "subscription { alertRaised(minSeverity: HIGH) { rule pid comm output count } }",
        serde_json::json!({}),
    );
    // Runs a python that reads /etc/shadow `times` times once told to, traced by a
    // session with every rule; returns its pid once it has ended.
    let read_shadow = |times: usize| {
        let script = format!(
            "import sys\nprint('ready', flush=True)\nsys.stdin.readline()\n\
             for _ in range({times}): open('/etc/shadow').read()\n"
        );
        let mut child = std::process::Command::new("/usr/bin/python3")
            .args(["-c", &script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "ready");
        let id = server.query(&start(child.id(), r#"["*"]"#), serde_json::json!({}))
            ["startSession"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        assert!(child.wait().unwrap().success());
        server.stop_session(&id);
        child.id()
    };
    let alerts_query = r#"{ alerts(filter: {rule: "read_sensitive_file"}) {
        edges { node { rule severity technique tactic tracker pid comm count output sessionId } } } }"#;
    let alerts = |want: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let edges =
                server.query(alerts_query, serde_json::json!({}))["alerts"]["edges"].clone();
            if edges.as_array().unwrap().len() >= want || std::time::Instant::now() > deadline {
                return edges;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };

    let pid = read_shadow(2);
    let edges = alerts(1);
    assert_eq!(edges.as_array().unwrap().len(), 1, "{edges}");
    let alert = &edges[0]["node"];
    assert_eq!(alert["pid"], pid);
    assert_eq!(alert["comm"], "python3");
    assert_eq!(alert["severity"], "HIGH");
    assert_eq!(alert["technique"], "T1003.008");
    assert_eq!(alert["tactic"], "credential-access");
    assert_eq!(alert["tracker"], "files");
    assert_eq!(
        alert["output"],
        format!("python3 (pid {pid}) read the sensitive file /etc/shadow")
    );
    // Stored once, counted twice; the repeat may land just after the first query.
    let counted = || alerts(1)[0]["node"]["count"].clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while counted() != 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(counted(), 2);
    let pushed = common::server::ws_next(&mut ws);
    assert_eq!(
        pushed["payload"]["data"]["alertRaised"]["rule"], "read_sensitive_file",
        "{pushed}"
    );
    assert_eq!(
        pushed["payload"]["data"]["alertRaised"]["pid"], pid,
        "{pushed}"
    );
    let rules = server.query("{ rules { id enabled hits } }", serde_json::json!({}));
    let listed = rules["rules"].as_array().unwrap();
    assert_eq!(listed.len(), builtin);
    let rule = listed
        .iter()
        .find(|r| r["id"] == "read_sensitive_file")
        .unwrap();
    assert_eq!(
        (&rule["enabled"], &rule["hits"]),
        (&serde_json::json!(true), &serde_json::json!(2))
    );
    let (_, metrics) = server.get("/metrics");
    assert!(
        metrics.contains(r#"eunomia_alerts_total{rule="read_sensitive_file",severity="HIGH"} 2"#),
        "{metrics}"
    );

    // Off: nothing more, from a new process either.
    let off = server.query(
        r#"mutation { setRuleEnabled(id: "read_sensitive_file", enabled: false) { enabled } }"#,
        serde_json::json!({}),
    );
    assert_eq!(off["setRuleEnabled"]["enabled"], false);
    read_shadow(1);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(alerts(2).as_array().unwrap().len(), 1);

    // A bad file is refused, naming the entry; the rules stay.
    std::fs::write(&rules_file, "- rule: broken\n  condition: 'x ==\n").unwrap();
    let (code, message) = server.error("mutation { reloadRules }", serde_json::json!({}), None);
    assert_eq!(code, "BAD_RULES", "{message}");
    let listed = server.query("{ rules { id } }", serde_json::json!({}))["rules"].clone();
    assert_eq!(listed.as_array().unwrap().len(), builtin);
    std::fs::write(&rules_file, GOOD).unwrap();
    let reloaded = server.query("mutation { reloadRules }", serde_json::json!({}));
    assert_eq!(reloaded["reloadRules"], 1);
    let listed = server.query("{ rules { id } }", serde_json::json!({}))["rules"].clone();
    assert_eq!(listed, serde_json::json!([{ "id": "r1" }]));
}
