//! The seccomp manager's part of the API: profiles advised from syscall sessions, kept by
//! name, compared and merged.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicU64, Ordering};

use async_graphql::{Json, SimpleObject, ID};
use oci_spec::runtime::LinuxSeccomp;

use super::{api, coded};
use crate::model::SessionId;
use crate::model::{rfc3339_nanos, wall_clock_ns};
use crate::results::query::{AggOp, AggregateQuery};
use crate::results::store::SeccompProfileRecord;
use crate::seccomp::filter::Filter;
use crate::seccomp::profile::{
    self, advise, advise_narrowed, allowed, merge, FirstArgs, ProfileDiff,
};
use crate::seccomp::record::{self, Enforced, Workload};
use crate::seccomp::SeccompError;
use crate::session::SessionManager;

/// A stored profile.
#[derive(SimpleObject)]
pub struct SeccompProfileInfo {
    pub name: String,
    /// How many calls it allows.
    pub calls: usize,
    /// `sessions: <id>, ...` when advised from sessions, `given` otherwise.
    pub source: String,
    pub saved_at: String,
    /// The profile (OCI JSON).
    pub profile: Json<serde_json::Value>,
}

/// What one profile allows and the other does not.
#[derive(SimpleObject)]
pub struct SeccompDiff {
    pub only_in_first: Vec<String>,
    pub only_in_second: Vec<String>,
    pub in_both: Vec<String>,
}

impl From<ProfileDiff> for SeccompDiff {
    fn from(d: ProfileDiff) -> Self {
        SeccompDiff {
            only_in_first: d.only_in_first,
            only_in_second: d.only_in_second,
            in_both: d.in_both,
        }
    }
}

fn bad_input(message: impl Into<String>) -> async_graphql::Error {
    coded("BAD_USER_INPUT", message.into())
}

/// The allow-list profile of every call a syscall session saw; with `narrow`, socket,
/// clone and personality only with the first arguments they were given (a session with
/// option `first_args`).
pub async fn of_session(
    manager: &SessionManager,
    id: ID,
    narrow: bool,
) -> async_graphql::Result<LinuxSeccomp> {
    let record = manager.find(&SessionId::from(id.0)).await.map_err(api)?;
    if record.tracker != "syscall" {
        return Err(coded(
            "NOT_A_SYSCALL_SESSION",
            format!(
                "session {} ran the {} tracker: profiles come from syscall sessions",
                record.id, record.tracker
            ),
        ));
    }
    let results = manager.results(&record).map_err(api)?;
    let query = AggregateQuery {
        group_by: vec!["syscall".into(), "arg0".into()],
        op: AggOp::Count,
        field: None,
        top: None,
        conditions: Vec::new(),
    };
    let rows = results
        .aggregate(&query)
        .await
        .map_err(|e| coded("INTERNAL", e.to_string()))?;
    let mut names = BTreeSet::new();
    let mut first_args = FirstArgs::new();
    for row in rows {
        let mut keys = row.keys.into_iter();
        let (Some(name), arg0) = (keys.next(), keys.next()) else {
            continue;
        };
        if let Some(arg0) = arg0.and_then(|a| a.parse::<u64>().ok()) {
            first_args.entry(name.clone()).or_default().insert(arg0);
        }
        names.insert(name);
    }
    Ok(match narrow {
        true => advise_narrowed(names, &first_args),
        false => advise(names),
    })
}

/// A stored profile by name; UNKNOWN_PROFILE when there is none.
pub async fn stored(manager: &SessionManager, name: &str) -> async_graphql::Result<LinuxSeccomp> {
    let record = manager
        .store()
        .seccomp_profile(name)
        .await
        .map_err(|e| coded("INTERNAL", e.to_string()))?
        .ok_or_else(|| coded("UNKNOWN_PROFILE", format!("no seccomp profile `{name}`")))?;
    profile::parse(&record.profile).map_err(|e| coded("INTERNAL", e.to_string()))
}

