//! Seccomp profiles kept by name (migrations/0009_seccomp_profiles.sql). The store keeps
//! the profile's JSON; the seccomp manager reads it.

use super::{Store, StoreError};
use crate::params;
use crate::results::db::DbRow;

/// One stored profile.
#[derive(Clone, Debug, PartialEq)]
pub struct SeccompProfileRecord {
    pub name: String,
    pub profile: String,
    pub source: String,
    pub saved_ns: u64,
}

fn record(row: &DbRow) -> Result<SeccompProfileRecord, StoreError> {
    Ok(SeccompProfileRecord {
        name: row.text("name")?,
        profile: row.text("profile")?,
        source: row.text("source")?,
        saved_ns: row.int("saved_ts")? as u64,
    })
}

impl Store {
    /// Keeps a profile under its name, replacing one of the same name.
    pub async fn save_seccomp_profile(&self, p: &SeccompProfileRecord) -> Result<(), StoreError> {
        self.db
            .execute(
                "INSERT INTO seccomp_profiles (name, profile, source, saved_ts) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (name) DO UPDATE SET profile = excluded.profile, \
                 source = excluded.source, saved_ts = excluded.saved_ts",
                params![&p.name, &p.profile, &p.source, p.saved_ns],
            )
            .await?;
        Ok(())
    }

    pub async fn seccomp_profile(
        &self,
        name: &str,
    ) -> Result<Option<SeccompProfileRecord>, StoreError> {
        self.db
            .fetch_optional(
                "SELECT * FROM seccomp_profiles WHERE name = $1",
                params![name],
            )
            .await?
            .as_ref()
            .map(record)
            .transpose()
    }

    /// Every stored profile, by name.
    pub async fn seccomp_profiles(&self) -> Result<Vec<SeccompProfileRecord>, StoreError> {
        self.db
            .fetch_all("SELECT * FROM seccomp_profiles ORDER BY name", params![])
            .await?
            .iter()
            .map(record)
            .collect()
    }

    /// Deletes a profile; false when there was none of this name.
    pub async fn delete_seccomp_profile(&self, name: &str) -> Result<bool, StoreError> {
        let deleted = self
            .db
            .execute(
                "DELETE FROM seccomp_profiles WHERE name = $1",
                params![name],
            )
            .await?;
        Ok(deleted > 0)
    }
}
