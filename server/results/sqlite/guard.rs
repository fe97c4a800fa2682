//! The standing guard's saved state (migrations/0007_guard.sql): present while it runs.

use sqlx::Row;

use super::{Store, StoreError};

impl Store {
    /// Records that the guard runs `rules` since `started_ns`.
    pub async fn save_guard(&self, rules: &[String], started_ns: u64) -> Result<(), StoreError> {
        let rules = serde_json::to_string(rules).expect("a list of strings serializes");
        sqlx::query("INSERT OR REPLACE INTO guard (id, rules, started_ts) VALUES (1, ?, ?)")
            .bind(rules)
            .bind(started_ns as i64)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records that the guard was stopped.
    pub async fn clear_guard(&self) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM guard").execute(&self.pool).await?;
        Ok(())
    }

    /// The rules of the guard that ran when the server last stopped, if one did.
    pub async fn saved_guard(&self) -> Result<Option<Vec<String>>, StoreError> {
        let row = sqlx::query("SELECT rules FROM guard WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.and_then(|r| serde_json::from_str(r.get::<&str, _>("rules")).ok()))
    }
}
