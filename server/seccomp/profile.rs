//! OCI seccomp profiles (runtime-spec `config-linux.md`, the form `docker run
//! --security-opt seccomp=FILE`, runc and Kubernetes' `Localhost` profiles read), in the
//! `oci-spec` crate's types: advised from the calls a workload made, read back with
//! errors that say where, compared, merged, and given in security-profiles-operator's
//! form.

use std::collections::BTreeSet;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompBuilder, LinuxSyscallBuilder,
};

use super::SeccompError;
use crate::trackers::syscall::syscall_number;

/// The errno a refused call returns: EPERM, as Docker's default profile does.
pub const EPERM: u32 = 1;

/// The x86_64 allow-list profile of `names`: every other call fails with EPERM. Names no
/// x86_64 call has (a tracer's number without a name, another architecture's call) are
/// left out: the profile is for this architecture alone.
pub fn advise<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> LinuxSeccomp {
    let names: BTreeSet<String> = names
        .into_iter()
        .map(|n| n.as_ref().to_owned())
        .filter(|n| syscall_number(n).is_some())
        .collect();
    let allow = LinuxSyscallBuilder::default()
        .names(names.into_iter().collect::<Vec<_>>())
        .action(LinuxSeccompAction::ScmpActAllow)
        .build()
        .expect("names and action are all a syscall rule needs");
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActErrno)
        .default_errno_ret(EPERM)
        .architectures(vec![Arch::ScmpArchX86_64])
        .syscalls(vec![allow])
        .build()
        .expect("every field is set")
}

/// Reads a profile; a text that is not one is an error saying where and why. A profile
/// for other architectures only is refused: on this machine it would restrict nothing.
pub fn parse(text: &str) -> Result<LinuxSeccomp, SeccompError> {
    let profile: LinuxSeccomp =
        serde_json::from_str(text).map_err(|e| SeccompError::Malformed(e.to_string()))?;
    if let Some(arches) = profile.architectures() {
        if !arches.is_empty()
            && !arches
                .iter()
                .any(|a| matches!(a, Arch::ScmpArchX86_64 | Arch::ScmpArchNative))
        {
            return Err(SeccompError::Malformed(
                "its architectures leave out x86_64, this machine's".into(),
            ));
        }
    }
    if profile.default_action() == LinuxSeccompAction::ScmpActAllow
        && profile
            .syscalls()
            .iter()
            .flatten()
            .all(|s| s.names().is_empty())
    {
        return Err(SeccompError::Malformed(
            "it allows every call and names none: it would restrict nothing".into(),
        ));
    }
    Ok(profile)
}

/// The profile as JSON, pretty-printed as people keep profiles.
pub fn to_json(profile: &LinuxSeccomp) -> String {
    serde_json::to_string_pretty(profile).expect("a profile serializes")
}

/// The calls an allow-list profile lets through (with or without argument conditions).
pub fn allowed(profile: &LinuxSeccomp) -> BTreeSet<String> {
    profile
        .syscalls()
        .iter()
        .flatten()
        .filter(|s| s.action() == LinuxSeccompAction::ScmpActAllow)
        .flat_map(|s| s.names().iter().cloned())
        .collect()
}

/// What one allow-list profile lets through and the other does not.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProfileDiff {
    pub only_in_first: Vec<String>,
    pub only_in_second: Vec<String>,
    pub in_both: Vec<String>,
}

pub fn diff(first: &LinuxSeccomp, second: &LinuxSeccomp) -> ProfileDiff {
    let (a, b) = (allowed(first), allowed(second));
    ProfileDiff {
        only_in_first: a.difference(&b).cloned().collect(),
        only_in_second: b.difference(&a).cloned().collect(),
        in_both: a.intersection(&b).cloned().collect(),
    }
}

/// One allow-list profile letting through what any of `profiles` does: the profile of a
/// workload recorded in several runs (or several sessions). Each must be an allow-list
/// (default action not ALLOW), or the union would not mean "allowed by one of them".
pub fn merge(profiles: &[LinuxSeccomp]) -> Result<LinuxSeccomp, SeccompError> {
    if let Some(i) = profiles
        .iter()
        .position(|p| p.default_action() == LinuxSeccompAction::ScmpActAllow)
    {
        return Err(SeccompError::Unsupported(format!(
            "profile {} allows by default: only allow-lists merge",
            i + 1
        )));
    }
    Ok(advise(profiles.iter().flat_map(allowed)))
}

