//! The pin format: a directory's hash is the sha256 of its sorted `RELPATH SHA256\n` manifest.
//! The expected text is written out by hand here from the documented format.

use sha2::{Digest, Sha256};
use stages::data::digest::{content_sha256, manifest};

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[test]
fn manifest_lists_nested_files_sorted_by_path() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("b/c")).unwrap();
    std::fs::create_dir_all(d.path().join("empty")).unwrap();
    std::fs::write(d.path().join("z.txt"), b"zed").unwrap();
    std::fs::write(d.path().join("b/c/deep.bin"), b"deep").unwrap();
    std::fs::write(d.path().join("a b.txt"), b"space").unwrap();
    std::os::unix::fs::symlink("z.txt", d.path().join("link")).unwrap();
    let want = format!(
        "a b.txt {}\nb/c/deep.bin {}\nlink {}\nz.txt {}\n",
        sha(b"space"),
        sha(b"deep"),
        sha(b"zed"),
        sha(b"zed")
    );
    assert_eq!(manifest(d.path()).unwrap(), want);
    assert_eq!(content_sha256(d.path()).unwrap(), sha(want.as_bytes()));
    // Links leaving the directory make the hash an error, as in the engine.
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::write(elsewhere.path().join("f"), b"x").unwrap();
    std::os::unix::fs::symlink(elsewhere.path().join("f"), d.path().join("out")).unwrap();
    assert!(manifest(d.path())
        .unwrap_err()
        .to_string()
        .contains("points outside"));
    // A single file's hash is its bytes' sha256.
    assert_eq!(
        content_sha256(&d.path().join("z.txt")).unwrap(),
        sha(b"zed")
    );
}
