//! Sessions that follow containers: a selector (one container through its restarts, a
//! name, an image) and the kernel cgroup filter of the session's tracker. A matching
//! container's cgroups are added the moment the manager learns of them: from the cgroup
//! tracker's mkdir (before the container runs anything), then the engine's events and
//! the scans, which repair anything missed.

use std::collections::HashSet;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::engine::CgroupFilter;

/// Which containers a session traces, those that start during it included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerSelector {
    /// One container by its full id: followed through restarts.
    Id(String),
    /// Containers with this name, one created later included.
    Name(String),
    /// Containers of this image (`bb` is `bb:latest`).
    Image(String),
}

impl ContainerSelector {
    pub fn matches(&self, id: &str, name: Option<&str>, image: Option<&str>) -> bool {
        match self {
            Self::Id(want) => id == want,
            Self::Name(want) => name == Some(want.trim_start_matches('/')),
            Self::Image(want) => image.is_some_and(|image| same_image(image, want)),
        }
    }
}

/// Whether two image references name one image as Docker reads them: a missing tag is
/// `latest`, and Docker Hub's official images may be written with or without their
/// registry and `library/`.
fn same_image(a: &str, b: &str) -> bool {
    fn normal(image: &str) -> String {
        let image = image.strip_prefix("docker.io/").unwrap_or(image);
        let image = image.strip_prefix("library/").unwrap_or(image);
        let last = image.rsplit('/').next().unwrap_or(image);
        match last.contains(':') || last.contains('@') {
            true => image.to_string(),
            false => format!("{image}:latest"),
        }
    }
    normal(a) == normal(b)
}

struct Follower {
    selector: ContainerSelector,
    /// Gone once the session's tracker has stopped.
    filter: Weak<CgroupFilter>,
    added: HashSet<u64>,
}

#[derive(Default)]
pub struct Followers {
    list: Mutex<Vec<Follower>>,
}

impl Followers {
    pub fn add(&self, selector: ContainerSelector, filter: &Arc<CgroupFilter>) {
        self.list.lock().push(Follower {
            selector,
            filter: Arc::downgrade(filter),
            added: HashSet::new(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.list.lock().is_empty()
    }

    /// Adds a container's cgroups to the filter of every session it matches; returns how
    /// many it added.
    pub fn offer(
        &self,
        id: &str,
        name: Option<&str>,
        image: Option<&str>,
        cgroup_ids: &[u64],
    ) -> usize {
        let mut added = 0;
        let mut list = self.list.lock();
        list.retain(|f| f.filter.strong_count() > 0);
        for follower in list
            .iter_mut()
            .filter(|f| f.selector.matches(id, name, image))
        {
            let Some(filter) = follower.filter.upgrade() else {
                continue;
            };
            for &cgroup_id in cgroup_ids {
                if !follower.added.insert(cgroup_id) {
                    continue;
                }
                if let Err(err) = filter.add(cgroup_id) {
                    // The filter is full (it holds CGROUP_FILTER_MAX cgroups).
                    tracing::warn!(
                        container = id,
                        cgroup_id,
                        "a session cannot follow this container's cgroup: {err}"
                    );
                    follower.added.remove(&cgroup_id);
                    continue;
                }
                added += 1;
            }
        }
        added
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_match_names_images_and_ids() {
        let id = "a".repeat(64);
        let name = Some("web1");
        let image = Some("bb");
        assert!(ContainerSelector::Id(id.clone()).matches(&id, name, image));
        assert!(!ContainerSelector::Id("b".repeat(64)).matches(&id, name, image));
        assert!(ContainerSelector::Name("/web1".into()).matches(&id, name, image));
        assert!(!ContainerSelector::Name("web".into()).matches(&id, name, image));
        assert!(!ContainerSelector::Name("web1".into()).matches(&id, None, image));
        for same in [
            "bb:latest",
            "docker.io/library/bb",
            "library/bb:latest",
            "bb",
        ] {
            assert!(
                ContainerSelector::Image(same.into()).matches(&id, name, image),
                "{same}"
            );
        }
        for other in ["bb:1", "bbx", "other/bb", "bb@sha256:00"] {
            assert!(
                !ContainerSelector::Image(other.into()).matches(&id, name, image),
                "{other}"
            );
        }
    }
}
