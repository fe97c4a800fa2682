//! OCI seccomp profiles (runtime-spec `config-linux.md`, the form `docker run
//! --security-opt seccomp=FILE`, runc and Kubernetes' `Localhost` profiles read), in the
//! `oci-spec` crate's types: advised from the calls a workload made, read back with
//! errors that say where, compared, merged, and given in security-profiles-operator's
//! form.

use std::collections::{BTreeMap, BTreeSet};

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompBuilder, LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};

use super::SeccompError;
use crate::trackers::syscall::{syscall_number, NARROWED_BY_ARG0};

/// The first arguments a workload called socket, clone and personality with (the
/// syscall tracker's `first_args`), by call name.
pub type FirstArgs = BTreeMap<String, BTreeSet<u64>>;

/// clone's flags that make namespaces (CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER,
/// NEWPID, NEWNET): the part of clone's flags a profile narrows, as Docker's default
/// profile does. The rest (threads or processes, signals) varies with the C library.
pub const CLONE_NAMESPACES: u64 = 0x7E02_0000;

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

/// [`advise`], with socket, clone and personality allowed only with the first arguments
/// the workload gave them: socket's families, clone's namespace flags (masked), the
/// personalities. A call with no recorded argument stays allowed whole.
pub fn advise_narrowed<S: AsRef<str>>(
    names: impl IntoIterator<Item = S>,
    first_args: &FirstArgs,
) -> LinuxSeccomp {
    let names: BTreeSet<String> = names.into_iter().map(|n| n.as_ref().to_owned()).collect();
    let narrowed: Vec<(&str, &BTreeSet<u64>)> = NARROWED_BY_ARG0
        .iter()
        .filter(|name| names.contains(**name))
        .filter_map(|name| Some((*name, first_args.get(*name).filter(|v| !v.is_empty())?)))
        .collect();
    let mut profile = advise(
        names
            .iter()
            .filter(|n| !narrowed.iter().any(|(name, _)| name == n)),
    );
    let mut rules = profile.syscalls().clone().unwrap_or_default();
    for (name, values) in narrowed {
        let conditions: BTreeSet<(u64, Option<u64>)> = match name {
            "clone" => values
                .iter()
                .map(|v| (CLONE_NAMESPACES, Some(v & CLONE_NAMESPACES)))
                .collect(),
            _ => values.iter().map(|&v| (v, None)).collect(),
        };
        rules.extend(conditions.into_iter().map(|(value, masked)| {
            let op = match masked {
                Some(_) => LinuxSeccompOperator::ScmpCmpMaskedEq,
                None => LinuxSeccompOperator::ScmpCmpEq,
            };
            let mut arg = LinuxSeccompArgBuilder::default()
                .index(0usize)
                .value(value)
                .op(op);
            if let Some(datum) = masked {
                arg = arg.value_two(datum);
            }
            LinuxSyscallBuilder::default()
                .names(vec![name.to_string()])
                .action(LinuxSeccompAction::ScmpActAllow)
                .args(vec![arg.build().expect("index, value and op are set")])
                .build()
                .expect("names, action and args are all a syscall rule needs")
        }));
    }
    profile.set_syscalls(Some(rules));
    profile
}

/// Whether `profile` (an allow-list) lets call `name` through with first argument
/// `arg0`: a rule names it without conditions, or with conditions on the first argument
/// that `arg0` meets. Conditions on other arguments are taken as met: only the first is
/// recorded.
pub fn permits(profile: &LinuxSeccomp, name: &str, arg0: u64) -> bool {
    let meets = |arg: &LinuxSeccompArg| {
        let value = arg.value();
        arg.index() != 0
            || match arg.op() {
                LinuxSeccompOperator::ScmpCmpEq => arg0 == value,
                LinuxSeccompOperator::ScmpCmpNe => arg0 != value,
                LinuxSeccompOperator::ScmpCmpLt => arg0 < value,
                LinuxSeccompOperator::ScmpCmpLe => arg0 <= value,
                LinuxSeccompOperator::ScmpCmpGt => arg0 > value,
                LinuxSeccompOperator::ScmpCmpGe => arg0 >= value,
                LinuxSeccompOperator::ScmpCmpMaskedEq => {
                    arg0 & value == arg.value_two().unwrap_or(0)
                }
            }
    };
    allow_rules(profile)
        .filter(|rule| rule.names().iter().any(|n| n == name))
        .any(|rule| rule.args().iter().flatten().all(meets))
}

fn allow_rules(profile: &LinuxSeccomp) -> impl Iterator<Item = &LinuxSyscall> {
    profile
        .syscalls()
        .iter()
        .flatten()
        .filter(|s| s.action() == LinuxSeccompAction::ScmpActAllow)
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
    allow_rules(profile)
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
    // A call allowed whole by one profile is allowed whole; one allowed only with some
    // arguments by every profile that names it keeps the union of those rules.
    let rules: Vec<&LinuxSyscall> = profiles.iter().flat_map(allow_rules).collect();
    let whole: BTreeSet<&String> = rules
        .iter()
        .filter(|r| r.args().as_ref().is_none_or(|a| a.is_empty()))
        .flat_map(|r| r.names())
        .collect();
    let mut merged = advise(whole.iter());
    let mut conditional: Vec<LinuxSyscall> = Vec::new();
    for rule in rules
        .iter()
        .filter(|r| r.args().as_ref().is_some_and(|a| !a.is_empty()))
    {
        for name in rule.names().iter().filter(|n| !whole.contains(n)) {
            let mut one = (*rule).clone();
            one.set_names(vec![name.clone()]);
            if !conditional.contains(&one) {
                conditional.push(one);
            }
        }
    }
    let mut all = merged.syscalls().clone().unwrap_or_default();
    all.extend(conditional);
    merged.set_syscalls(Some(all));
    Ok(merged)
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
    fn narrowed_profiles_allow_only_the_first_arguments_seen() {
        let first_args = FirstArgs::from([
            ("socket".to_string(), BTreeSet::from([1, 10])),
            // A thread and a fork: no namespace flag in either.
            ("clone".to_string(), BTreeSet::from([0x3d0f00, 0x1200011])),
        ]);
        let narrowed = advise_narrowed(["read", "socket", "clone", "personality"], &first_args);
        let json = serde_json::to_value(&narrowed).unwrap();
        assert_eq!(
            json["syscalls"],
            serde_json::json!([
                {"names": ["personality", "read"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
                {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 10, "op": "SCMP_CMP_EQ"}]},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": CLONE_NAMESPACES, "valueTwo": 0,
                           "op": "SCMP_CMP_MASKED_EQ"}]},
            ])
        );
        assert!(permits(&narrowed, "socket", 10) && !permits(&narrowed, "socket", 2));
        assert!(permits(&narrowed, "clone", 0x1200011));
        // CLONE_NEWUSER | CLONE_NEWNS | SIGCHLD: a new namespace is refused.
        assert!(!permits(&narrowed, "clone", 0x1002_0011));
        assert!(permits(&narrowed, "personality", 8) && !permits(&narrowed, "mkdir", 0));
        assert_eq!(
            crate::seccomp::filter::Filter::compile(&narrowed)
                .unwrap()
                .unknown,
            Vec::<String>::new()
        );

        // Merged with a profile that allows socket whole: socket is whole, clone narrow.
        let merged = merge(&[narrowed.clone(), advise(["socket"])]).unwrap();
        assert!(permits(&merged, "socket", 2) && !permits(&merged, "clone", 0x1002_0011));
        assert_eq!(
            merge(&[narrowed.clone(), narrowed.clone()]).unwrap(),
            narrowed
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
