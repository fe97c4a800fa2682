//! Seccomp profiles kept by name (migrations/0009_seccomp_profiles.sql). The store keeps
//! the profile's JSON; the seccomp manager reads it.

use sqlx::Row;

use super::{Store, StoreError};

/// One stored profile.
#[derive(Clone, Debug, PartialEq)]
pub struct SeccompProfileRecord {
    pub name: String,
    pub profile: String,
    pub source: String,
    pub saved_ns: u64,
}

fn record(row: &sqlx::sqlite::SqliteRow) -> SeccompProfileRecord {
    SeccompProfileRecord {
        name: row.get("name"),
        profile: row.get("profile"),
        source: row.get("source"),
        saved_ns: row.get::<i64, _>("saved_ts") as u64,
    }
}

impl Store {
    /// Keeps a profile under its name, replacing one of the same name.
    pub async fn save_seccomp_profile(&self, p: &SeccompProfileRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO seccomp_profiles (name, profile, source, saved_ts) VALUES (?, ?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET profile = excluded.profile, \
             source = excluded.source, saved_ts = excluded.saved_ts",
        )
        .bind(&p.name)
        .bind(&p.profile)
        .bind(&p.source)
        .bind(p.saved_ns as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn seccomp_profile(
        &self,
        name: &str,
    ) -> Result<Option<SeccompProfileRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM seccomp_profiles WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(record))
    }

    /// Every stored profile, by name.
    pub async fn seccomp_profiles(&self) -> Result<Vec<SeccompProfileRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM seccomp_profiles ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(record).collect())
    }

    /// Deletes a profile; false when there was none of this name.
    pub async fn delete_seccomp_profile(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM seccomp_profiles WHERE name = ?")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
