//! A profile compiled to the kernel's filter by `seccompiler` (Firecracker's compiler:
//! pure Rust, maintained; no filter code written here), and installed in a child between
//! fork and exec, with no_new_privs, so that the command runs under it from its first
//! instruction.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Arc;

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompOperator};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::profile::EPERM;
use super::SeccompError;
use crate::trackers::syscall::syscall_number;

/// A compiled profile.
#[derive(Clone, Debug)]
pub struct Filter {
    program: Arc<BpfProgram>,
    /// Names the profile gives that no x86_64 call has (profiles shared between
    /// architectures name some): left out, as runc leaves them.
    pub unknown: Vec<String>,
}

impl Filter {
    /// Compiles an OCI profile. Its rules must share one action (an allow-list's ALLOW,
    /// or a deny-list's ERRNO), the one kind of filter seccompiler builds; notify is not
    /// supported, having no agent to answer it.
    pub fn compile(profile: &LinuxSeccomp) -> Result<Filter, SeccompError> {
        let errno = |ret: Option<u32>| ret.or(profile.default_errno_ret()).unwrap_or(EPERM);
        let mismatch = action(profile.default_action(), errno(None))?;
        let groups = profile.syscalls().clone().unwrap_or_default();
        let mut matched: Option<SeccompAction> = None;
        let mut rules: BTreeMap<i64, Option<Vec<SeccompRule>>> = BTreeMap::new();
        let mut unknown = Vec::new();
        for group in &groups {
            let this = action(group.action(), errno(group.errno_ret()))?;
            if matched.as_ref().is_some_and(|m| *m != this) {
                return Err(SeccompError::Unsupported(format!(
                    "its rules take different actions ({:?} and {:?}); one is supported",
                    matched.unwrap(),
                    this
                )));
            }
            matched = Some(this);
            let rule = match group.args().as_deref() {
                None | Some([]) => None,
                Some(args) => Some(SeccompRule::new(
                    args.iter().map(condition).collect::<Result<_, _>>()?,
                )?),
            };
            for name in group.names() {
                let Some(nr) = syscall_number(name) else {
                    unknown.push(name.clone());
                    continue;
                };
                let entry = rules.entry(nr.into()).or_insert_with(|| Some(Vec::new()));
                // A call listed without conditions matches whatever other rules say.
                match (entry.as_mut(), &rule) {
                    (Some(list), Some(rule)) => list.push(rule.clone()),
                    _ => *entry = None,
                }
            }
        }
        let rules = rules
            .into_iter()
            .map(|(nr, list)| (nr, list.unwrap_or_default()))
            .collect();
        let matched = matched.unwrap_or(SeccompAction::Allow);
        if matched == mismatch {
            return Err(SeccompError::Unsupported(
                "its rules take the default action: they would change nothing".into(),
            ));
        }
        let filter = SeccompFilter::new(rules, mismatch, matched, TargetArch::x86_64)?;
        Ok(Filter {
            program: Arc::new(filter.try_into()?),
            unknown,
        })
    }

    /// Makes `command` install the filter in its child just before exec (after the
    /// caller's own pre-exec steps, if any were set first).
    pub fn install(&self, command: &mut Command) {
        let program = self.program.clone();
        // SAFETY: the closure allocates nothing on success and calls only prctl and
        // seccomp (through seccompiler), which are async-signal-safe.
        unsafe {
            command.pre_exec(move || {
                seccompiler::apply_filter(&program).map_err(|err| {
                    let code = match err {
                        seccompiler::Error::Prctl(e) | seccompiler::Error::Seccomp(e) => {
                            e.raw_os_error()
                        }
                        _ => None,
                    };
                    std::io::Error::from_raw_os_error(code.unwrap_or(libc::EINVAL))
                })
            });
        }
    }
}

fn action(action: LinuxSeccompAction, errno: u32) -> Result<SeccompAction, SeccompError> {
    Ok(match action {
        LinuxSeccompAction::ScmpActAllow => SeccompAction::Allow,
        LinuxSeccompAction::ScmpActErrno => SeccompAction::Errno(errno),
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            SeccompAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => SeccompAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => SeccompAction::Trap,
        LinuxSeccompAction::ScmpActLog => SeccompAction::Log,
        LinuxSeccompAction::ScmpActTrace => SeccompAction::Trace(errno),
        LinuxSeccompAction::ScmpActNotify => {
            return Err(SeccompError::Unsupported(
                "SCMP_ACT_NOTIFY needs an agent to answer".into(),
            ))
        }
    })
}

/// One argument test; the whole 64 bits are compared, as libseccomp does.
fn condition(arg: &LinuxSeccompArg) -> Result<SeccompCondition, SeccompError> {
    let index = u8::try_from(arg.index())
        .ok()
        .filter(|i| *i < 6)
        .ok_or_else(|| SeccompError::Malformed(format!("argument index {}", arg.index())))?;
    let op = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => SeccompCmpOp::Ne,
        LinuxSeccompOperator::ScmpCmpLt => SeccompCmpOp::Lt,
        LinuxSeccompOperator::ScmpCmpLe => SeccompCmpOp::Le,
        LinuxSeccompOperator::ScmpCmpEq => SeccompCmpOp::Eq,
        LinuxSeccompOperator::ScmpCmpGe => SeccompCmpOp::Ge,
        LinuxSeccompOperator::ScmpCmpGt => SeccompCmpOp::Gt,
        // Masked equality: `value` is the mask, `valueTwo` what the masked bits equal.
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            return Ok(SeccompCondition::new(
                index,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(arg.value()),
                arg.value_two().unwrap_or(0),
            )?)
        }
    };
    Ok(SeccompCondition::new(
        index,
        SeccompCmpArgLen::Qword,
        op,
        arg.value(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::profile::parse;

    #[test]
    fn compiles_allow_lists_and_refuses_what_it_cannot_install() {
        // A profile shared between architectures, as Docker's is.
        let shared = parse(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
                {"names": ["read", "exit_group", "arm_fadvise64_64"], "action": "SCMP_ACT_ALLOW"}]}"#,
        )
        .unwrap();
        let filter = Filter::compile(&shared).unwrap();
        assert_eq!(filter.unknown, ["arm_fadvise64_64"]);
        assert!(!filter.program.is_empty());
        let mixed = parse(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["write"], "action": "SCMP_ACT_LOG"}]}"#,
        )
        .unwrap();
        assert!(Filter::compile(&mixed)
            .unwrap_err()
            .to_string()
            .contains("different actions"));
        let conditional = parse(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
                {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
        )
        .unwrap();
        assert!(Filter::compile(&conditional).is_ok());
        let bad_index = parse(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
                {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
        )
        .unwrap();
        assert!(Filter::compile(&bad_index)
            .unwrap_err()
            .to_string()
            .contains("argument index 9"));
    }
}
