//! Container drift: the files written while a guard runs, so that a rule can tell an exec
//! of one of them (`written_during_run(mnt_ns, filename)` in CEL) - a binary that came
//! after the image, the way droppers and miners arrive. Files are known by their mount
//! namespace and path, as the files tracker saw the write open and the process tracker
//! sees the exec in the same namespace.
//!
//! The two trackers run on two threads, and the files tracker's events are batched: an
//! exec may be checked before the write that preceded it is recorded. So an exec in a
//! container that matched nothing is parked for a while, and recording a write hands back
//! the parked execs of that file that came after it, to be checked again.

use std::collections::{HashMap, VecDeque};

use crate::model::{EventBody, Value};
use crate::trackers::Event;

/// Written files remembered at most; the oldest are forgotten first.
pub const MAX_WRITTEN: usize = 65_536;
/// Execs parked at most, waiting for a write to come; the oldest go first.
pub const MAX_PARKED: usize = 4096;

type Key = (u32, String);

/// The path of a file `event` opened for writing, creating or truncating it.
pub fn observed_write(event: &Event) -> Option<&str> {
    let body = &event.body;
    if (body.tracker(), body.kind()) != ("files", "open") {
        return None;
    }
    let Some(Value::U64(flags)) = body.get("flags") else {
        return None;
    };
    let writes = (libc::O_ACCMODE | libc::O_CREAT | libc::O_TRUNC) as u64;
    if flags & writes == 0 {
        return None;
    }
    match body.get("path") {
        Some(Value::Str(path)) => Some(path),
        _ => None,
    }
}

#[derive(Default)]
pub struct WrittenFiles(parking_lot::Mutex<Written>);

#[derive(Default)]
struct Written {
    /// Each file, with when it was first written.
    files: HashMap<Key, u64>,
    order: VecDeque<Key>,
    parked: HashMap<Key, Vec<Event>>,
    parked_order: VecDeque<Key>,
}

impl WrittenFiles {
    /// Remembers `path`, written in mount namespace `mnt_ns` at `ts_ns`; returns the
    /// parked execs of it that came after.
    pub fn record(&self, mnt_ns: u32, path: &str, ts_ns: u64) -> Vec<Event> {
        let mut written = self.0.lock();
        let key = (mnt_ns, path.to_string());
        let parked = written.parked.remove(&key).unwrap_or_default();
        if !written.files.contains_key(&key) {
            if written.order.len() >= MAX_WRITTEN {
                if let Some(oldest) = written.order.pop_front() {
                    written.files.remove(&oldest);
                }
            }
            written.order.push_back(key.clone());
            written.files.insert(key, ts_ns);
        }
        parked
            .into_iter()
            .filter(|exec| exec.header.ts_ns >= ts_ns)
            .collect()
    }

    pub fn contains(&self, mnt_ns: u32, path: &str) -> bool {
        self.0
            .lock()
            .files
            .contains_key(&(mnt_ns, path.to_string()))
    }

    /// Keeps an exec of `path` that matched nothing, in case its file's write comes later.
    pub fn park(&self, path: &str, exec: &Event) {
        let mut written = self.0.lock();
        if written.parked_order.len() >= MAX_PARKED {
            if let Some(oldest) = written.parked_order.pop_front() {
                let emptied = written.parked.get_mut(&oldest).is_some_and(|execs| {
                    execs.remove(0);
                    execs.is_empty()
                });
                if emptied {
                    written.parked.remove(&oldest);
                }
            }
        }
        let key = (exec.header.mnt_ns, path.to_string());
        written.parked_order.push_back(key.clone());
        written.parked.entry(key).or_default().push(exec.clone());
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::model::Header;
    use crate::trackers::process::exec_event;

    /// The files parked execs wait for.
    fn parked_keys(written: &WrittenFiles) -> HashSet<Key> {
        written.0.lock().parked.keys().cloned().collect()
    }

    fn exec(mnt_ns: u32, ts_ns: u64, filename: &str) -> Event {
        let header = Header {
            mnt_ns,
            ts_ns,
            ..Header::default()
        };
        exec_event(header, filename)
    }

    #[test]
    fn files_are_known_by_namespace_and_path_and_the_oldest_go_first() {
        let written = WrittenFiles::default();
        assert!(written.record(1, "/tmp/a", 10).is_empty());
        assert!(written.contains(1, "/tmp/a"));
        assert!(!written.contains(2, "/tmp/a"));
        for i in 0..MAX_WRITTEN {
            written.record(1, &format!("/tmp/{i}"), 20);
        }
        assert!(!written.contains(1, "/tmp/a"));
        assert!(written.contains(1, &format!("/tmp/{}", MAX_WRITTEN - 1)));
    }

    /// An exec checked before its file's write was recorded comes back when it is; one
    /// from before the write does not.
    #[test]
    fn a_parked_exec_comes_back_with_the_write_it_followed() {
        let written = WrittenFiles::default();
        written.park("/tmp/x", &exec(1, 100, "/tmp/x"));
        written.park("/tmp/x", &exec(1, 5, "/tmp/x"));
        written.park("/tmp/x", &exec(2, 100, "/tmp/x"));
        let back = written.record(1, "/tmp/x", 50);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].header.ts_ns, 100);
        assert_eq!(
            parked_keys(&written),
            HashSet::from([(2, "/tmp/x".to_string())])
        );
        for i in 0..MAX_PARKED {
            written.park("/tmp/y", &exec(3, i as u64, "/tmp/y"));
        }
        assert_eq!(
            parked_keys(&written),
            HashSet::from([(3, "/tmp/y".to_string())])
        );
    }
}
