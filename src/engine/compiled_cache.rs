//! On-disk cache of compiled components: `<data-dir>/compiled/<sha256>-<engine>.cwasm`.
//!
//! The key pairs the module digest with a hash of everything that makes machine code
//! compatible (wasmtime version, settings, CPU features), so a host upgrade or a config change
//! misses the cache instead of loading incompatible code. Each world has its own engine (see
//! `Runtime`), so its own key: the file name says which engine can load it. Files are written
//! once, atomically, and never rewritten: wasmtime mmaps them and uses them as copy-on-write
//! memory images.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io;
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

use crate::durable_file;
use crate::model::{Digest, HttpWorld};

pub struct CompiledCache {
    dir: PathBuf,
    /// Per world (in `HttpWorld::ALL` order), 16 hex digits of its engine's compatibility
    /// hash.
    engine_keys: [String; 2],
}

impl CompiledCache {
    /// Opens the cache for the engines of the WASI 0.2 and 0.3 worlds, in that order.
    pub fn open(dir: PathBuf, engines: [&wasmtime::Engine; 2]) -> io::Result<Self> {
        fs::create_dir_all(&dir)?;
        durable_file::remove_leftovers(&dir)?;
        let engine_keys = engines.map(|engine| {
            let mut hasher = StableHasher(Sha256::new());
            engine.precompile_compatibility_hash().hash(&mut hasher);
            hex::encode(&hasher.0.finalize()[..8])
        });
        // The engines differ in their component-model features, which the hash covers; were
        // the keys equal, one world's code could be loaded into the other's engine.
        assert_ne!(engine_keys[0], engine_keys[1], "both engines hash alike");
        let cache = Self { dir, engine_keys };
        cache.remove_incompatible()?;
        Ok(cache)
    }

    /// Where the code of `digest` compiled for `world`'s engine lives.
    pub fn path(&self, digest: &Digest, world: HttpWorld) -> PathBuf {
        self.dir.join(self.file_name(digest, world))
    }

    /// The artifact's file name, which is also its name in the fleet's shared store: the
    /// engine hash in it keeps nodes of different builds (and the two worlds) apart.
    pub fn file_name(&self, digest: &Digest, world: HttpWorld) -> String {
        format!("{}-{}.cwasm", digest.to_hex(), self.key(world))
    }

    fn key(&self, world: HttpWorld) -> &str {
        match world {
            HttpWorld::Proxy => &self.engine_keys[0],
            HttpWorld::Service => &self.engine_keys[1],
        }
    }

    /// Drops an artifact that failed to load, so the next load recompiles.
    pub fn evict(&self, digest: &Digest, world: HttpWorld) {
        let _ = fs::remove_file(self.path(digest, world));
    }

    /// Removes the code of `digest`, whichever engine it was compiled for.
    pub fn remove(&self, digest: &Digest) -> io::Result<()> {
        for world in HttpWorld::ALL {
            match fs::remove_file(self.path(digest, world)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Digests with an artifact for either engine.
    pub fn digests(&self) -> io::Result<Vec<Digest>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            if let Some(digest) = self.digest_of(&name.to_string_lossy()) {
                out.push(digest);
            }
        }
        Ok(out)
    }

    /// The digest an artifact file of this build's engines holds.
    fn digest_of(&self, file_name: &str) -> Option<Digest> {
        self.engine_keys.iter().find_map(|key| {
            file_name
                .strip_suffix(&format!("-{key}.cwasm"))
                .and_then(Digest::from_hex)
        })
    }

    /// Artifacts from another wasmtime build can never load again: reclaim their space.
    fn remove_incompatible(&self) -> io::Result<()> {
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".cwasm") && self.digest_of(&name).is_none() {
                tracing::info!(file = %name, "removing compiled artifact of another engine build");
                fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }
}

/// Feeds `Hash` output into sha256: `DefaultHasher` is not stable across Rust releases, and
/// this key must stay the same across restarts of the same build.
struct StableHasher(Sha256);

impl Hasher for StableHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
    }
}
