//! A directory remote between two local stores: what is pushed comes back verified, a corrupt
//! remote object is refused and leaves the local store as it was, and concurrent pushers of the
//! same objects both succeed.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use super::*;
use crate::fingerprint::DigestRecord;
use crate::hash::Hasher;

struct Side {
    _dir: tempfile::TempDir,
    root: PathBuf,
    store: Store,
    hasher: Hasher,
}

fn side() -> Side {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let store = Store::open(&root.join(".repro/cache")).unwrap();
    let hasher = Hasher::ephemeral();
    Side {
        _dir: dir,
        root,
        store,
        hasher,
    }
}

/// A stage with a directory out (two files) and a file out, stored in `s`'s cache.
fn entry(s: &Side, fingerprint: &str, salt: &str) -> LockEntry {
    let d = s.root.join("out");
    fs::create_dir_all(d.join("sub")).unwrap();
    fs::write(d.join("a.txt"), format!("a {salt}")).unwrap();
    fs::write(d.join("sub/b.bin"), vec![7u8; 100_000]).unwrap();
    fs::write(s.root.join("m.json"), format!("{{\"x\": \"{salt}\"}}")).unwrap();
    let mut outputs = BTreeMap::new();
    for p in ["out", "m.json"] {
        let digest = s.hasher.digest(&s.root.join(p)).unwrap().unwrap();
        s.store.insert(&s.root.join(p), &digest, &s.hasher).unwrap();
        outputs.insert(p.to_owned(), DigestRecord::from(&digest));
    }
    LockEntry {
        fingerprint: fingerprint.to_owned(),
        inputs: crate::fingerprint::Inputs {
            action: crate::fingerprint::ActionRecord::Cmd(vec!["make".into()]),
            wdir: ".".into(),
            params: Default::default(),
            deps: Default::default(),
            outs: Vec::new(),
            env: Default::default(),
        },
        outputs,
        deterministic: true,
        metrics: Default::default(),
    }
}

fn remote_at(dir: &Path, create: bool) -> Remote {
    Remote::open("shared", dir.to_str().unwrap(), Path::new("/"), 4, create).unwrap()
}

fn events() -> Sender {
    std::sync::mpsc::channel().0
}

#[test]
fn push_then_pull_round_trips_verified() {
    let (a, b) = (side(), side());
    let shared = tempfile::tempdir().unwrap();
    let e = entry(&a, "fp_one", "1");
    let r = remote_at(&shared.path().join("cache"), true);
    let pushed = r
        .push(&a.store, std::slice::from_ref(&e), &events())
        .unwrap();
    assert_eq!(
        (pushed.objects, pushed.records),
        (4, 1),
        "2 files, 1 manifest, 1 file"
    );
    // Pushing again sends nothing.
    let again = r
        .push(&a.store, std::slice::from_ref(&e), &events())
        .unwrap();
    assert_eq!((again.objects, again.present), (0, 4));

    // B knows only the fingerprint: it fetches the record and every object it names.
    let got = r.fetch_run(&b.store, "fp_one", &events()).unwrap().unwrap();
    assert_eq!(got, e);
    for d in e.outputs.values() {
        assert!(b.store.contains(&d.into()));
    }
    assert!(b.store.run_get("fp_one").unwrap().is_some());
    b.store
        .restore(&(&e.outputs["out"]).into(), &b.root.join("restored"))
        .unwrap();
    assert_eq!(
        fs::read(b.root.join("restored/sub/b.bin")).unwrap(),
        vec![7u8; 100_000]
    );
    assert!(r
        .fetch_run(&b.store, "fp_unknown", &events())
        .unwrap()
        .is_none());

    let here: BTreeMap<String, LockEntry> = [("s".to_owned(), e)].into();
    let p = r.presence(&b.store, &here).unwrap();
    assert_eq!(p["s"], Presence::default());
}

#[test]
fn a_corrupt_remote_object_is_refused_and_nothing_is_kept() {
    let (a, b) = (side(), side());
    let shared = tempfile::tempdir().unwrap();
    let e = entry(&a, "fp_two", "2");
    let r = remote_at(shared.path(), true);
    r.push(&a.store, std::slice::from_ref(&e), &events())
        .unwrap();
    let file = &e.outputs["m.json"].sha256;
    let on_remote = shared
        .path()
        .join(format!("{LAYOUT}/objects/{}/{}", &file[..2], &file[2..]));
    fs::write(&on_remote, "{\"x\": \"tampered\"}").unwrap();
    let err = r
        .pull(&b.store, std::slice::from_ref(&e), &events())
        .unwrap_err();
    assert!(
        matches!(err, RemoteError::Corrupt { ref id, .. } if id == file),
        "{err}"
    );
    assert!(err.to_string().contains("remote `shared`"), "{err}");
    assert!(
        !b.store.object_path(file).exists(),
        "the bad bytes were not stored"
    );
    assert!(
        b.store.run_get("fp_two").unwrap().is_none(),
        "no record without its objects"
    );
    let leftovers = fs::read_dir(b.store.tmp_dir()).unwrap().count();
    assert_eq!(
        leftovers, 0,
        "the temp file of the refused download is gone"
    );
}

