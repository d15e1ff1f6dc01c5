//! Safe unpacking: hostile archives are refused and write nothing outside the destination.

use std::io::Write;
use std::path::Path;

use stages::data::unpack::{unpack, ArchiveKind, Limits};
use stages::data::DataError;

/// A tar entry with raw header fields, bypassing the tar crate's own path checks so the test
/// can build the hostile archives an attacker would.
fn raw_entry(
    b: &mut tar::Builder<Vec<u8>>,
    name: &str,
    kind: tar::EntryType,
    link: &str,
    data: &[u8],
) {
    let mut h = tar::Header::new_gnu();
    let gnu = h.as_gnu_mut().unwrap();
    gnu.name[..name.len()].copy_from_slice(name.as_bytes());
    gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

fn tar_with(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, link, data) in entries {
        raw_entry(&mut b, name, *kind, link, data);
    }
    b.into_inner().unwrap()
}

/// Unpacks `bytes` (written as `name`) into `sandbox/dest`; returns the error, if any.
fn try_unpack(
    sandbox: &Path,
    name: &str,
    bytes: &[u8],
    kind: ArchiveKind,
    limits: Limits,
) -> Result<(), DataError> {
    let archive = sandbox.join(name);
    std::fs::write(&archive, bytes).unwrap();
    unpack(&archive, kind, &sandbox.join("dest"), &limits)
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

const F: tar::EntryType = tar::EntryType::Regular;

#[test]
fn parent_dir_entries_are_refused() {
    let s = tempfile::tempdir().unwrap();
    let t = tar_with(&[("ok.txt", F, "", b"fine"), ("../evil", F, "", b"pwned")]);
    let err = try_unpack(s.path(), "a.tar", &t, ArchiveKind::Tar, Limits::default()).unwrap_err();
    assert!(matches!(err, DataError::UnsafeArchive { .. }), "{err}");
    assert!(
        err.to_string().contains("`../evil` has a `..` component"),
        "{err}"
    );
    assert!(!s.path().join("evil").exists());
    let t = tar_with(&[("a/../../evil", F, "", b"pwned")]);
    assert!(try_unpack(s.path(), "b.tar", &t, ArchiveKind::Tar, Limits::default()).is_err());
    assert!(!s.path().join("evil").exists());
}

#[test]
fn absolute_entries_are_refused() {
    let s = tempfile::tempdir().unwrap();
    let target = s.path().join("abs-evil");
    let name = target.to_string_lossy().into_owned();
    let t = tar_with(&[(name.as_str(), F, "", b"pwned")]);
    let err = try_unpack(s.path(), "a.tar", &t, ArchiveKind::Tar, Limits::default()).unwrap_err();
    assert!(err.to_string().contains("has an absolute path"), "{err}");
    assert!(!target.exists());
}

#[test]
fn symlinks_leaving_the_destination_are_refused() {
    let s = tempfile::tempdir().unwrap();
    let sym = tar::EntryType::Symlink;
    for (i, link) in ["../../outside", "/etc/passwd", "../sub/../../x"]
        .iter()
        .enumerate()
    {
        let t = tar_with(&[("sub/link", sym, link, b"")]);
        let err = try_unpack(
            s.path(),
            &format!("{i}.tar"),
            &t,
            ArchiveKind::Tar,
            Limits::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("symlink"), "{link}: {err}");
    }
    // A link that stays inside is fine...
    let t = tar_with(&[
        ("data/real.bin", F, "", b"x"),
        ("data/alias.bin", sym, "real.bin", b""),
    ]);
    try_unpack(s.path(), "ok.tar", &t, ArchiveKind::Tar, Limits::default()).unwrap();
    assert_eq!(
        std::fs::read(s.path().join("dest/data/alias.bin")).unwrap(),
        b"x"
    );
    // ...but nothing may be written through one.
    let t = tar_with(&[("dir", sym, ".", b""), ("dir/x", F, "", b"y")]);
    let err = try_unpack(
        s.path(),
        "through.tar",
        &t,
        ArchiveKind::Tar,
        Limits::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("through a symlink"), "{err}");
}

#[test]
fn hard_links_are_copied_and_checked() {
    let s = tempfile::tempdir().unwrap();
    let t = tar_with(&[("a", F, "", b"data"), ("b", tar::EntryType::Link, "a", b"")]);
    try_unpack(s.path(), "h.tar", &t, ArchiveKind::Tar, Limits::default()).unwrap();
    assert_eq!(std::fs::read(s.path().join("dest/b")).unwrap(), b"data");
    let t = tar_with(&[("c", tar::EntryType::Link, "../../etc/passwd", b"")]);
    assert!(try_unpack(s.path(), "h2.tar", &t, ArchiveKind::Tar, Limits::default()).is_err());
}

#[test]
fn size_and_entry_limits_stop_bombs() {
    let s = tempfile::tempdir().unwrap();
    let zeros = vec![0u8; 1 << 20];
    let t = tar_with(&[("big", F, "", &zeros)]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&t).unwrap();
    let tgz = gz.finish().unwrap();
    assert!(tgz.len() < 10_000, "the bomb is small");
    let limits = Limits {
        max_bytes: 100_000,
        max_entries: 10,
    };
    let err = try_unpack(s.path(), "bomb.tar.gz", &tgz, ArchiveKind::TarGz, limits).unwrap_err();
    assert!(
        err.to_string().contains("past the limit of 100000 bytes"),
        "{err}"
    );

    let many: Vec<(String, tar::EntryType, &str, &[u8])> = (0..20)
        .map(|i| (format!("f{i}"), F, "", &b"."[..]))
        .collect();
    let refs: Vec<(&str, tar::EntryType, &str, &[u8])> = many
        .iter()
        .map(|(a, b, c, d)| (a.as_str(), *b, *c, *d))
        .collect();
    let err = try_unpack(
        s.path(),
        "many.tar",
        &tar_with(&refs),
        ArchiveKind::Tar,
        limits,
    )
    .unwrap_err();
    assert!(err.to_string().contains("limit of 10 entries"), "{err}");

    // A gzip bomb as a single `.gz` file is capped the same way.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&zeros).unwrap();
    let err = try_unpack(
        s.path(),
        "z.gz",
        &gz.finish().unwrap(),
        ArchiveKind::Gz,
        limits,
    )
    .unwrap_err();
    assert!(err.to_string().contains("past the limit"), "{err}");
}

fn zip_with(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in entries {
        w.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

#[test]
fn zip_entries_are_checked_like_tar() {
    let s = tempfile::tempdir().unwrap();
    let z = zip_with(&[("pkg/data.bin", b"abc"), ("pkg/sub/x.txt", b"x")]);
    try_unpack(s.path(), "ok.whl", &z, ArchiveKind::Zip, Limits::default()).unwrap();
    assert_eq!(
        std::fs::read(s.path().join("dest/pkg/data.bin")).unwrap(),
        b"abc"
    );

    let s = tempfile::tempdir().unwrap();
    let z = zip_with(&[("../evil", b"pwned")]);
    let err = try_unpack(s.path(), "bad.zip", &z, ArchiveKind::Zip, Limits::default()).unwrap_err();
    assert!(err.to_string().contains("`..`"), "{err}");
    assert!(!s.path().join("evil").exists());
}

/// A `.deb`: `ar` with debian-binary, control.tar.gz and data.tar.xz.
fn deb_with(data_tar: &[u8]) -> Vec<u8> {
    let mut xz = Vec::new();
    lzma_rs::xz_compress(&mut std::io::BufReader::new(data_tar), &mut xz).unwrap();
    let mut out = b"!<arch>\n".to_vec();
    for (name, body) in [
        ("debian-binary", &b"2.0\n"[..]),
        ("control.tar.gz", &b"not inspected"[..]),
        ("data.tar.xz", &xz[..]),
    ] {
        let header = format!(
            "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            name,
            0,
            0,
            0,
            100644,
            body.len()
        );
        assert_eq!(header.len(), 60);
        out.extend(header.as_bytes());
        out.extend(body);
        if body.len() % 2 == 1 {
            out.push(b'\n');
        }
    }
    out
}

#[test]
fn deb_data_tree_is_unpacked_and_checked() {
    let s = tempfile::tempdir().unwrap();
    let data = tar_with(&[("./usr/share/datasets/x/a.gz", F, "", b"payload")]);
    try_unpack(
        s.path(),
        "p.deb",
        &deb_with(&data),
        ArchiveKind::Deb,
        Limits::default(),
    )
    .unwrap();
    assert_eq!(
        std::fs::read(s.path().join("dest/usr/share/datasets/x/a.gz")).unwrap(),
        b"payload"
    );
    assert_eq!(listing(&s.path().join("dest")), vec!["usr"]);

    let evil = tar_with(&[("./../evil", F, "", b"pwned")]);
    let err = try_unpack(
        s.path(),
        "e.deb",
        &deb_with(&evil),
        ArchiveKind::Deb,
        Limits::default(),
    )
    .unwrap_err();
    assert!(matches!(err, DataError::UnsafeArchive { .. }), "{err}");

    let err = try_unpack(
        s.path(),
        "n.deb",
        b"!<arch>\n",
        ArchiveKind::Deb,
        Limits::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no `data.tar.*` member"), "{err}");
}
