//! Content-addressed module storage: `<data-dir>/modules/<sha256>.wasm`.
//!
//! A blob is written (durably) before any database row names it, so metadata never points at
//! missing bytes; a crash in between leaves at most an orphan, removed at the next start.

use std::fs;
use std::io;
use std::path::PathBuf;

use crate::durable_file;
use crate::model::Digest;

/// The directory of module blobs.
#[derive(Debug)]
pub struct ModuleStore {
    dir: PathBuf,
}

impl ModuleStore {
    pub fn open(dir: PathBuf) -> io::Result<Self> {
        fs::create_dir_all(&dir)?;
        durable_file::remove_leftovers(&dir)?;
        Ok(Self { dir })
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!("{}.wasm", digest.to_hex()))
    }

    /// Stores `bytes` under their digest. Writing the same module twice is a no-op, since
    /// content addressing makes an existing file the right file.
    pub fn put(&self, digest: &Digest, bytes: &[u8]) -> io::Result<()> {
        let path = self.path(digest);
        if path.exists() {
            return Ok(());
        }
        durable_file::write(&path, bytes, 0o644)
    }

    pub fn remove(&self, digest: &Digest) -> io::Result<()> {
        match fs::remove_file(self.path(digest)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every digest with a blob on disk (for garbage collection at start-up).
    pub fn list(&self) -> io::Result<Vec<Digest>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(d) = name.strip_suffix(".wasm").and_then(Digest::from_hex) {
                out.push(d);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_round_trips_through_hex() {
        let d = Digest::of(b"abc");
        assert_eq!(
            d.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Digest::from_hex(&d.to_hex()), Some(d));
        assert_eq!(Digest::from_hex("zz"), None);
    }

    #[test]
    fn put_is_idempotent_and_listable() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModuleStore::open(dir.path().join("modules")).unwrap();
        let d = Digest::of(b"module");
        store.put(&d, b"module").unwrap();
        store.put(&d, b"module").unwrap();
        assert_eq!(fs::read(store.path(&d)).unwrap(), b"module");
        assert_eq!(store.list().unwrap(), vec![d]);
        store.remove(&d).unwrap();
        store.remove(&d).unwrap();
        assert!(store.list().unwrap().is_empty());
    }
}
