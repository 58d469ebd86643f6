//! A route's lists (`tools/list`, `prompts/list`, `resources/list`,
//! `resources/templates/list`), first pages only, kept between clients so that a
//! merged list across many routes asks none of them again until something changed:
//! the tool server said `list_changed`, it went down or came back, or
//! [`MAX_AGE`] passed (for servers that never say `list_changed`).
//!
//! A fetch remembers the generation it started in: one that was under way when a list
//! was invalidated does not put an old list back (any invalidation moves the
//! generation on, which at worst costs one more fetch).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::time::Instant;

/// The longest a list is kept without a `list_changed` to say it is still good.
pub const MAX_AGE: Duration = Duration::from_secs(60);

/// One list's first page, as the tool server sent it.
#[derive(Debug, Clone)]
pub struct Page {
    /// The items.
    pub items: Arc<Vec<Box<RawValue>>>,
    /// Its `nextCursor`.
    pub next: Option<String>,
}

#[derive(Debug)]
struct Entry {
    page: Page,
    at: Instant,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, Entry>,
    /// Moved on by every invalidation.
    generation: u64,
}

/// A route's kept lists.
#[derive(Debug, Default)]
pub struct Lists {
    state: Mutex<State>,
}

impl Lists {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The kept first page of `method`, if fresh; else the generation to fetch in.
    pub fn get(&self, method: &str) -> Result<Page, u64> {
        let state = self.lock();
        match state.entries.get(method) {
            Some(entry) if entry.at.elapsed() < MAX_AGE => Ok(entry.page.clone()),
            _ => Err(state.generation),
        }
    }

    /// Keeps `page` as `method`'s, unless the list was invalidated since `generation`.
    pub fn put(&self, method: &str, generation: u64, page: Page) {
        let mut state = self.lock();
        if state.generation != generation {
            return;
        }
        state.entries.insert(
            method.to_owned(),
            Entry {
                page,
                at: Instant::now(),
            },
        );
    }

    /// Forgets `method`'s list; the page that was kept, if any.
    pub fn invalidate(&self, method: &str) -> Option<Page> {
        let mut state = self.lock();
        state.generation += 1;
        state.entries.remove(method).map(|e| e.page)
    }

    /// Forgets every list (the tool server went down or came back).
    pub fn invalidate_all(&self) {
        let mut state = self.lock();
        state.generation += 1;
        state.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(names: &[&str]) -> Page {
        Page {
            items: Arc::new(
                names
                    .iter()
                    .map(|n| RawValue::from_string(format!("{{\"name\":\"{n}\"}}")).unwrap())
                    .collect(),
            ),
            next: None,
        }
    }

    #[test]
    fn a_list_is_kept_until_invalidated() {
        let lists = Lists::default();
        let generation = lists.get("tools/list").unwrap_err();
        lists.put("tools/list", generation, page(&["a"]));
        assert_eq!(lists.get("tools/list").unwrap().items.len(), 1);
        assert!(lists.get("prompts/list").is_err());
        assert_eq!(lists.invalidate("tools/list").unwrap().items.len(), 1);
        assert!(lists.get("tools/list").is_err());
    }

    #[test]
    fn a_fetch_from_before_an_invalidation_is_not_kept() {
        let lists = Lists::default();
        let generation = lists.get("tools/list").unwrap_err();
        lists.invalidate("tools/list");
        lists.put("tools/list", generation, page(&["stale"]));
        assert!(lists.get("tools/list").is_err());
        let generation = lists.get("tools/list").unwrap_err();
        lists.invalidate_all();
        lists.put("tools/list", generation, page(&["stale"]));
        assert!(lists.get("tools/list").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_list_is_asked_again_after_its_maximum_age() {
        let lists = Lists::default();
        lists.put("tools/list", 0, page(&["a"]));
        tokio::time::advance(MAX_AGE - Duration::from_secs(1)).await;
        assert!(lists.get("tools/list").is_ok());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(lists.get("tools/list").is_err());
    }
}