/// The profile as security-profiles-operator's `SeccompProfile` object (YAML), which
/// installs it on every node for pods that name it.
pub fn operator_object(name: &str, profile: &LinuxSeccomp) -> String {
    let spec = serde_json::to_value(profile).expect("a profile serializes");
    let object = serde_json::json!({
        "apiVersion": "security-profiles-operator.x-k8s.io/v1beta1",
        "kind": "SeccompProfile",
        "metadata": {"name": name},
        "spec": spec,
    });
    serde_yaml_ng::to_string(&object).expect("JSON values serialize as YAML")
}

/// Where the kubelet looks for `Localhost` profiles, below its seccomp root.
pub const KUBELET_PROFILES: &str = "/var/lib/kubelet/seccomp";

/// The pod `securityContext` that runs a pod's containers under the profile, once it is
/// on each node as `KUBELET_PROFILES/profiles/<name>.json` (the same JSON).
pub fn localhost_security_context(name: &str) -> String {
    let context = serde_json::json!({
        "securityContext": {
            "seccompProfile": {"type": "Localhost", "localhostProfile": format!("profiles/{name}.json")},
        },
    });
    format!(
        "# on each node: {KUBELET_PROFILES}/profiles/{name}.json (the profile's JSON as it is)\n{}",
        serde_yaml_ng::to_string(&context).expect("JSON values serialize as YAML")
    )
}

/// The `docker run` words that run `image` under the profile kept at `path`.
pub fn docker_run_args(path: &str, image: &str, command: &[String]) -> Vec<String> {
    let mut words = vec![
        "docker".to_string(),
        "run".into(),
        "--rm".into(),
        "--security-opt".into(),
        format!("seccomp={path}"),
        image.into(),
    ];
    words.extend(command.iter().cloned());
    words
}

/// The same as one line to paste into a shell.
pub fn docker_run_line(path: &str, image: &str, command: &[String]) -> String {
    let words = docker_run_args(path, image, command);
    shlex::try_join(words.iter().map(String::as_str)).unwrap_or_else(|_| words.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advised_profiles_read_back_and_compare() {
        let a = advise(["read", "write", "exit_group"]);
        let text = to_json(&a);
        assert!(
            text.contains("\"defaultAction\": \"SCMP_ACT_ERRNO\""),
            "{text}"
        );
        assert!(text.contains("\"defaultErrnoRet\": 1"), "{text}");
        assert!(text.contains("\"SCMP_ARCH_X86_64\""), "{text}");
        assert_eq!(parse(&text).unwrap(), a);
        let b = advise(["read", "getppid"]);
        assert_eq!(
            diff(&a, &b),
            ProfileDiff {
                only_in_first: vec!["exit_group".into(), "write".into()],
                only_in_second: vec!["getppid".into()],
                in_both: vec!["read".into()],
            }
        );
        let merged = merge(&[a, b]).unwrap();
        assert_eq!(
            allowed(&merged).into_iter().collect::<Vec<_>>(),
            ["exit_group", "getppid", "read", "write"]
        );
    }

    #[test]
    fn bad_profiles_say_why() {
        let err = |text: &str| parse(text).unwrap_err().to_string();
        assert!(err("{").contains("EOF while parsing"), "{}", err("{"));
        assert!(err("{\"syscalls\": []}").contains("defaultAction"));
        assert!(
            err("{\"defaultAction\": \"SCMP_ACT_NOPE\"}").contains("unknown variant"),
            "{}",
            err("{\"defaultAction\": \"SCMP_ACT_NOPE\"}")
        );
        assert!(err(
            "{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"architectures\": [\"SCMP_ARCH_AARCH64\"]}"
        )
        .contains("x86_64"));
        assert!(err("{\"defaultAction\": \"SCMP_ACT_ALLOW\"}").contains("restrict nothing"));
    }

    #[test]
    fn forms_for_kubernetes_and_docker() {
        let yaml = operator_object("web", &advise(["read"]));
        assert!(yaml.starts_with("apiVersion: security-profiles-operator.x-k8s.io/v1beta1\n"));
        assert!(yaml.contains("kind: SeccompProfile\n"), "{yaml}");
        assert!(yaml.contains("defaultAction: SCMP_ACT_ERRNO\n"), "{yaml}");
        assert_eq!(
            localhost_security_context("web"),
            "# on each node: /var/lib/kubelet/seccomp/profiles/web.json (the profile's JSON as \
             it is)\nsecurityContext:\n  seccompProfile:\n    type: Localhost\n    \
             localhostProfile: profiles/web.json\n"
        );
        assert_eq!(
            docker_run_line(
                "/p/web 1.json",
                "bb:latest",
                &["sh".into(), "-c".into(), "ls /".into()]
            ),
            "docker run --rm --security-opt 'seccomp=/p/web 1.json' bb:latest sh -c 'ls /'"
        );
    }
}
