//! HTTPS (root): queries and wss subscriptions over TLS, clients that refuse a wrong
//! certificate, a certificate renewed with SIGHUP, and no clear text off loopback.
//! Certificates are made for each test by rcgen; nothing is read from the machine.

mod common;

use std::ffi::OsString;
use std::process::Command;
use std::time::{Duration, Instant};

use common::server::{http_client, tls_client_config, ws_next, ws_subscribe, Server};
use common::{root_or_skip, run_copies, unique_binary, TempDir};
use serde_json::json;

/// A certificate authority and a server certificate it signed, as PEM.
struct Pki {
    ca: String,
    cert: String,
    key: String,
}

impl Pki {
    /// A fresh authority and a certificate for `names` (DNS names or IP addresses).
    fn new(names: &[&str]) -> Pki {
        // Each authority has its own name, so a client holding another one's certificate
        // finds no issuer at all, as with a real stranger's.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("eunomia test authority {n}"),
        );
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        Pki {
            ca: ca.pem(),
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// A certificate the server's address is named in.
    fn for_loopback() -> Pki {
        Pki::new(&["127.0.0.1", "localhost"])
    }

    /// Writes the server's files into `dir`; returns the `serve` arguments naming them.
    fn install(&self, dir: &TempDir) -> Vec<OsString> {
        std::fs::write(dir.join("cert.pem"), &self.cert).unwrap();
        std::fs::write(dir.join("key.pem"), &self.key).unwrap();
        vec![
            "--tls-cert".into(),
            dir.join("cert.pem").into(),
            "--tls-key".into(),
            dir.join("key.pem").into(),
        ]
    }
}

/// Starts an HTTPS server on `pki`'s certificate; its clients trust `pki`'s authority.
fn https_server(dir: &TempDir, pki: &Pki) -> Server {
    Server::launch(dir.path(), None, pki.install(dir), Some(&pki.ca))
}

/// The error's whole chain of causes, as one line.
fn causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A GraphQL POST of `{ health { store { ok } } }` on a new connection from a client trusting
/// `ca` (plain HTTP without): Ok(status) or the error's causes.
fn health(ca: Option<&str>, url: &str) -> Result<u16, String> {
    http_client(ca)
        .post(format!("{url}/graphql"))
        .json(&json!({ "query": "{ health { store { ok } } }" }))
        .send()
        .map(|r| r.status().as_u16())
        .map_err(|e| causes(&e))
}

#[test]
fn https_serves_queries_and_wss_subscriptions() {
    if !root_or_skip("https_serves_queries_and_wss_subscriptions") {
        return;
    }
    let dir = TempDir::new("tls");
    let server = https_server(&dir, &Pki::for_loopback());
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    let (binary, comm) = unique_binary("tls");
    let id = server.start_session(
        json!({ "tracker": "process", "durationSecs": 30, "filter": { "comm": comm } }),
    );
    let mut ws = server.ws_connect(None).expect("wss connects");
    assert!(matches!(
        ws.get_ref(),
        tungstenite::stream::MaybeTlsStream::Rustls(_)
    ));
    ws_subscribe(
        &mut ws,
        "events",
        "subscription($id: ID!) { sessionEvents(id: $id) { kind comm } }",
        json!({ "id": id }),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.session(&id, "subscribers")["subscribers"] != 1 {
        assert!(Instant::now() < deadline, "the subscription never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    run_copies(&binary, 2);
    let kinds: Vec<String> = (0..4)
        .map(|_| {
            let message = ws_next(&mut ws);
            let event = &message["payload"]["data"]["sessionEvents"];
            assert_eq!(event["comm"], comm, "{message}");
            event["kind"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(kinds, ["exec", "exit", "exec", "exit"]);
    assert_eq!(server.stop_session(&id), "STOPPED");
    assert_eq!(server.session(&id, "eventCount")["eventCount"], 4);
    let (status, metrics) = server.get("/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("eunomia_sessions_active 0"), "{metrics}");

    // The port speaks TLS only: a clear-text request gets no answer.
    let clear = server.url.replacen("https://", "http://", 1);
    let refused = health(None, &clear).unwrap_err();
    assert!(refused.contains("invalid HTTP version parsed"), "{refused}");
}

/// A client refuses a server whose certificate comes from an authority it does not
/// trust, or names another host; HTTPS and wss alike.
#[test]
fn clients_refuse_a_wrong_certificate() {
    if !root_or_skip("clients_refuse_a_wrong_certificate") {
        return;
    }
    let dir = TempDir::new("tls-wrong");
    let server = https_server(&dir, &Pki::for_loopback());
    let stranger = Pki::for_loopback();
    let err = health(Some(&stranger.ca), &server.url).unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
    let wss = server.url.replacen("https://", "wss://", 1);
    let stream = std::net::TcpStream::connect(wss.trim_start_matches("wss://")).unwrap();
    let err = tungstenite::client_tls_with_config(
        format!("{wss}/graphql/ws"),
        stream,
        None,
        Some(tungstenite::Connector::Rustls(tls_client_config(
            &stranger.ca,
        ))),
    )
    .map(|_| ())
    .unwrap_err();
    assert!(format!("{err:?}").contains("UnknownIssuer"), "{err:?}");

    let misnamed = Pki::new(&["eunomia.example"]);
    let other_dir = TempDir::new("tls-misnamed");
    let server = https_server(&other_dir, &misnamed);
    let err = health(Some(&misnamed.ca), &server.url).unwrap_err();
    assert!(
        err.contains("certificate not valid for name \"127.0.0.1\""),
        "{err}"
    );
}

/// SIGHUP serves a renewed certificate without a restart; a broken one is refused and
/// the one in use is kept.
#[test]
fn sighup_reloads_the_certificate_and_keeps_it_when_the_new_one_is_bad() {
    if !root_or_skip("sighup_reloads_the_certificate_and_keeps_it_when_the_new_one_is_bad") {
        return;
    }
    let dir = TempDir::new("tls-reload");
    let old = Pki::for_loopback();
    let server = https_server(&dir, &old);
    let trusts_old = Some(old.ca.as_str());
    assert_eq!(health(trusts_old, &server.url), Ok(200));

    let renewed = Pki::for_loopback();
    renewed.install(&dir);
    let hangup = || {
        // SAFETY: kill on our own child's pid.
        assert_eq!(unsafe { libc::kill(server.pid() as i32, libc::SIGHUP) }, 0);
    };
    hangup();
    server.wait_for_log("reloaded TLS certificate", Duration::from_secs(10));
    let trusts_renewed = Some(renewed.ca.as_str());
    assert_eq!(health(trusts_renewed, &server.url), Ok(200));
    let err = health(trusts_old, &server.url).unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");

    std::fs::write(dir.join("cert.pem"), "not a certificate\n").unwrap();
    hangup();
    let line = server.wait_for_log(
        "keeping the current TLS certificate",
        Duration::from_secs(10),
    );
    assert!(line.contains("cert.pem"), "{line}");
    assert_eq!(health(trusts_renewed, &server.url), Ok(200));
}

/// A certificate that cannot be used stops the start with exit code 2 and says why.
#[test]
fn an_unusable_certificate_is_refused_at_start() {
    if !root_or_skip("an_unusable_certificate_is_refused_at_start") {
        return;
    }
    let dir = TempDir::new("tls-unusable");
    std::fs::write(dir.join("cert.pem"), "not a certificate\n").unwrap();
    std::fs::write(dir.join("key.pem"), Pki::for_loopback().key).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_eunomia"))
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(dir.join("eunomia.db"))
        .arg("--tls-cert")
        .arg(dir.join("cert.pem"))
        .arg("--tls-key")
        .arg(dir.join("key.pem"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "cannot use TLS certificate {}",
            dir.join("cert.pem").display()
        )),
        "{stderr}"
    );
    assert!(
        !dir.join("eunomia.db").exists(),
        "nothing is created before the certificate is checked"
    );
}

/// Off loopback, tokens would cross the network in clear text: the server needs TLS, or
/// `--insecure-http` for a TLS-terminating proxy in front. A key without its
/// certificate is a usage error.
#[test]
fn plain_http_off_loopback_is_refused() {
    let dir = TempDir::new("tls-public");
    let config = dir.join("eunomia.toml");
    std::fs::write(
        &config,
        "[[tokens]]\nname = \"ops\"\nrole = \"operator\"\ntoken = \"0123456789abcdef0123\"\n",
    )
    .unwrap();
    let serve = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_eunomia"))
            .args(["serve", "--listen", "0.0.0.0:0", "--db"])
            .arg(dir.join("eunomia.db"))
            .arg("--config")
            .arg(&config)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = serve(&[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "refusing to serve 0.0.0.0:0 (not loopback) over plain HTTP, where tokens cross \
             the network in clear text: give --tls-cert and --tls-key, or --insecure-http"
        ),
        "{stderr}"
    );
    let out = serve(&["--tls-key", "key.pem"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--tls-cert <TLS_CERT>"), "{stderr}");
}

/// `eunomia session` speaks HTTPS and wss to a server whose certificate a private CA
/// signed, trusting that CA from --ca-file; without it, the public authorities do not
/// vouch for the server, and the command says so with exit code 1.
#[test]
fn the_session_cli_trusts_a_private_ca() {
    if !root_or_skip("the_session_cli_trusts_a_private_ca") {
        return;
    }
    let dir = TempDir::new("tls-cli");
    let pki = Pki::for_loopback();
    let server = https_server(&dir, &pki);
    std::fs::write(dir.join("ca.pem"), &pki.ca).unwrap();
    let ca_file = dir.join("ca.pem");
    let session = |args: &[&str], trusting: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_eunomia"));
        command
            .arg("session")
            .args(args)
            .args(["--server", &server.url]);
        if trusting {
            command.arg("--ca-file").arg(&ca_file);
        }
        command
    };
    let out = session(&["list"], false).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("error: cannot reach {}/graphql: ", server.url))
            && stderr.contains("UnknownIssuer"),
        "{stderr}"
    );

    let (binary, comm) = unique_binary("tlscli");
    let out = session(&["start", "process", "-c", &comm, "-d", "30"], true)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let tail = session(&["tail", &id, "-o", "json"], true)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.session(&id, "subscribers")["subscribers"] != 1 {
        assert!(Instant::now() < deadline, "the tail never subscribed");
        std::thread::sleep(Duration::from_millis(10));
    }
    run_copies(&binary, 2);
    let out = session(&["stop", &id, "-o", "json"], true)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stopped: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stopped["eventCount"], 4, "{stopped}");
    let out = tail.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let kinds: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(event["comm"], comm, "{line}");
            event["kind"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(kinds, ["exec", "exit", "exec", "exit"]);
}
