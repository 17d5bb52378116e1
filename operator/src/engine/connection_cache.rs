//! One connection handle (a PostgreSQL pool, a MongoDB client) per server, kept while what it
//! connects with stays the same and replaced as soon as any of it changes.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Handles by server (the key of the object that names the server), each with the fingerprint
/// of the settings it was made with.
#[derive(Debug)]
pub struct ConnectionCache<T> {
    entries: Mutex<HashMap<String, (String, T)>>,
}

impl<T> Default for ConnectionCache<T> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

/// A handle from the cache and the one it replaced, if any (for the caller to close).
pub struct Lookup<T> {
    /// The handle to use.
    pub current: T,
    /// The handle made with the server's previous settings.
    pub replaced: Option<T>,
}

impl<T: Clone> ConnectionCache<T> {
    fn entries(&self) -> MutexGuard<'_, HashMap<String, (String, T)>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The handle of `server` made with `settings` (a fingerprint of everything it connects
    /// with); `make` creates it when there is none yet or the settings changed.
    pub fn get<E>(
        &self,
        server: &str,
        settings: &str,
        make: impl FnOnce() -> Result<T, E>,
    ) -> Result<Lookup<T>, E> {
        let mut entries = self.entries();
        if let Some((made_with, handle)) = entries.get(server)
            && made_with == settings
        {
            return Ok(Lookup {
                current: handle.clone(),
                replaced: None,
            });
        }
        let handle = make()?;
        let replaced = entries
            .insert(server.to_string(), (settings.to_string(), handle.clone()))
            .map(|(_, old)| old);
        Ok(Lookup {
            current: handle,
            replaced,
        })
    }

    /// Removes the handle of `server` (gone, or no longer reconciled here); returns it for closing.
    pub fn forget(&self, server: &str) -> Option<T> {
        self.entries().remove(server).map(|(_, handle)| handle)
    }

    /// Removes the handles of the servers `keep` says no to; returns them for closing.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) -> Vec<T> {
        let mut entries = self.entries();
        let gone: Vec<String> = entries.keys().filter(|k| !keep(k)).cloned().collect();
        gone.iter()
            .filter_map(|key| entries.remove(key))
            .map(|(_, handle)| handle)
            .collect()
    }

    /// How many servers have a handle.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether no server has a handle.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn made(value: u32) -> impl FnOnce() -> Result<u32, ()> {
        move || Ok(value)
    }

    #[test]
    fn the_same_settings_reuse_the_handle_and_changed_ones_replace_it() {
        let cache = ConnectionCache::default();
        assert_eq!(cache.get("pg", "a", made(1)).unwrap().current, 1);
        let again = cache.get("pg", "a", made(2)).unwrap();
        assert_eq!((again.current, again.replaced), (1, None));
        let changed = cache.get("pg", "b", made(3)).unwrap();
        assert_eq!((changed.current, changed.replaced), (3, Some(1)));
        assert_eq!(cache.get("other", "b", made(4)).unwrap().current, 4);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.forget("pg"), Some(3));
        assert_eq!(cache.len(), 1);
        cache.get("third", "c", made(5)).unwrap();
        assert_eq!(cache.retain(|server| server == "third"), [4]);
        assert_eq!(cache.len(), 1);
    }
}
