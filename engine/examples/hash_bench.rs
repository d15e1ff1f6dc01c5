//! Benchmark of the engine's hashing, hash cache and store (run by `scripts/bench/hash.sh`).
//!
//! `hash_bench DIR [--store]` prints `key value` lines: the sha2 in-memory throughput (shows
//! whether the SHA-NI backend is in use), a first-time directory digest, a first-time per-file
//! `digest_many` (what the executor does for deps), the hash-cache save/load, a warm re-hash,
//! and with `--store` a CAS insert and restore of DIR. Threads come from `RAYON_NUM_THREADS`.
//! Timing claims live here, never in tests.

use std::path::{Path, PathBuf};
use std::time::Instant;

use repro_engine::cache::Store;
use repro_engine::hash::Hasher;
use sha2::{Digest as _, Sha256};

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read bench dir")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// CPU seconds (user + system) of this process so far: robust to other load on the machine.
fn cpu() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Runs `f`, printing `<key>_s` (wall) and `<key>_cpu_s`.
fn timed<T>(key: &str, f: impl FnOnce() -> T) -> T {
    let (t, c) = (Instant::now(), cpu());
    let r = f();
    println!("{key}_s {:.4}", secs(t));
    println!("{key}_cpu_s {:.4}", cpu() - c);
    r
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first().map(PathBuf::from) else {
        eprintln!("usage: hash_bench DIR [--store]");
        std::process::exit(2);
    };
    let with_store = args.iter().any(|a| a == "--store");
    println!("threads {}", rayon::current_num_threads());
    #[cfg(target_arch = "x86_64")]
    println!("cpu_sha_ni {}", std::arch::is_x86_feature_detected!("sha"));

    // Raw compression speed on one core: ~2 GB/s means SHA-NI, ~0.4 GB/s the asm fallback.
    let buf = vec![0x5au8; 256 << 20];
    let c = cpu();
    std::hint::black_box(Sha256::digest(&buf));
    println!(
        "sha2_mem_MBps_per_cpu_s {:.0}",
        buf.len() as f64 / (cpu() - c) / 1e6
    );
    drop(buf);

    let mut files = Vec::new();
    files_under(&dir, &mut files);
    println!("files {}", files.len());

    let h = Hasher::ephemeral();
    let d = timed("cold_dir", || {
        h.digest(&dir).expect("digest").expect("dir exists")
    });
    println!("bytes {}", d.size);

    let h = Hasher::ephemeral();
    let r = timed("cold_files", || h.digest_many(&files));
    assert!(r.iter().all(|r| matches!(r, Ok(Some(_)))));

    let state = tempfile::tempdir().expect("tempdir");
    let h = Hasher::open(state.path()).expect("open");
    h.digest_many(&files);
    timed("cache_save", || h.save().expect("save"));
    let h = timed("cache_load", || Hasher::open(state.path()).expect("open"));
    println!("cache_entries {}", h.cache_len());
    timed("warm_files", || h.digest_many(&files));
    timed("warm_dir", || h.digest(&dir).expect("digest"));
    let st = h.stats();
    println!("warm_hits {}", st.cache_hits);
    println!("warm_rehashed {}", st.files_hashed);

    if with_store {
        let tmp = tempfile::tempdir_in(dir.parent().unwrap_or(Path::new("."))).expect("tempdir");
        let store = Store::open(&tmp.path().join("cache")).expect("store");
        timed("store_insert", || {
            store.insert(&dir, &d, &h).expect("insert")
        });
        let dest = tmp.path().join("restored");
        timed("store_restore", || {
            store.restore(&d, &dest).expect("restore")
        });
        let bad = timed("store_fsck", || store.fsck().expect("fsck"));
        assert!(bad.is_empty());
    }
}
