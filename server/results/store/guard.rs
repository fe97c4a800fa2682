//! The standing guard's saved state (migrations/0007_guard.sql): present while it runs.

use super::{Store, StoreError};
use crate::params;

impl Store {
    /// Records that the guard runs `rules` since `started_ns`.
    pub async fn save_guard(&self, rules: &[String], started_ns: u64) -> Result<(), StoreError> {
        let rules = serde_json::to_string(rules).expect("a list of strings serializes");
        self.db
            .execute(
                "INSERT INTO guard (id, rules, started_ts) VALUES (1, $1, $2) \
                 ON CONFLICT (id) DO UPDATE SET rules = excluded.rules, \
                 started_ts = excluded.started_ts",
                params![rules, started_ns],
            )
            .await?;
        Ok(())
    }

    /// Records that the guard was stopped.
    pub async fn clear_guard(&self) -> Result<(), StoreError> {
        self.db.execute("DELETE FROM guard", params![]).await?;
        Ok(())
    }

    /// The rules of the guard that ran when the server last stopped, if one did.
    pub async fn saved_guard(&self) -> Result<Option<Vec<String>>, StoreError> {
        let row = self
            .db
            .fetch_optional("SELECT rules FROM guard WHERE id = 1", params![])
            .await?;
        Ok(match row {
            Some(row) => serde_json::from_str(&row.text("rules")?).ok(),
            None => None,
        })
    }
}
