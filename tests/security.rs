//! The security analyzer. Loading rules: the built-in set, and every kind of bad rules file
//! named precisely (no kernel). Each built-in rule against the real kernel (root): a
//! harmless trigger gives exactly one alert, with the rule, pid, comm and output, stored in
//! a real SQLite file; a benign lookalike gives none.

mod common;

use std::sync::Arc;

use common::{root_or_skip, trace_python_also, TempDir};
use eunomia::metrics::Metrics;
use eunomia::model::Severity;
use eunomia::results::store::{AlertFilter, AlertRecord, Store, StoreOptions};
use eunomia::security::{AlertOptions, Alerts, RuleError, RuleMatcher, RuleSet};

#[test]
fn the_builtin_rules_load_each_with_a_mitre_technique() {
    let set = RuleSet::builtin();
    assert!(set.rules().len() >= 35, "{} rules", set.rules().len());
    // Every built-in rule has its own test (a trigger and a lookalike), named after it.
    let tests = [
        include_str!("security.rs"),
        include_str!("container_rules.rs"),
    ];
    for rule in set.rules() {
        let test = format!("fn {}()", rule.id);
        assert!(
            tests.iter().any(|t| t.contains(&test)),
            "no test for rule {}",
            rule.id
        );
    }
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
    // Behind a guard that is false on the dry run's empty event: found all the same.
    let message = refused(&rule("kind == 'open' && path.matches('(')", "\"x\""));
    assert!(
        message.contains("`r1`") && message.contains("bad regex `(`"),
        "{message}"
    );
    let message = refused(&rule("kind == 'open' && 'x' < pid", "\"x\""));
    assert!(
        message.contains("`pid` is a number, compared with a text"),
        "{message}"
    );
    let message = refused(&rule("kind == 'open' && comm == 7", "\"x\""));
    assert!(
        message.contains("`comm` is a text, compared with a number"),
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

/// The options each tracker runs with in these tests: the files tracker reports each open.
fn options_of(tracker: &str) -> serde_json::Value {
    match tracker {
        "files" => serde_json::json!({ "opens": "stream" }),
        "process" => serde_json::json!({ "exec_details": true }),
        _ => serde_json::json!({}),
    }
}

/// One rule against the kernel: the python `lookalike` raises nothing; the python
/// `trigger` raises exactly one alert of `id`, from the traced process (comm `comm`), whose
/// output names its pid and contains `says`. Returns that alert.
fn rule_case(
    id: &str,
    tracker: &str,
    trigger: &str,
    lookalike: &str,
    comm: &str,
    says: &str,
) -> AlertRecord {
    let analyzer = Analyzer::new(id);
    let options = options_of(tracker);
    let quiet = analyzer.alerts_of(id, tracker, options.clone(), &python(lookalike), &[]);
    assert_eq!(quiet, [], "the lookalike raised {id}");
    let raised = analyzer.alerts_of(id, tracker, options, &python(trigger), &[]);
    assert_eq!(raised.len(), 1, "{raised:#?}");
    let alert = raised.into_iter().next().unwrap();
    assert_eq!(alert.rule, id);
    assert_eq!(alert.comm, comm);
    assert_eq!(alert.tracker, tracker);
    assert_eq!(alert.count, 1);
    assert_eq!(alert.container_id, None);
    assert!(alert.output.contains(says), "{}", alert.output);
    assert!(
        alert.output.contains(&format!("(pid {}", alert.pid)),
        "{}",
        alert.output
    );
    let event: serde_json::Value = serde_json::from_str(&alert.event).unwrap();
    assert_eq!(event["pid"], alert.pid);
    assert_eq!(event["comm"], comm);
    alert
}

/// A files-tracker rule: `trigger` gives exactly one alert of `id` from the python, whose
/// output and event name `path`; `lookalike` gives none.
fn file_rule(id: &str, trigger: &str, lookalike: &str, path: &str) {
    let alert = rule_case(id, "files", trigger, lookalike, "python3", path);
    let event: serde_json::Value = serde_json::from_str(&alert.event).unwrap();
    assert_eq!(event["path"], path);
}

/// A security-tracker rule run by python, whose alert's output contains `says`.
fn call_rule(id: &str, trigger: &str, lookalike: &str, says: &str) -> serde_json::Value {
    let alert = rule_case(id, "security", trigger, lookalike, "python3", says);
    serde_json::from_str(&alert.event).unwrap()
}

/// Python that sets up ctypes' libc as `libc`, then runs `action`.
fn with_libc(action: &str) -> String {
    format!("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n{action}")
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
    use std::io::Write;

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
    // session with every rule; returns its pid once it has ended. It lives on for a
    // while after, so that the alert can read its executable.
    let read_shadow = |times: usize| {
        let script = format!(
            "import sys, time\nprint('ready', flush=True)\nsys.stdin.readline()\n\
             for _ in range({times}): open('/etc/shadow').read()\ntime.sleep(1)\n"
        );
        let (mut child, _lines) = common::spawn_ready(
            std::process::Command::new("/usr/bin/python3").args(["-c", &script]),
        );
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
        edges { node { rule severity technique techniqueName tactic tracker pid comm exe count output
        sessionId } } } }"#;
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
    assert_eq!(
        alert["techniqueName"],
        "OS Credential Dumping: /etc/passwd and /etc/shadow"
    );
    let python = std::fs::canonicalize("/usr/bin/python3").unwrap();
    assert_eq!(alert["exe"], python.to_str().unwrap());
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

    // SIGHUP reloads the file too: a bad one is reported and r1 kept, a good one brings r2.
    let hangup = |rules: &str, said: &str| {
        std::fs::write(&rules_file, rules).unwrap();
        // SAFETY: signalling the server this test started.
        unsafe { libc::kill(server.pid() as i32, libc::SIGHUP) };
        server.wait_for_log(said, std::time::Duration::from_secs(10));
        server.query("{ rules { id } }", serde_json::json!({}))["rules"].clone()
    };
    let kept = hangup(
        "- rule: broken\n  condition: 'x ==\n",
        "keeping the current detection rules",
    );
    assert_eq!(kept, serde_json::json!([{ "id": "r1" }]));
    let replaced = hangup(
        &GOOD.replace("rule: r1", "rule: r2"),
        "reloaded 1 detection rules",
    );
    assert_eq!(replaced, serde_json::json!([{ "id": "r2" }]));
}

/// A directory of this test's own under /tmp, made anew.
fn own_dir(name: &str) -> String {
    let dir = own("/tmp", name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn sudoers_modified() {
    if !root_or_skip("sudoers_modified") {
        return;
    }
    // sudo reads every file in sudoers.d whose name has no dot: an empty one grants nothing.
    let made = std::fs::create_dir("/etc/sudoers.d").is_ok();
    let path = own("/etc/sudoers.d", "rule");
    file_rule(
        "sudoers_modified",
        &format!("open('{path}', 'w').close(); os.unlink('{path}')"),
        &format!("open('{}', 'w').close()", own("/tmp", "sudoers")),
        &path,
    );
    if made {
        std::fs::remove_dir("/etc/sudoers.d").unwrap();
    }
}

#[test]
fn account_files_modified() {
    if root_or_skip("account_files_modified") {
        // Opened to append, closed without a byte written.
        file_rule(
            "account_files_modified",
            "os.close(os.open('/etc/group', os.O_WRONLY | os.O_APPEND))",
            "open('/etc/group').read()",
            "/etc/group",
        );
    }
}

#[test]
fn ld_preload_modified() {
    if root_or_skip("ld_preload_modified") {
        let path = "/etc/ld.so.preload";
        file_rule(
            "ld_preload_modified",
            &format!(
                "there = os.path.exists('{path}')\n\
                 os.close(os.open('{path}', os.O_WRONLY | os.O_APPEND | os.O_CREAT))\n\
                 there or os.unlink('{path}')"
            ),
            "open('/etc/ld.so.conf').read()",
            path,
        );
    }
}

#[test]
fn pam_config_modified() {
    if root_or_skip("pam_config_modified") {
        let path = own("/etc/pam.d", "rule");
        file_rule(
            "pam_config_modified",
            &format!("open('{path}', 'w').close(); os.unlink('{path}')"),
            &format!("open('{}', 'w').close()", own("/tmp", "pam.d")),
            &path,
        );
    }
}

#[test]
fn systemd_unit_written() {
    if root_or_skip("systemd_unit_written") {
        let path = own("/etc/systemd/system", "rule.service");
        file_rule(
            "systemd_unit_written",
            &format!("open('{path}', 'w').close(); os.unlink('{path}')"),
            &format!("open('{}', 'w').close()", own("/tmp", "rule.service")),
            &path,
        );
    }
}

#[test]
fn hidden_file_in_temp() {
    if root_or_skip("hidden_file_in_temp") {
        let hidden = format!("/tmp/.eunomia-rule-{}-hidden", std::process::id());
        let visible = own("/tmp", "visible");
        file_rule(
            "hidden_file_in_temp",
            &format!("open('{hidden}', 'w').close(); os.unlink('{hidden}')"),
            &format!("open('{visible}', 'w').close(); os.unlink('{visible}')"),
            &hidden,
        );
    }
}

#[test]
fn private_key_read() {
    if !root_or_skip("private_key_read") {
        return;
    }
    let home = own_dir("home");
    std::fs::create_dir(format!("{home}/.ssh")).unwrap();
    let key = format!("{home}/.ssh/id_ed25519");
    std::fs::write(&key, "not a key").unwrap();
    std::fs::write(format!("{key}.pub"), "not a key").unwrap();
    file_rule(
        "private_key_read",
        &format!("open('{key}').read()"),
        &format!("open('{key}.pub').read()"),
        &key,
    );
    std::fs::remove_dir_all(home).unwrap();
}

#[test]
fn release_agent_written() {
    if !root_or_skip("release_agent_written") {
        return;
    }
    let dir = own_dir("cgroup");
    let agent = format!("{dir}/release_agent");
    std::fs::write(&agent, "").unwrap();
    file_rule(
        "release_agent_written",
        &format!("os.close(os.open('{agent}', os.O_WRONLY))"),
        &format!("open('{agent}').read()"),
        &agent,
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn core_pattern_written() {
    if root_or_skip("core_pattern_written") {
        // Opened for writing and closed: nothing written, the pattern stays.
        let path = "/proc/sys/kernel/core_pattern";
        let before = std::fs::read_to_string(path).unwrap();
        file_rule(
            "core_pattern_written",
            &format!("os.close(os.open('{path}', os.O_WRONLY))"),
            &format!("open('{path}').read()"),
            path,
        );
        assert_eq!(std::fs::read_to_string(path).unwrap(), before);
    }
}

#[test]
fn service_account_token_read() {
    if !root_or_skip("service_account_token_read") {
        return;
    }
    let dir = "/run/secrets/kubernetes.io/serviceaccount";
    let token = format!("{dir}/token");
    // On a Kubernetes node the token is real and stays; elsewhere the test makes one.
    let made = !std::path::Path::new(&token).exists();
    if made {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(&token, "not a token").unwrap();
        std::fs::write(format!("{dir}/namespace"), "default").unwrap();
    }
    file_rule(
        "service_account_token_read",
        &format!("open('{token}').read()"),
        &format!("open('{dir}/namespace').read()"),
        &token,
    );
    if made {
        std::fs::remove_dir_all("/run/secrets/kubernetes.io").unwrap();
        let _ = std::fs::remove_dir("/run/secrets");
    }
}

#[test]
fn environ_read_of_other_process() {
    if root_or_skip("environ_read_of_other_process") {
        let alert = rule_case(
            "environ_read_of_other_process",
            "files",
            &on_a_child("open(f'/proc/{child}/environ', 'rb').read()"),
            "open('/proc/self/environ', 'rb').read()",
            "python3",
            "read /proc/",
        );
        let event: serde_json::Value = serde_json::from_str(&alert.event).unwrap();
        let path = event["path"].as_str().unwrap();
        assert!(path.ends_with("/environ") && path != format!("/proc/{}/environ", alert.pid));
    }
}

#[test]
fn shell_history_deleted() {
    if !root_or_skip("shell_history_deleted") {
        return;
    }
    let dir = own_dir("history");
    let history = format!("{dir}/.bash_history");
    let notes = format!("{dir}/notes.bash_history");
    let event = call_rule(
        "shell_history_deleted",
        &format!("open('{history}', 'w').close(); os.unlink('{history}')"),
        &format!("open('{notes}', 'w').close(); os.unlink('{notes}')"),
        &format!("removed the shell history {history} (unlink)"),
    );
    assert_eq!(event["ret"], 0);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn log_file_deleted() {
    if root_or_skip("log_file_deleted") {
        let log = own("/var/log", "rule.log");
        let elsewhere = own("/tmp", "rule.log");
        // Relative to the working directory: the kernel walks it for the full path.
        call_rule(
            "log_file_deleted",
            &format!(
                "open('{log}', 'w').close(); os.chdir('/var/log'); os.unlink('{}')",
                &log[9..]
            ),
            &format!("open('{elsewhere}', 'w').close(); os.unlink('{elsewhere}')"),
            &format!("removed the log {log} (unlink)"),
        );
    }
}

#[test]
fn binary_dir_modified() {
    if root_or_skip("binary_dir_modified") {
        let path = own("/usr/local/bin", "rule");
        let elsewhere = own("/tmp", "rule");
        call_rule(
            "binary_dir_modified",
            &format!("open('{path}', 'w').close(); os.unlink('{path}')"),
            &format!("open('{elsewhere}', 'w').close(); os.unlink('{elsewhere}')"),
            &format!("changed {path} in a binary directory (unlink)"),
        );
    }
}

#[test]
fn symlink_to_sensitive_file() {
    if root_or_skip("symlink_to_sensitive_file") {
        let link = own("/tmp", "link");
        let event = call_rule(
            "symlink_to_sensitive_file",
            &format!("os.symlink('/etc/shadow', '{link}'); os.unlink('{link}')"),
            &format!("os.symlink('/etc/hostname', '{link}'); os.unlink('{link}')"),
            &format!("linked {link} to /etc/shadow"),
        );
        assert_eq!(event["kind"], "symlink");
        assert_eq!(event["new_path"], link);
    }
}

#[test]
fn hardlink_to_sensitive_file() {
    if root_or_skip("hardlink_to_sensitive_file") {
        // The link may fail (another filesystem): the attempt is what counts.
        let link = own("/tmp", "hardlink");
        let mine = own("/tmp", "mine");
        call_rule(
            "hardlink_to_sensitive_file",
            &format!(
                "try:\n    os.link('/etc/shadow', '{link}')\n    os.unlink('{link}')\n\
                 except OSError:\n    pass"
            ),
            &format!(
                "open('{mine}', 'w').close(); os.link('{mine}', '{link}')\n\
                 os.unlink('{link}'); os.unlink('{mine}')"
            ),
            &format!("linked {link} to /etc/shadow"),
        );
    }
}

#[test]
fn setuid_bit_set() {
    if root_or_skip("setuid_bit_set") {
        let path = own("/tmp", "suid");
        let event = call_rule(
            "setuid_bit_set",
            &format!(
                "open('{path}', 'w').close(); os.chmod('{path}', 0o4755); os.unlink('{path}')"
            ),
            &format!("open('{path}', 'w').close(); os.chmod('{path}', 0o644); os.unlink('{path}')"),
            &format!("set mode 04755 on {path}"),
        );
        assert_eq!(event["mode"], 0o4755);
        assert_eq!(event["mode_text"], "04755");
    }
}

#[test]
fn non_sudo_setuid_root() {
    if root_or_skip("non_sudo_setuid_root") {
        let event = call_rule(
            "non_sudo_setuid_root",
            "os.setuid(0)",
            "os.setuid(65534)",
            "set its effective user id to 0 (setuid)",
        );
        assert_eq!(event["new_id"], 0);
    }
}

/// Python that forks a child that sleeps, runs `action` on it (`child`), then kills it.
fn on_a_child(action: &str) -> String {
    with_libc(&format!(
        "import signal, time\nchild = os.fork()\nif child == 0:\n    time.sleep(30)\n    \
         os._exit(0)\n{action}\nos.kill(child, signal.SIGKILL)\nos.waitpid(child, 0)"
    ))
}

/// A pid no process has (pid_max is at most 2^22).
const NO_PID: u32 = 0x7fff_fff0;

#[test]
fn ptrace_attach() {
    if root_or_skip("ptrace_attach") {
        let event = call_rule(
            "ptrace_attach",
            &on_a_child("libc.ptrace(16, child, 0, 0)"),
            &on_a_child(&format!("libc.ptrace(16, {NO_PID}, 0, 0)")),
            "used PTRACE_ATTACH on pid ",
        );
        assert_eq!(event["operation"], "PTRACE_ATTACH");
        assert_ne!(event["target_pid"], event["pid"]);
    }
}

#[test]
fn ptrace_anti_debug() {
    if root_or_skip("ptrace_anti_debug") {
        call_rule(
            "ptrace_anti_debug",
            &with_libc("libc.ptrace(0, 0, 0, 0)"),
            &with_libc(&format!("libc.ptrace(16, {NO_PID}, 0, 0)")),
            "called PTRACE_TRACEME",
        );
    }
}

#[test]
fn process_memory_written() {
    if !root_or_skip("process_memory_written") {
        return;
    }
    // The buffer is at the same address in the forked child.
    let write_into = |target: &str| {
        on_a_child(&format!(
            "class Iov(ctypes.Structure):\n    _fields_ = [('base', ctypes.c_void_p), ('len', ctypes.c_size_t)]\n\
             buf = ctypes.create_string_buffer(16)\n\
             iov = Iov(ctypes.addressof(buf), 16)\n\
             assert libc.process_vm_writev({target}, ctypes.byref(iov), 1, ctypes.byref(iov), 1, 0) == 16"
        ))
    };
    let event = call_rule(
        "process_memory_written",
        &write_into("child"),
        &write_into("os.getpid()"),
        "wrote 16 bytes into pid ",
    );
    assert_eq!(event["ret"], 16);
}

#[test]
fn fileless_exec() {
    if root_or_skip("fileless_exec") {
        let alert = rule_case(
            "fileless_exec",
            "process",
            "fd = os.memfd_create('payload')\nos.write(fd, open('/bin/true', 'rb').read())\n\
             os.execv(f'/proc/self/fd/{fd}', ['payload'])",
            "os.execv('/bin/true', ['true'])",
            "3",
            "was executed from memfd:payload",
        );
        assert_eq!(alert.severity, Severity::Critical);
    }
}

#[test]
fn namespace_unshared() {
    if root_or_skip("namespace_unshared") {
        let event = call_rule(
            "namespace_unshared",
            // CLONE_NEWUTS; the lookalike's CLONE_FILES unshares no namespace.
            &with_libc("assert libc.unshare(0x04000000) == 0"),
            &with_libc("assert libc.unshare(0x400) == 0"),
            "unshared the namespaces uts",
        );
        assert_eq!(event["flags"], 0x0400_0000);
    }
}

#[test]
fn namespace_entered() {
    if root_or_skip("namespace_entered") {
        call_rule(
            "namespace_entered",
            &with_libc(
                "fd = os.open('/proc/self/ns/uts', os.O_RDONLY)\nassert libc.setns(fd, 0) == 0",
            ),
            &with_libc("assert libc.setns(9999, 0) == -1"),
            "entered a namespace () through descriptor ",
        );
    }
}

/// Python that calls bpf(2) with `cmd` and an attribute block whose first words are
/// `words` (u32s), then the pointers `pointers` (u64s).
fn bpf_call(cmd: u32, words: &str, pointers: &str) -> String {
    with_libc(&format!(
        "import struct\n\
         insns = ctypes.create_string_buffer(bytes.fromhex('b700000000000000' '9500000000000000'))\n\
         license = ctypes.create_string_buffer(b'GPL')\n\
         attr = ctypes.create_string_buffer(struct.pack('<{words_len}I', {words}) + struct.pack('<{ptrs_len}Q', {pointers}), 128)\n\
         assert libc.syscall(321, {cmd}, attr, 128) >= 0",
        words_len = words.split(',').count(),
        ptrs_len = pointers.split(',').filter(|p| !p.trim().is_empty()).count(),
    ))
}

#[test]
fn bpf_program_loaded() {
    if root_or_skip("bpf_program_loaded") {
        // A socket filter that returns 0; the lookalike creates an array map.
        let event = call_rule(
            "bpf_program_loaded",
            &bpf_call(
                5,
                "1, 2",
                "ctypes.addressof(insns), ctypes.addressof(license)",
            ),
            &bpf_call(0, "2, 4, 4, 1", ""),
            "loaded a BPF program (fd ",
        );
        assert_eq!(event["operation"], "BPF_PROG_LOAD");
    }
}

#[test]
fn packet_socket_opened() {
    if root_or_skip("packet_socket_opened") {
        let event = call_rule(
            "packet_socket_opened",
            "import socket\nsocket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()",
            "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()",
            "opened a AF_PACKET SOCK_RAW socket",
        );
        assert_eq!(event["protocol"], 0);
    }
}

#[test]
fn socket_redirected_to_stdio() {
    if root_or_skip("socket_redirected_to_stdio") {
        let event = call_rule(
            "socket_redirected_to_stdio",
            "import socket\ns = socket.socket()\nos.dup2(s.fileno(), 0)",
            "import socket\ns = socket.socket()\nos.dup2(s.fileno(), 100)",
            "redirected descriptor 0 to an AF_INET socket",
        );
        assert_eq!(event["kind"], "dup2");
        assert_eq!(event["fd_family"], "AF_INET");
    }
}

/// Python that starts a connect to `address`, `port` without waiting for it.
fn connect_to(address: &str, port: u16) -> String {
    format!(
        "import socket\ns = socket.socket()\ns.setblocking(False)\n\
         s.connect_ex(('{address}', {port}))"
    )
}

#[test]
fn cloud_metadata_connect() {
    if root_or_skip("cloud_metadata_connect") {
        let event = call_rule(
            "cloud_metadata_connect",
            &connect_to("169.254.169.254", 80),
            &connect_to("127.0.0.1", 80),
            "connected to the metadata service 169.254.169.254:80",
        );
        assert_eq!(event["family"], "AF_INET");
    }
}

#[test]
fn miner_pool_connect() {
    if root_or_skip("miner_pool_connect") {
        // 192.0.2.0/24 is TEST-NET-1: nothing answers there.
        let event = call_rule(
            "miner_pool_connect",
            &connect_to("192.0.2.1", 3333),
            &connect_to("192.0.2.1", 443),
            "connected to 192.0.2.1:3333",
        );
        assert_eq!(event["port"], 3333);
    }
}

/// A rule on execs: the python becomes `program` with `args` (same pid, so the pid filter
/// keeps it), where the lookalike becomes `lookalike` (`/usr/bin/id` when None); the alert
/// says `says` (`was run: {program}` when None).
fn exec_case(
    id: &str,
    program: &str,
    args: &str,
    lookalike: Option<(&str, &str)>,
    says: Option<&str>,
) {
    let comm = program.rsplit('/').next().unwrap();
    let (other, other_args) = lookalike.unwrap_or(("/usr/bin/id", ""));
    let other_comm = other.rsplit('/').next().unwrap();
    let ran = format!("was run: {program}");
    let alert = rule_case(
        id,
        "process",
        &format!("os.execv('{program}', ['{comm}', {args}])"),
        &format!("os.execv('{other}', ['{other_comm}', {other_args}])"),
        comm,
        says.unwrap_or(&ran),
    );
    // An exec's alert names the file executed, whether or not the process still lives.
    assert_eq!(alert.exe.as_deref(), Some(program));
    assert!(!alert.technique_name.is_empty(), "{alert:?}");
}

fn exec_rule(id: &str, program: &str, args: &str) {
    exec_case(id, program, args, None, None);
}

#[test]
fn kernel_module_tool() {
    if root_or_skip("kernel_module_tool") {
        exec_rule("kernel_module_tool", "/usr/sbin/modprobe", "'--version'");
    }
}

#[test]
fn data_destruction_tool() {
    if root_or_skip("data_destruction_tool") {
        let victim = own("/tmp", "shred");
        std::fs::write(&victim, "x").unwrap();
        exec_rule(
            "data_destruction_tool",
            "/usr/bin/shred",
            &format!("'-u', '{victim}'"),
        );
        assert!(!std::path::Path::new(&victim).exists());
    }
}

#[test]
fn user_management_tool() {
    if root_or_skip("user_management_tool") {
        exec_rule("user_management_tool", "/usr/sbin/useradd", "'--help'");
    }
}

/// Kernels built without modules have no module calls to trace: the tracker says so when
/// asked for them. Where they exist, a finit_module of no file (EBADF) raises the rule.
#[test]
fn kernel_module_loaded() {
    if !root_or_skip("kernel_module_loaded") {
        return;
    }
    if !eunomia::trackers::security::traceable("finit_module") {
        let config = eunomia::engine::TrackerConfig {
            options: serde_json::json!({ "calls": ["finit_module"] })
                .as_object()
                .cloned()
                .unwrap(),
            ..Default::default()
        };
        let tracker = eunomia::trackers::find_tracker("security").unwrap();
        let err = tracker
            .start(
                config,
                Box::new(eunomia::handler::FanOut::new(Vec::new())),
                Default::default(),
            )
            .err()
            .expect("no finit_module tracepoint, no start");
        assert!(
            err.to_string()
                .contains("syscalls:sys_exit_finit_module does not exist"),
            "{err}"
        );
        return;
    }
    call_rule(
        "kernel_module_loaded",
        &with_libc("libc.syscall(313, -1, b'', 0)"),
        "os.getpid()",
        "called finit_module (result EBADF)",
    );
}

/// Runs `ln -s /etc/shadow link` and returns its pid.
fn link_to_shadow(link: &str) -> u32 {
    let ln = std::process::Command::new("ln")
        .args(["-s", "/etc/shadow", link])
        .spawn()
        .unwrap();
    let pid = ln.id();
    assert!(ln.wait_with_output().unwrap().status.success());
    pid
}

/// `eunomia guard` with `args`, once it says it runs (its first line on stderr past any
/// warnings), with the stderr lines read so far.
fn start_guard(
    args: &[&str],
) -> (
    std::process::Child,
    std::io::Lines<std::io::BufReader<std::process::ChildStderr>>,
) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_eunomia"))
        .arg("guard")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let said = lines
        .by_ref()
        .map(Result::unwrap)
        .find(|l| l.starts_with("guard: "))
        .expect("the guard says what it runs");
    assert!(said.starts_with("guard: "), "{said}");
    (child, lines)
}

/// Ends a guard with SIGINT; returns its exit status, stdout, and the rest of stderr.
fn end_guard(
    mut child: std::process::Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStderr>>,
) -> (std::process::ExitStatus, String, String) {
    use std::io::Read;
    // Past the ring buffer's poll: what the kernel reported is read before the end.
    std::thread::sleep(std::time::Duration::from_millis(300));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let status = child.wait().unwrap();
    let err: Vec<String> = lines.map(Result::unwrap).collect();
    (status, out, err.join("\n"))
}

/// The guard from the command line: the rules asked for, and only the trackers and calls
/// they read; each alert a JSON line in Falco's shape with the event's fields.
#[test]
fn the_guard_command_prints_alerts_as_falco_does() {
    if !root_or_skip("the_guard_command_prints_alerts_as_falco_does") {
        return;
    }
    let (child, lines) = start_guard(&["--only", "symlink_to_sensitive_file,setuid_bit_set"]);
    let link = own("/tmp", "guard-link");
    let file = own("/tmp", "guard-suid");
    std::fs::write(&file, "").unwrap();
    let ln_pid = link_to_shadow(&link);
    // A benign chmod first: it must not fire.
    let chmod_pids: Vec<u32> = ["644", "4755"]
        .iter()
        .map(|mode| {
            let chmod = std::process::Command::new("chmod")
                .args([*mode, file.as_str()])
                .spawn()
                .unwrap();
            let pid = chmod.id();
            assert!(chmod.wait_with_output().unwrap().status.success());
            pid
        })
        .collect();
    let (status, out, err) = end_guard(child, lines);
    std::fs::remove_file(&link).unwrap();
    std::fs::remove_file(&file).unwrap();
    assert!(status.success(), "{err}");
    // The guard watches the whole host, other tests included: these are ours.
    let ours = [ln_pid, chmod_pids[0], chmod_pids[1]];
    let alerts: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|a| ours.iter().any(|&p| a["output_fields"]["pid"] == p))
        .collect();
    assert_eq!(alerts.len(), 2, "{out}");
    let symlink = &alerts[0];
    assert_eq!(symlink["rule_id"], "symlink_to_sensitive_file");
    assert_eq!(symlink["rule"], "Symlink over sensitive file");
    assert_eq!(symlink["priority"], "Error");
    assert_eq!(symlink["source"], "security");
    assert_eq!(symlink["mitre"]["technique"], "T1555");
    assert_eq!(symlink["output_fields"]["pid"], ln_pid);
    assert_eq!(symlink["output_fields"]["comm"], "ln");
    assert_eq!(symlink["output_fields"]["path"], "/etc/shadow");
    assert_eq!(symlink["output_fields"]["new_path"], link.as_str());
    assert_eq!(
        symlink["output"],
        format!("ln (pid {ln_pid}) linked {link} to /etc/shadow")
    );
    let suid = &alerts[1];
    assert_eq!(suid["rule_id"], "setuid_bit_set");
    assert_eq!(suid["output_fields"]["pid"], chmod_pids[1]);
    assert_eq!(suid["output_fields"]["comm"], "chmod");
    assert_eq!(suid["output_fields"]["mode"], 0o4755);
    assert_eq!(suid["output_fields"]["path"], file.as_str());
    assert!(err.contains(" alerts (0 lost), "), "{err}");
}

/// A rule whose action is `kill` kills the process from user space; the alert says so
/// and how long after the kernel event.
#[test]
fn a_kill_rule_kills_the_process() {
    if !root_or_skip("a_kill_rule_kills_the_process") {
        return;
    }
    let dir = TempDir::new("guard-kill");
    let rules = dir.join("rules.yaml");
    let bait = own("/tmp", "kill-me");
    std::fs::write(
        &rules,
        format!(
            "- rule: kill_on_unlink\n  severity: HIGH\n  \
             mitre: {{technique: T1485, name: Data Destruction, tactic: impact}}\n  \
             sources: [{{tracker: security, kinds: [unlink]}}]\n  \
             condition: path == \"{bait}\"\n  action: kill\n  \
             output: \"{{comm}} (pid {{pid}}) unlinked {{path}}\"\n"
        ),
    )
    .unwrap();
    std::fs::write(&bait, "").unwrap();
    let (child, lines) = start_guard(&["--rules", rules.to_str().unwrap(), "--format", "text"]);
    let victim = std::process::Command::new("/usr/bin/python3")
        .args([
            "-c",
            &format!("import os, time\nos.unlink('{bait}')\ntime.sleep(10)\nprint('survived')"),
        ])
        .output()
        .unwrap();
    let (status, out, err) = end_guard(child, lines);
    assert!(status.success(), "{err}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(victim.status.signal(), Some(libc::SIGKILL));
    assert_eq!(String::from_utf8_lossy(&victim.stdout), "");
    let line = out.lines().next().unwrap_or_default();
    assert!(
        line.contains(" HIGH kill_on_unlink: python3 (pid ")
            && line.contains(&format!("unlinked {bait} [killed "))
            && line.ends_with(" ms after the event]"),
        "{out}"
    );
}

#[test]
fn the_guard_refuses_bad_rules_with_exit_code_2() {
    let dir = TempDir::new("guard-bad");
    let rules = dir.join("rules.yaml");
    std::fs::write(&rules, GOOD.replace("path in secrets", "paht == 1")).unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_eunomia"))
            .arg("guard")
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--rules", rules.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("entry 2 (line 4, `r1`)") && err.contains("`paht`"),
        "{err}"
    );
    let out = run(&["--only", "no_such_rule"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no rule `no_such_rule`"));
}

/// The server's standing guard: startGuard runs the rules' trackers with no window; its
/// alerts are stored like a session's (no session id) and its cost is in `health` and
/// /metrics; it outlives a crash of the server (started again from the store), stopGuard
/// ends it for good, and `[guard]` in the config starts one with the server.
#[test]
fn the_standing_guard_runs_until_stopped_and_survives_a_restart() {
    if !root_or_skip("the_standing_guard_runs_until_stopped_and_survives_a_restart") {
        return;
    }
    let dir = TempDir::new("standing-guard");
    let mut server = common::server::Server::start_in(dir.path(), None);
    let status = "running rules trackers eventsSeen eventsLost bpfRuns bpfRunTimeNs cpuTimeNs";
    let guard = |server: &common::server::Server| {
        server.query(
            &format!("{{ guard {{ {status} }} }}"),
            serde_json::json!({}),
        )["guard"]
            .clone()
    };
    assert_eq!(guard(&server)["running"], false);
    let start = r#"mutation { startGuard(rules: ["symlink_to_sensitive_file"]) { running rules trackers } }"#;
    let started = server.query(start, serde_json::json!({}))["startGuard"].clone();
    assert_eq!(
        started,
        serde_json::json!({"running": true, "rules": ["symlink_to_sensitive_file"], "trackers": ["security"]})
    );
    let (code, _) = server.error(start, serde_json::json!({}), None);
    assert_eq!(code, "GUARD_RUNNING");

    let link = own("/tmp", "standing-link");
    let ln_pid = link_to_shadow(&link);
    std::fs::remove_file(&link).unwrap();
    let query = r#"{ alerts(filter: {rule: "symlink_to_sensitive_file"}) {
        edges { node { pid comm tracker sessionId output } } } }"#;
    // The guard watches the whole host, other tests included: this alert is ours.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let edges = loop {
        let edges: Vec<serde_json::Value> = server.query(query, serde_json::json!({}))["alerts"]
            ["edges"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["node"]["pid"] == ln_pid)
            .cloned()
            .collect();
        if !edges.is_empty() || std::time::Instant::now() > deadline {
            break serde_json::Value::from(edges);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(
        edges,
        serde_json::json!([{"node": {"pid": ln_pid, "comm": "ln", "tracker": "security",
            "sessionId": null, "output": format!("ln (pid {ln_pid}) linked {link} to /etc/shadow")}}])
    );
    let health = server.query(
        &format!("{{ health {{ guard {{ {status} }} }} }}"),
        serde_json::json!({}),
    )["health"]["guard"]
        .clone();
    assert!(health["eventsSeen"].as_u64().unwrap() >= 1, "{health}");
    assert_eq!(health["eventsLost"], 0);
    assert!(health["bpfRuns"].as_u64().unwrap() >= 1, "{health}");
    assert!(health["cpuTimeNs"].as_u64().unwrap() > 0, "{health}");
    let (_, metrics) = server.get("/metrics");
    assert!(metrics.contains("\neunomia_guard_running 1\n"), "{metrics}");

    // A crash: the next server starts the guard again from the store.
    server.kill();
    let server = common::server::Server::start_in(dir.path(), None);
    assert_eq!(
        guard(&server)["rules"],
        serde_json::json!(["symlink_to_sensitive_file"])
    );
    let stopped = server.query(
        "mutation { stopGuard { running rules } }",
        serde_json::json!({}),
    );
    assert_eq!(
        stopped["stopGuard"],
        serde_json::json!({"running": false, "rules": []})
    );
    let (code, message) = server.error(
        r#"mutation { startGuard(rules: ["nope"]) { running } }"#,
        serde_json::json!({}),
        None,
    );
    assert_eq!(code, "UNKNOWN_RULE", "{message}");
    drop(server);
    let server = common::server::Server::start_in(dir.path(), None);
    assert_eq!(guard(&server)["running"], false);
    drop(server);

    let config = "[guard]\nenabled = true\nrules = [\"setuid_bit_set\", \"exec_from_dev_shm\"]\n";
    let server = common::server::Server::start_in(dir.path(), Some(config));
    let status = guard(&server);
    assert_eq!(
        (status["rules"].clone(), status["trackers"].clone()),
        (
            serde_json::json!(["setuid_bit_set", "exec_from_dev_shm"]),
            serde_json::json!(["process", "security"])
        )
    );
}

#[test]
fn netcat_remote_exec() {
    if !root_or_skip("netcat_remote_exec") {
        return;
    }
    // busybox's nc, under the name nc: with -f it talks to a file, so nothing listens.
    let dir = own_dir("nc");
    let nc = format!("{dir}/nc");
    std::os::unix::fs::symlink("/bin/busybox", &nc).unwrap();
    exec_case(
        "netcat_remote_exec",
        &nc,
        "'-f', '/dev/null', '-e', '/bin/true'",
        Some((&nc, "'-f', '/dev/null'")),
        Some("runs a program for its connection: nc -f /dev/null -e /bin/true"),
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// A directory with one file holding `text`, for searches that must find something (grep
/// fails when it finds nothing).
fn haystack(name: &str, text: &str) -> String {
    let dir = own_dir(name);
    std::fs::write(format!("{dir}/hay"), text).unwrap();
    dir
}

#[test]
fn search_private_keys() {
    if !root_or_skip("search_private_keys") {
        return;
    }
    let dir = haystack("keys", "-----BEGIN RSA PRIVATE KEY-----\nhello\n");
    exec_case(
        "search_private_keys",
        "/usr/bin/grep",
        &format!("'-r', 'BEGIN RSA PRIVATE KEY', '{dir}'"),
        Some(("/usr/bin/grep", &format!("'-r', 'hello', '{dir}'"))),
        Some(&format!(
            "searched for private keys: grep -r 'BEGIN RSA PRIVATE KEY' {dir}"
        )),
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn find_aws_credentials() {
    if !root_or_skip("find_aws_credentials") {
        return;
    }
    let dir = haystack("aws", "aws_secret_access_key = x\nregion = y\n");
    exec_case(
        "find_aws_credentials",
        "/usr/bin/grep",
        &format!("'-r', 'aws_secret_access_key', '{dir}'"),
        Some(("/usr/bin/grep", &format!("'-r', 'region', '{dir}'"))),
        Some("looked for AWS credentials: grep -r aws_secret_access_key"),
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// A shell whose parent is named nginx raises the rule; the same shell from a parent with
/// another name does not. The process tracker traces every exec here (the shell is a
/// child of the traced python), and the alerts are told apart by the shell's pid.
#[test]
fn shell_spawned_by_server() {
    if !root_or_skip("shell_spawned_by_server") {
        return;
    }
    let analyzer = Analyzer::new("shell_spawned_by_server");
    let rules = analyzer
        .set
        .select(&["shell_spawned_by_server".to_string()])
        .unwrap();
    let matcher = RuleMatcher::new(
        &analyzer.set,
        &rules,
        "process",
        analyzer.alerts.sender(),
        Metrics::new(),
    );
    let config = eunomia::engine::TrackerConfig {
        options: options_of("process").as_object().cloned().unwrap(),
        ..Default::default()
    };
    let handle = common::start_tracker(
        "process",
        config,
        eunomia::handler::FanOut::new(vec![Box::new(matcher)]),
    );
    // Python named `name` starts `sh -c 'exit 0'`; returns the shell's pid.
    let spawn_shell = |name: &str| -> u32 {
        let script = format!(
            "{}\nlibc.prctl(15, b'{name}', 0, 0, 0)\n\
             child = os.fork()\nif child == 0:\n    os.execv('/bin/sh', ['sh', '-c', 'exit 0'])\n\
             os.waitpid(child, 0)\nprint(child)",
            with_libc("import os")
        );
        let out = std::process::Command::new("/usr/bin/python3")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    let benign = spawn_shell("worker");
    let web = spawn_shell("nginx");
    std::thread::sleep(std::time::Duration::from_millis(200));
    handle.stop().unwrap();
    let alerts = analyzer.runtime.block_on(async {
        analyzer.alerts.flush().await;
        let filter = AlertFilter {
            rule: Some("shell_spawned_by_server".to_string()),
            ..AlertFilter::default()
        };
        analyzer.alerts.list(&filter, 100, None).await.unwrap().0
    });
    let of = |pid: u32| alerts.iter().filter(|a| a.pid == pid).count();
    assert_eq!((of(benign), of(web)), (0, 1), "{alerts:#?}");
    let alert = alerts.iter().find(|a| a.pid == web).unwrap();
    assert_eq!(alert.comm, "sh");
    assert!(
        alert
            .output
            .starts_with(&format!("sh (pid {web}) was started by nginx (pid "))
            && alert.output.ends_with("): sh -c 'exit 0'"),
        "{}",
        alert.output
    );
}
