//! The enrichment handler: gives every event the container its cgroup belongs to.

use std::sync::Arc;

use super::ContainerManager;
use crate::handler::{Flow, Handler};
use crate::model::ContainerTag;
use crate::trackers::Event;

/// Sets `header.container` and passes the event on. Runs of events from one cgroup (the
/// common case) cost one comparison: the last answer is kept until the tables change.
pub struct Enrich<N> {
    manager: Arc<ContainerManager>,
    next: N,
    /// (cgroup id, table generation, answer) of the last lookup.
    last: Option<(u64, u64, Option<ContainerTag>)>,
}

impl<N> Enrich<N> {
    pub fn new(manager: Arc<ContainerManager>, next: N) -> Self {
        Self {
            manager,
            next,
            last: None,
        }
    }
}

impl<N: Handler<Event>> Handler<Event> for Enrich<N> {
    fn handle(&mut self, event: &Event) -> Flow {
        let cgroup_id = event.header.cgroup_id;
        let generation = self.manager.generation();
        let tag = match self.last {
            Some((id, gen, tag)) if id == cgroup_id && gen == generation => tag,
            _ => {
                let tag = self.manager.lookup(cgroup_id, event.header.pid);
                // Read the generation before the lookup: a change during it is seen next time.
                self.last = Some((cgroup_id, generation, tag));
                tag
            }
        };
        match tag {
            None => self.next.handle(event),
            Some(tag) => {
                let mut enriched = event.clone();
                enriched.header.container = Some(tag);
                self.next.handle(&enriched)
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.next.flush()
    }

    fn finish(&mut self) -> std::io::Result<()> {
        self.next.finish()
    }
}