/// `seccompProfile(sessionId | name)`.
pub async fn profile(
    manager: &SessionManager,
    session_id: Option<ID>,
    name: Option<String>,
    narrow: bool,
) -> async_graphql::Result<Json<serde_json::Value>> {
    let profile = match (session_id, name) {
        (Some(id), None) => of_session(manager, id, narrow).await?,
        (None, Some(name)) => stored(manager, &name).await?,
        _ => return Err(bad_input("give either sessionId or name")),
    };
    Ok(Json(
        serde_json::to_value(&profile).expect("a profile serializes"),
    ))
}

pub fn info(record: SeccompProfileRecord) -> async_graphql::Result<SeccompProfileInfo> {
    let parsed = profile::parse(&record.profile).map_err(|e| coded("INTERNAL", e.to_string()))?;
    Ok(SeccompProfileInfo {
        name: record.name,
        calls: allowed(&parsed).len(),
        source: record.source,
        saved_at: rfc3339_nanos(record.saved_ns),
        profile: Json(serde_json::to_value(&parsed).expect("a profile serializes")),
    })
}

pub async fn list(manager: &SessionManager) -> async_graphql::Result<Vec<SeccompProfileInfo>> {
    let all = manager.store().seccomp_profiles().await;
    let all = all.map_err(|e| coded("INTERNAL", e.to_string()))?;
    all.into_iter().map(info).collect()
}

pub async fn diff(
    manager: &SessionManager,
    first: &str,
    second: &str,
) -> async_graphql::Result<SeccompDiff> {
    let (a, b) = (
        stored(manager, first).await?,
        stored(manager, second).await?,
    );
    Ok(profile::diff(&a, &b).into())
}

/// Names people can type and files can carry.
fn check_name(name: &str) -> async_graphql::Result<()> {
    let fine = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    fine.then_some(()).ok_or_else(|| {
        bad_input(format!(
            "`{name}`: a profile name is 1 to 128 letters, digits, dots, dashes or underscores"
        ))
    })
}

/// Where `saveSeccompProfile` takes a profile from: exactly one of these is given.
pub struct SaveSource {
    pub session_ids: Option<Vec<ID>>,
    pub merge: Option<Vec<String>>,
    pub given: Option<Json<serde_json::Value>>,
}

/// `saveSeccompProfile`: advised from sessions (merged when several), merged from stored
/// profiles, or given whole.
pub async fn save(
    manager: &SessionManager,
    name: String,
    source: SaveSource,
    narrow: bool,
) -> async_graphql::Result<SeccompProfileInfo> {
    check_name(&name)?;
    let merged =
        |profiles: Vec<LinuxSeccomp>| merge(&profiles).map_err(|e| bad_input(e.to_string()));
    let (profile, source) = match (source.session_ids, source.merge, source.given) {
        (Some(ids), None, None) if !ids.is_empty() => {
            let mut profiles = Vec::new();
            for id in &ids {
                profiles.push(of_session(manager, id.clone(), narrow).await?);
            }
            let ids: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
            (merged(profiles)?, format!("sessions: {}", ids.join(", ")))
        }
        (None, Some(names), None) if !names.is_empty() => {
            let mut profiles = Vec::new();
            for stored_name in &names {
                profiles.push(stored(manager, stored_name).await?);
            }
            (merged(profiles)?, format!("merged: {}", names.join(", ")))
        }
        (None, None, Some(Json(value))) => {
            let profile = profile::parse(&value.to_string())
                .map_err(|e| coded("BAD_PROFILE", e.to_string()))?;
            (profile, "given".to_string())
        }
        _ => {
            return Err(bad_input(
                "give one of sessionIds (one or more), merge (stored profiles) or profile",
            ))
        }
    };
    let record = SeccompProfileRecord {
        name,
        profile: profile::to_json(&profile),
        source,
        saved_ns: wall_clock_ns(),
    };
    manager
        .store()
        .save_seccomp_profile(&record)
        .await
        .map_err(|e| coded("STORE", e.to_string()))?;
    info(record)
}

