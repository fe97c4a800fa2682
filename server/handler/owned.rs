//! A record that owns its values: an event read back from the store or from the API, or a
//! row such as a session's, printed by the same printers as live events.

use super::KeyValue;
use crate::model::{Record, TrackerInfo, Value};

#[derive(Clone, Debug)]
pub struct OwnedRecord {
    /// The catalog entry of the tracker whose event this is (printers read each field's
    /// format there); none for other rows.
    pub catalog: Option<&'static TrackerInfo>,
    /// The fields in output order.
    pub fields: Vec<(&'static str, KeyValue)>,
}

impl Record for OwnedRecord {
    fn visit(&self, visit: &mut dyn FnMut(&str, Value<'_>)) {
        for (name, value) in &self.fields {
            visit(name, value.as_value());
        }
    }

    fn get(&self, name: &str) -> Option<Value<'_>> {
        self.fields
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_value())
    }

    fn catalog(&self) -> Option<&'static TrackerInfo> {
        self.catalog
    }
}
