//! A value that can be replaced while the daemon serves (config and rules on reload): readers
//! take the current version as an `Arc` and keep it for as long as one decision needs it, so a
//! reload never changes a value under a request or a pass halfway through.

use std::sync::{Arc, RwLock};

/// The current version of a `T`, swapped whole.
#[derive(Debug)]
pub struct Live<T>(Arc<RwLock<Arc<T>>>);

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live(self.0.clone())
    }
}

impl<T> Live<T> {
    pub fn new(value: T) -> Self {
        Live::from_arc(Arc::new(value))
    }

    pub fn from_arc(value: Arc<T>) -> Self {
        Live(Arc::new(RwLock::new(value)))
    }

    /// The current version.
    pub fn get(&self) -> Arc<T> {
        // A panic while swapping cannot leave a half-written Arc: the old one stays.
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the current version; readers holding the old one keep it.
    pub fn set(&self, value: Arc<T>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_keep_the_version_they_took() {
        let live = Live::new(1);
        let other = live.clone();
        let before = live.get();
        other.set(Arc::new(2));
        assert_eq!((*before, *live.get()), (1, 2));
    }
}