/// `deleteSeccompProfile`: false when there was none of this name.
pub async fn delete(manager: &SessionManager, name: &str) -> async_graphql::Result<bool> {
    let deleted = manager.store().delete_seccomp_profile(name).await;
    deleted.map_err(|e| coded("STORE", e.to_string()))
}

/// A call the profile refused during a verification run.
#[derive(SimpleObject)]
pub struct DeniedCall {
    pub name: String,
    pub calls: u64,
    /// The commands that made it.
    pub commands: Vec<String>,
}

/// How a workload ran under a profile.
#[derive(SimpleObject)]
pub struct SeccompVerification {
    /// The container's exit code; 128 + the signal when one ended it (137: killed at
    /// the end of `durationSecs`).
    pub exit_code: i32,
    /// The calls the profile refused, each with how often and by which commands.
    pub denied: Vec<DeniedCall>,
    /// Events the tracker lost: when not 0, a refused call may be missing.
    pub events_lost: u64,
}

/// Longest verification run the API starts.
const MAX_VERIFY_SECS: u64 = 3600;

/// `verifySeccompProfile`: a fresh container of `image` runs `command` under the profile
/// (stored by `name`, or given) for at most `duration_secs`, recorded from its first
/// instruction.
pub async fn verify(
    manager: &SessionManager,
    name: Option<String>,
    given: Option<Json<serde_json::Value>>,
    image: String,
    command: Vec<String>,
    duration_secs: u64,
) -> async_graphql::Result<SeccompVerification> {
    let profile = match (name, given) {
        (Some(name), None) => stored(manager, &name).await?,
        (None, Some(Json(value))) => {
            profile::parse(&value.to_string()).map_err(|e| coded("BAD_PROFILE", e.to_string()))?
        }
        _ => return Err(bad_input("give either name or profile")),
    };
    if !(1..=MAX_VERIFY_SECS).contains(&duration_secs) {
        return Err(coded(
            "BAD_DURATION",
            format!("durationSecs must be 1 to {MAX_VERIFY_SECS}"),
        ));
    }
    let filter = Filter::compile(&profile).map_err(|e| coded("BAD_PROFILE", e.to_string()))?;
    let run = move || {
        // Docker's CLI reads the profile from a file on this host.
        let file = ProfileFile::write(&profile)?;
        let enforced = Enforced {
            filter: &filter,
            path: &file.0,
        };
        let workload = Workload::Container { image, command };
        let limit = Some(std::time::Duration::from_secs(duration_secs));
        let recording = record::record(workload, Some(enforced), limit)?;
        Ok::<_, SeccompError>((recording.denied(&profile), recording))
    };
    let (denied, recording) = tokio::task::spawn_blocking(run)
        .await
        .map_err(|e| coded("INTERNAL", e.to_string()))?
        .map_err(|e| coded("SECCOMP", e.to_string()))?;
    let status = recording.status.expect("a workload started here ends");
    Ok(SeccompVerification {
        exit_code: status
            .code()
            .unwrap_or_else(|| 128 + ExitStatusExt::signal(&status).unwrap_or(0)),
        denied: denied
            .into_iter()
            .map(|(name, calls)| DeniedCall {
                name,
                calls: calls.count,
                commands: calls.comms.into_iter().collect(),
            })
            .collect(),
        events_lost: recording.lost,
    })
}

/// A profile written to a file of its own for the run, removed after.
struct ProfileFile(std::path::PathBuf);

impl ProfileFile {
    fn write(profile: &LinuxSeccomp) -> std::io::Result<ProfileFile> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "eunomia-seccomp-{}-{}.json",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, profile::to_json(profile))?;
        Ok(ProfileFile(path))
    }
}

impl Drop for ProfileFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
