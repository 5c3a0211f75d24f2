//! The daemon's view of open cache objects: object_id -> (anon fd, blob, size).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::devnode::CacheFile;
use crate::source::Blob;

/// One object the kernel opened and the daemon answered with `copen`.
pub struct Object {
    pub id: u32,
    pub volume: String,
    pub blob_name: String,
    pub blob: Arc<dyn Blob>,
    pub size: u64,
    pub file: Box<dyn CacheFile>,
    closed: AtomicBool,
}

impl Object {
    pub fn new(
        id: u32,
        volume: String,
        blob_name: String,
        blob: Arc<dyn Blob>,
        file: Box<dyn CacheFile>,
    ) -> Object {
        let size = blob.size();
        Object {
            id,
            volume,
            blob_name,
            blob,
            size,
            file,
            closed: AtomicBool::new(false),
        }
    }

    /// Marks the object closed (CLOSE received, or shutting down) so that
    /// background work on it stops. The fd itself closes when the last
    /// reference is dropped.
    pub fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// Open objects by object id.
#[derive(Default)]
pub struct ObjectTable {
    map: RwLock<HashMap<u32, Arc<Object>>>,
}

impl ObjectTable {
    /// Adds `obj`, returning an object that had the same id (a kernel/daemon
    /// bookkeeping mismatch the caller should log).
    pub fn insert(&self, obj: Arc<Object>) -> Option<Arc<Object>> {
        let old = self
            .map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(obj.id, obj);
        if let Some(o) = &old {
            o.mark_closed();
        }
        old
    }

    pub fn get(&self, id: u32) -> Option<Arc<Object>> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    /// Removes `id` and marks it closed.
    pub fn remove(&self, id: u32) -> Option<Arc<Object>> {
        let o = self
            .map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        if let Some(o) = &o {
            o.mark_closed();
        }
        o
    }

    /// Removes `id` only if it still maps to `obj` (not a newer object).
    pub fn remove_if_same(&self, obj: &Arc<Object>) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if map.get(&obj.id).is_some_and(|o| Arc::ptr_eq(o, obj)) {
            map.remove(&obj.id);
            obj.mark_closed();
        }
    }

    /// Every object, still in the table (for a takeover).
    pub fn snapshot(&self) -> Vec<Arc<Object>> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Removes and returns every object (at shutdown).
    pub fn drain(&self) -> Vec<Arc<Object>> {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        let v: Vec<_> = map.drain().map(|(_, o)| o).collect();
        for o in &v {
            o.mark_closed();
        }
        v
    }
}
