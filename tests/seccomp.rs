//! The seccomp manager from the command line, against the real kernel (root): a command
//! recorded from its first instruction, run again under the profile advised from it,
//! and under a profile that lacks one of its calls.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::docker::{docker_or_skip, Container, IMAGE};
use common::server::Server;
use common::{eunomia, root_or_skip, stderr, syscall_load, TempDir};
use serde_json::json;

/// The calls the profile file at `profile` allows.
fn allowed(profile: &Path) -> BTreeSet<String> {
    names(&serde_json::from_str(&std::fs::read_to_string(profile).unwrap()).unwrap())
}

/// The calls an advised profile allows; it refuses the rest with EPERM, on x86_64.
fn names(profile: &serde_json::Value) -> BTreeSet<String> {
    assert_eq!(profile["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(profile["defaultErrnoRet"], 1);
    assert_eq!(profile["architectures"], json!(["SCMP_ARCH_X86_64"]));
    profile["syscalls"][0]["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

/// Whether a profile has the call `sleep` makes (busybox builds differ in which).
fn sleeps(names: &BTreeSet<String>) -> bool {
    names.contains("clock_nanosleep") || names.contains("nanosleep")
}

/// `eunomia seccomp exec [--verify] --profile PROFILE -- COMMAND`.
fn exec(profile: &Path, verify: bool, command: &[&str]) -> Output {
    let mut args = vec!["seccomp", "exec", "--profile", profile.to_str().unwrap()];
    if verify {
        args.push("--verify");
    }
    args.push("--");
    args.extend(command);
    eunomia(&args)
}

/// Whether the `key` list of a JSON object names `call`.
fn lists(diff: &serde_json::Value, key: &str, call: &str) -> bool {
    diff[key]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!(call))
}

/// Records `syscall_load 0 2 1` (two opens, one failed open, no getppid), runs it again
/// under the advised profile (clean), then `syscall_load 3` under it: each getppid is
/// refused with EPERM, the program sees it (exit 7), and verify names the call.
#[test]
fn a_recorded_profile_runs_its_command_and_refuses_the_rest() {
    if !root_or_skip("a_recorded_profile_runs_its_command_and_refuses_the_rest") {
        return;
    }
    let (load, comm) = syscall_load("seccomp");
    let load = load.to_str().unwrap();
    let dir = TempDir::new("seccomp");
    let record = |profile: &Path, args: &[&str]| {
        let mut words = vec![
            "seccomp",
            "record",
            "-o",
            profile.to_str().unwrap(),
            "--",
            load,
        ];
        words.extend(args);
        let out = eunomia(&words);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("the workload exited 0; 0 events lost"),
            "{}",
            stderr(&out)
        );
    };
    let profile = dir.join("load.json");
    record(&profile, &["0", "2", "1"]);
    let names = allowed(&profile);
    for call in ["execve", "openat", "close", "exit_group"] {
        assert!(names.contains(call), "{call} missing from {names:?}");
    }
    assert!(!names.contains("getppid"), "{names:?}");

    let out = exec(&profile, true, &[load, "0", "2", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(
        text.contains("verify: the workload exited 0; 0 calls refused by the profile"),
        "{text}"
    );

    let out = exec(&profile, true, &[load, "3"]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(
        text.contains("verify: the workload exited 7; 3 calls refused by the profile"),
        "{text}"
    );
    assert!(
        text.contains(&format!("denied getppid: 3 calls by {comm}\n")),
        "{text}"
    );

    // The Kubernetes forms of the same profile.
    let kube = |extra: &[&str]| {
        let mut args = vec!["seccomp", "kubernetes", "--name", "load"];
        args.extend(extra);
        args.push(profile.to_str().unwrap());
        String::from_utf8(eunomia(&args).stdout).unwrap()
    };
    assert!(kube(&[]).contains("    type: Localhost\n    localhostProfile: profiles/load.json\n"));
    let object = kube(&["--operator"]);
    assert!(
        object.contains("kind: SeccompProfile\nmetadata:\n  name: load\n"),
        "{object}"
    );
    assert!(object.contains("  - openat\n"), "{object}");

    // Without verify: the same refusal, no tracing.
    assert_eq!(exec(&profile, false, &[load, "3"]).status.code(), Some(7));

    // A second recording with getppid: the diff is that call, the merge both.
    let with = dir.join("with.json");
    record(&with, &["5"]);
    let out = eunomia(&[
        "seccomp",
        "diff",
        profile.to_str().unwrap(),
        with.to_str().unwrap(),
    ]);
    let diff: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(lists(&diff, "only_in_second", "getppid"), "{diff}");
    assert!(!lists(&diff, "only_in_first", "getppid"), "{diff}");
    let out = eunomia(&[
        "seccomp",
        "merge",
        profile.to_str().unwrap(),
        with.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let merged = dir.join("merged.json");
    std::fs::write(&merged, &out.stdout).unwrap();
    let union: BTreeSet<String> = allowed(&profile).union(&allowed(&with)).cloned().collect();
    assert_eq!(allowed(&merged), union);
    assert_eq!(
        exec(&merged, false, &[load, "3", "2", "1"]).status.code(),
        Some(0)
    );
}

/// `--narrow`: socket is allowed only for the family the recording saw and clone only
/// without namespace flags; another family is refused, and verify names the call.
#[test]
fn a_narrowed_profile_allows_only_the_socket_family_recorded() {
    if !root_or_skip("a_narrowed_profile_allows_only_the_socket_family_recorded") {
        return;
    }
    let script = "import os, socket, sys\n\
        socket.socket(getattr(socket, sys.argv[1]), socket.SOCK_STREAM).close()\n\
        pid = os.fork()\n\
        os._exit(0) if pid == 0 else os.waitpid(pid, 0)\n";
    let dir = TempDir::new("seccomp-narrow");
    let profile = dir.join("narrow.json");
    let path = profile.to_str().unwrap();
    let out = eunomia(&[
        "seccomp",
        "record",
        "--narrow",
        "-o",
        path,
        "--",
        "/usr/bin/python3",
        "-c",
        script,
        "AF_UNIX",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&profile).unwrap()).unwrap();
    let rules = json["syscalls"].as_array().unwrap();
    let of = |name: &str| -> Vec<&serde_json::Value> {
        rules
            .iter()
            .filter(|r| r["names"] == json!([name]))
            .map(|r| &r["args"])
            .collect()
    };
    assert_eq!(
        of("socket"),
        [&json!([{"index": 0, "value": libc::AF_UNIX, "op": "SCMP_CMP_EQ"}])]
    );
    assert_eq!(
        of("clone"),
        [
            &json!([{"index": 0, "value": 0x7E02_0000u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}])
        ]
    );
    assert!(!names(&json).contains("socket") && !names(&json).contains("clone"));

    let run = |family: &str| exec(&profile, true, &["/usr/bin/python3", "-c", script, family]);
    let out = run("AF_UNIX");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("0 calls refused by the profile"),
        "{}",
        stderr(&out)
    );
    let out = run("AF_INET");
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("PermissionError: [Errno 1] Operation not permitted"),
        "{text}"
    );
    assert!(
        text.contains("verify: the workload exited 1; 1 calls refused by the profile"),
        "{text}"
    );
    assert!(
        text.contains("denied socket: 1 calls by python3\n"),
        "{text}"
    );

    // The same from a syscall session with option first_args.
    let server = Server::start("seccomp-narrow", None);
    let id = server.start_session(json!({
        "tracker": "syscall", "durationSecs": 60, "filter": { "comm": "python3" },
        "config": { "first_args": true },
    }));
    let status = Command::new("/usr/bin/python3")
        .args(["-c", script, "AF_INET6"])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(server.stop_session(&id), "STOPPED");
    let profile = |narrow: bool| {
        server.query(
            "query($id: ID, $narrow: Boolean!) { seccompProfile(sessionId: $id, narrow: $narrow) }",
            json!({ "id": id, "narrow": narrow }),
        )["seccompProfile"]
            .clone()
    };
    let narrowed = profile(true);
    let socket: Vec<&serde_json::Value> = narrowed["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["names"] == json!(["socket"]))
        .collect();
    assert_eq!(
        socket,
        [&json!({"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": libc::AF_INET6, "op": "SCMP_CMP_EQ"}]})]
    );
    assert!(names(&profile(false)).contains("socket"));
}

/// The loop Inspektor Gadget's advice fails: a busybox container recorded from its first
/// instruction (runc's calls after it installs the filter included), then a fresh
/// container under the advised profile starts and exits 0; one that calls what the
/// recording never saw gets EPERM, and verify names the call.
#[test]
fn a_container_runs_under_the_profile_recorded_from_it() {
    if !docker_or_skip("a_container_runs_under_the_profile_recorded_from_it") {
        return;
    }
    let dir = TempDir::new("seccomp-docker");
    let profile = dir.join("bb.json");
    let script = "ls / ; cat /etc/hostname ; sleep 1";
    let path = profile.to_str().unwrap();
    let out = eunomia(&[
        "seccomp", "record", "-o", path, "--image", IMAGE, "--", "sh", "-c", script,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the workload exited 0; 0 events lost"),
        "{}",
        stderr(&out)
    );
    let names = allowed(&profile);
    // The workload's exec, sh's wait for its children and its signal return among them.
    for call in ["execve", "wait4", "rt_sigreturn", "getdents64"] {
        assert!(names.contains(call), "{call} missing from {names:?}");
    }
    assert!(sleeps(&names), "{names:?}");
    // runc's calls after it installs the filter, which busybox's sh, ls, cat and sleep
    // never make: without them the container would not start under the profile.
    for call in ["capset", "setgroups", "setuid", "setgid"] {
        assert!(names.contains(call), "runc's {call} missing from {names:?}");
    }
    // runc's set-up before the filter is not there: it needs no allowing.
    for call in ["mount", "pivot_root", "mkdir", "mkdirat"] {
        assert!(!names.contains(call), "{call} in {names:?}");
    }

    let verify = |script: &str| {
        let mut args = vec![
            "seccomp",
            "exec",
            "--verify",
            "--profile",
            path,
            "--image",
            IMAGE,
        ];
        args.extend(["--", "sh", "-c", script]);
        eunomia(&args)
    };
    let out = verify(script);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(
        text.contains("verify: the workload exited 0; 0 calls refused by the profile"),
        "{text}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("etc\n"),
        "ls ran"
    );

    let out = verify("mkdir /tmp/x");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(
        text.contains("can't create directory '/tmp/x': Operation not permitted"),
        "{text}"
    );
    assert!(
        text.contains("verify: the workload exited 1; 1 calls refused by the profile"),
        "{text}"
    );
    let denied = regex::Regex::new(r"denied mkdir(at)?: 1 calls by mkdir\n").unwrap();
    assert!(denied.is_match(&text), "{text}");

    // The same refusal without verify, through the printed docker line's own flags.
    let out = eunomia(&[
        "seccomp",
        "exec",
        "--profile",
        path,
        "--image",
        IMAGE,
        "--",
        "sh",
        "-c",
        "mkdir /x",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = eunomia(&["seccomp", "docker", path, IMAGE, "sh", "-c", script]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("docker run --rm --security-opt 'seccomp={path}' {IMAGE} sh -c '{script}'\n")
    );

    // The same through the API, with a run cut short by its duration.
    let server = Server::start("seccomp-verify", None);
    let given: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&profile).unwrap()).unwrap();
    let verify = "mutation($profile: JSON, $command: [String!]!, $secs: Int!) { \
        verifySeccompProfile(profile: $profile, image: \"bb:latest\", command: $command, \
        durationSecs: $secs) { exitCode denied { name calls commands } eventsLost } }";
    let run = |command: &[&str], secs: u64| {
        server.query(
            verify,
            json!({ "profile": given, "command": command, "secs": secs }),
        )["verifySeccompProfile"]
            .clone()
    };
    let refused = run(&["sh", "-c", "mkdir /tmp/x"], 60);
    assert_eq!(refused["exitCode"], 1, "{refused}");
    assert_eq!(refused["eventsLost"], 0, "{refused}");
    let denied = refused["denied"].as_array().unwrap();
    assert_eq!(denied.len(), 1, "{refused}");
    assert!(
        denied[0]["name"].as_str().unwrap().starts_with("mkdir"),
        "{refused}"
    );
    assert_eq!(denied[0]["calls"], 1);
    assert_eq!(denied[0]["commands"], json!(["mkdir"]));
    let cut = run(&["sleep", "30"], 1);
    assert_eq!(cut["exitCode"], 137, "{cut}");
    assert_eq!(cut["denied"], json!([]), "{cut}");
    let (code, _) = server.error(
        verify,
        json!({ "profile": given, "command": [], "secs": 0 }),
        None,
    );
    assert_eq!(code, "BAD_DURATION");
}

/// A running container watched for a while: the calls of its loop, made under Docker's
/// filter, and no others.
#[test]
fn a_running_container_is_advised_a_profile() {
    if !docker_or_skip("a_running_container_is_advised_a_profile") {
        return;
    }
    let script = "while true; do cat /etc/hostname; sleep 0.2; done";
    let container = Container::run("seccomp-advise", "none", &["sh", "-c", script]);
    let name = container.name.clone();
    let dir = TempDir::new("seccomp-advise");
    let profile = dir.join("loop.json");
    let path = profile.to_str().unwrap();
    let out = eunomia(&[
        "seccomp",
        "advise",
        "--container",
        &name,
        "-d",
        "2",
        "-o",
        path,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the workload was watched; 0 events lost"),
        "{}",
        stderr(&out)
    );
    let names = allowed(&profile);
    // busybox cat copies with sendfile.
    for call in ["execve", "wait4", "openat", "sendfile", "clone"] {
        assert!(names.contains(call), "{call} missing from {names:?}");
    }
    assert!(sleeps(&names), "{names:?}");
    assert!(
        !names.contains("mount") && !names.contains("getppid"),
        "{names:?}"
    );

    // Nothing of that name ever ran: waited for, nothing recorded, a failure.
    let out = eunomia(&[
        "seccomp",
        "advise",
        "--container",
        "no-such-container-x",
        "-d",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no container no-such-container-x runs: waiting for one to start")
            && stderr(&out).contains("recorded no call: container no-such-container-x did not run"),
        "{}",
        stderr(&out)
    );
}

/// `advise` started before its container: the container is recorded from its first
/// instruction (its cgroup joins the filter as runc makes it), and a fresh container runs
/// the same command under the advised profile.
#[test]
fn a_container_advised_before_it_starts_runs_under_its_profile() {
    if !docker_or_skip("a_container_advised_before_it_starts_runs_under_its_profile") {
        return;
    }
    let name = common::docker::unique_name("seccomp-later");
    let _removed = Container {
        name: name.clone(),
        id: String::new(),
    };
    let dir = TempDir::new("seccomp-later");
    let profile = dir.join("later.json");
    let path = profile.to_str().unwrap();
    let mut advise = Command::new(env!("CARGO_BIN_EXE_eunomia"))
        .args([
            "seccomp",
            "advise",
            "--container",
            &name,
            "-d",
            "6",
            "-o",
            path,
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut waiting = String::new();
    BufReader::new(advise.stderr.as_mut().unwrap())
        .read_line(&mut waiting)
        .unwrap();
    assert_eq!(
        waiting,
        format!("no container {name} runs: waiting for one to start\n")
    );
    let script = "ls / ; cat /etc/hostname ; sleep 1";
    let ran = Command::new("docker")
        .args([
            "run",
            "--network",
            "none",
            "--name",
            &name,
            IMAGE,
            "sh",
            "-c",
            script,
        ])
        .output()
        .unwrap();
    assert!(ran.status.success(), "{}", stderr(&ran));
    let out = advise.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let names = allowed(&profile);
    for call in ["execve", "wait4", "getdents64"] {
        assert!(names.contains(call), "{call} missing from {names:?}");
    }
    assert!(sleeps(&names), "{names:?}");
    for call in ["mount", "pivot_root", "mkdirat"] {
        assert!(!names.contains(call), "{call} in {names:?}");
    }
    let under = Command::new("docker")
        .args(["run", "--rm", "--network", "none", "--security-opt"])
        .arg(format!("seccomp={path}"))
        .args([IMAGE, "sh", "-c", script])
        .output()
        .unwrap();
    assert_eq!(under.status.code(), Some(0), "{}", stderr(&under));
    let refused = Command::new("docker")
        .args(["run", "--rm", "--network", "none", "--security-opt"])
        .arg(format!("seccomp={path}"))
        .args([IMAGE, "sh", "-c", "mkdir /x"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("Operation not permitted"),
        "{}",
        stderr(&refused)
    );
}

/// Through the API: the profile of a syscall session, stored by name (from sessions or
/// given whole), listed, compared, and used to run the same program again.
#[test]
fn profiles_come_from_sessions_and_are_kept_by_name() {
    if !root_or_skip("profiles_come_from_sessions_and_are_kept_by_name") {
        return;
    }
    let (load, comm) = syscall_load("scapi");
    let server = Server::start("seccomp", None);
    let record = |args: &[&str]| {
        let id = server.start_session(json!({
            "tracker": "syscall", "durationSecs": 60, "filter": { "comm": comm },
        }));
        let status = Command::new(&*load).args(args).status().unwrap();
        assert!(status.success());
        assert_eq!(server.stop_session(&id), "STOPPED");
        id
    };
    let quiet = record(&["0", "2", "1"]);
    let busy = record(&["4"]);
    let profile = |id: &str| {
        server.query(
            "query($id: ID) { seccompProfile(sessionId: $id) }",
            json!({ "id": id }),
        )["seccompProfile"]
            .clone()
    };
    let quiet_profile = profile(&quiet);
    assert!(names(&quiet_profile).contains("openat"), "{quiet_profile}");
    assert!(
        !names(&quiet_profile).contains("getppid"),
        "{quiet_profile}"
    );
    assert!(names(&profile(&busy)).contains("getppid"));

    // Saved from a session, from two (merged), and given whole.
    let save = "mutation($name: String!, $ids: [ID!], $merge: [String!], $profile: JSON) { \
        saveSeccompProfile(name: $name, sessionIds: $ids, merge: $merge, profile: $profile) \
        { name calls source } }";
    let saved = server.query(save, json!({ "name": "quiet", "ids": [quiet] }));
    assert_eq!(
        saved["saveSeccompProfile"]["calls"],
        names(&quiet_profile).len()
    );
    assert_eq!(
        saved["saveSeccompProfile"]["source"],
        format!("sessions: {quiet}")
    );
    let both = server.query(save, json!({ "name": "both", "ids": [quiet, busy] }));
    let union: BTreeSet<String> = names(&quiet_profile)
        .union(&names(&profile(&busy)))
        .cloned()
        .collect();
    assert_eq!(both["saveSeccompProfile"]["calls"], union.len());
    let given = server.query(save, json!({ "name": "tiny", "profile": quiet_profile }));
    assert_eq!(given["saveSeccompProfile"]["source"], "given");
    // Stored profiles merged by name: what either allows.
    server.query(save, json!({ "name": "busy", "ids": [busy] }));
    let merged = server.query(
        save,
        json!({ "name": "merged", "merge": ["quiet", "busy"] }),
    );
    assert_eq!(merged["saveSeccompProfile"]["calls"], union.len());
    assert_eq!(
        merged["saveSeccompProfile"]["source"],
        "merged: quiet, busy"
    );
    let listed = server.query("{ seccompProfiles { name } }", json!({}));
    assert_eq!(
        listed["seccompProfiles"],
        json!([
            { "name": "both" },
            { "name": "busy" },
            { "name": "merged" },
            { "name": "quiet" },
            { "name": "tiny" }
        ])
    );
    let diff = server.query(
        "{ diffSeccompProfiles(first: \"quiet\", second: \"both\") { onlyInFirst onlyInSecond } }",
        json!({}),
    );
    assert_eq!(diff["diffSeccompProfiles"]["onlyInFirst"], json!([]));
    assert!(diff["diffSeccompProfiles"]["onlyInSecond"]
        .as_array()
        .unwrap()
        .contains(&json!("getppid")));

    // The stored profile runs the program it was recorded from, and refuses getppid.
    let dir = TempDir::new("seccomp-api");
    let path = dir.join("quiet.json");
    let stored = server.query("{ seccompProfile(name: \"quiet\") }", json!({}));
    std::fs::write(&path, stored["seccompProfile"].to_string()).unwrap();
    let load = load.to_str().unwrap();
    assert_eq!(
        exec(&path, false, &[load, "0", "2", "1"]).status.code(),
        Some(0)
    );
    assert_eq!(exec(&path, false, &[load, "2"]).status.code(), Some(7));

    // Bad input: each with its code, nothing stored.
    let process = server.start_session(json!({ "tracker": "process", "durationSecs": 60 }));
    server.stop_session(&process);
    let code = |query: &str, variables: serde_json::Value| server.error(query, variables, None).0;
    assert_eq!(
        code(
            "query($id: ID) { seccompProfile(sessionId: $id) }",
            json!({ "id": process })
        ),
        "NOT_A_SYSCALL_SESSION"
    );
    assert_eq!(
        code("{ seccompProfile(name: \"nope\") }", json!({})),
        "UNKNOWN_PROFILE"
    );
    assert_eq!(code("{ seccompProfile }", json!({})), "BAD_USER_INPUT");
    assert_eq!(
        code(save, json!({ "name": "../x", "ids": [quiet] })),
        "BAD_USER_INPUT"
    );
    assert_eq!(
        code(save, json!({ "name": "x", "merge": ["quiet", "nope"] })),
        "UNKNOWN_PROFILE"
    );
    assert_eq!(
        code(
            save,
            json!({ "name": "x", "ids": [quiet], "merge": ["quiet"] })
        ),
        "BAD_USER_INPUT"
    );
    assert_eq!(
        code(
            save,
            json!({ "name": "x", "profile": { "defaultAction": "NOPE" } })
        ),
        "BAD_PROFILE"
    );
    assert_eq!(
        server.query(
            "mutation { deleteSeccompProfile(name: \"tiny\") }",
            json!({})
        )["deleteSeccompProfile"],
        true
    );
    let listed = server.query("{ seccompProfiles { name } }", json!({}));
    assert_eq!(listed["seccompProfiles"].as_array().unwrap().len(), 4);
}

/// Bad profiles and commands: a clear message and exit code 2, nothing run.
#[test]
fn bad_profiles_are_refused_with_a_reason() {
    let dir = TempDir::new("seccomp-bad");
    let cases = [
        ("{\"defaultAction\": ", "EOF while parsing"),
        (
            "{\"defaultAction\": \"SCMP_ACT_MAYBE\"}",
            "unknown variant `SCMP_ACT_MAYBE`",
        ),
        ("[1, 2]", "not a seccomp profile"),
        (
            "{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": [{\"names\": [\"read\"], \
             \"action\": \"SCMP_ACT_NOTIFY\"}]}",
            "SCMP_ACT_NOTIFY needs an agent",
        ),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let path = dir.join(&format!("bad{i}.json"));
        std::fs::write(&path, text).unwrap();
        let out = eunomia(&[
            "seccomp",
            "exec",
            "--profile",
            path.to_str().unwrap(),
            "--",
            "/bin/true",
        ]);
        assert_eq!(out.status.code(), Some(2), "{text}: {}", stderr(&out));
        assert!(stderr(&out).contains(expected), "{text}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }
    let out = eunomia(&[
        "seccomp",
        "exec",
        "--profile",
        "/nonexistent/p.json",
        "--",
        "/bin/true",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("/nonexistent/p.json: No such file"),
        "{}",
        stderr(&out)
    );
}