#[test]
fn concurrent_pushes_of_the_same_objects_both_succeed() {
    let (a, b) = (side(), side());
    let shared = tempfile::tempdir().unwrap();
    let (ea, eb) = (entry(&a, "fp_same", "3"), entry(&b, "fp_same", "3"));
    assert_eq!(ea.outputs, eb.outputs);
    std::thread::scope(|s| {
        for (side, e) in [(&a, &ea), (&b, &eb)] {
            let dir = shared.path().to_owned();
            s.spawn(move || {
                for _ in 0..5 {
                    remote_at(&dir, true)
                        .push(&side.store, std::slice::from_ref(e), &events())
                        .unwrap();
                }
            });
        }
    });
    let c = side();
    let got = remote_at(shared.path(), false)
        .fetch_run(&c.store, "fp_same", &events())
        .unwrap()
        .unwrap();
    assert_eq!(got, ea);
}

#[test]
fn bad_urls_and_missing_directories_are_clear_errors() {
    let root = Path::new("/work");
    assert_eq!(
        Location::parse("r", "s3://bucket/a/b/", root).unwrap(),
        Location::S3 {
            bucket: "bucket".into(),
            prefix: "a/b".into()
        }
    );
    assert_eq!(
        Location::parse("r", "rel/cache", root).unwrap(),
        Location::Dir("/work/rel/cache".into())
    );
    assert_eq!(
        Location::parse("r", "file:///x", root).unwrap(),
        Location::Dir("/x".into())
    );
    for bad in ["gs://b/p", "s3://", ""] {
        let e = Location::parse("r", bad, root).unwrap_err();
        assert!(e.is_usage() && e.to_string().contains("remote `r`"), "{e}");
    }
    let t = tempfile::tempdir().unwrap();
    let missing = t.path().join("nope");
    let e = Remote::open("r", missing.to_str().unwrap(), root, 1, false)
        .err()
        .unwrap();
    assert!(matches!(e, RemoteError::NoDirectory { .. }), "{e}");
}

#[test]
fn stages_missing_at_the_source_are_left_out_and_the_rest_transferred() {
    let (a, b) = (side(), side());
    let shared = tempfile::tempdir().unwrap();
    let whole = entry(&a, "fp_whole", "4");
    // A second stage whose file object is gone from A's cache (gc'd, say).
    let mut gone = whole.clone();
    gone.fingerprint = "fp_gone".into();
    let ghost = "ab".repeat(32);
    gone.outputs.insert(
        "ghost.bin".into(),
        DigestRecord {
            sha256: ghost.clone(),
            size: 3,
            nfiles: None,
        },
    );
    let r = remote_at(shared.path(), true);
    let t = r
        .push(&a.store, &[whole.clone(), gone.clone()], &events())
        .unwrap();
    assert_eq!(t.incomplete, vec!["fp_gone".to_string()]);
    assert_eq!(t.records, 1);
    assert!(r
        .fetch_run(&b.store, "fp_gone", &events())
        .unwrap()
        .is_none());

    // Pulling both: the whole one arrives, the other is reported and gets no run record.
    let t = r.pull(&b.store, &[whole.clone(), gone], &events()).unwrap();
    assert_eq!(t.incomplete, vec!["fp_gone".to_string()]);
    assert_eq!(t.records, 1);
    assert!(b.store.run_get("fp_whole").unwrap().is_some());
    assert!(b.store.run_get("fp_gone").unwrap().is_none());
    assert!(!b.store.object_path(&ghost).exists());
}

#[test]
fn a_file_larger_than_a_part_goes_up_in_parts_and_comes_back_whole() {
    let (a, b) = (side(), side());
    let shared = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..PART + 12_345).map(|i| (i % 251) as u8).collect();
    fs::write(a.root.join("big.bin"), &big).unwrap();
    let digest = a.hasher.digest(&a.root.join("big.bin")).unwrap().unwrap();
    a.store
        .insert(&a.root.join("big.bin"), &digest, &a.hasher)
        .unwrap();
    let mut e = entry(&a, "fp_big", "5");
    e.outputs
        .insert("big.bin".into(), DigestRecord::from(&digest));
    let r = remote_at(shared.path(), true);
    r.push(&a.store, std::slice::from_ref(&e), &events())
        .unwrap();
    r.pull(&b.store, std::slice::from_ref(&e), &events())
        .unwrap();
    assert_eq!(fs::read(b.store.object_path(&digest.sha256)).unwrap(), big);
}
