//! Safe unpacking: hostile archives are refused and write nothing outside the destination.

use std::io::{Read, Write};
use std::path::Path;

use stages::data::error::ArchiveBound;
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
    // Each call unpacks into a fresh `dest`: `unpack` refuses a directory that is not empty.
    let dest = sandbox.join("dest");
    if dest.exists() {
        std::fs::remove_dir_all(&dest).unwrap();
    }
    unpack(&archive, kind, &dest, &limits)
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
        ..Limits::default()
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

// ---- Decompression bombs (issue 19, item 4) ----
//
// Each bomb is 200 MB of zeros, a few hundred KB compressed, made here (the tar.xz one is a
// 30 KB fixture, made with `xz -9e` from a GNU tar of one 200 MiB file of zeros, because no
// LZMA encoder that finds matches is available to the tests). Each must be refused quickly, with
// a typed error naming the bound, and leave nothing but the archive itself in the sandbox.

const BOMB: u64 = 200 << 20;

fn zeros() -> std::io::Take<std::io::Repeat> {
    std::io::repeat(0).take(BOMB)
}

fn gz_of(mut data: impl std::io::Read) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::copy(&mut data, &mut gz).unwrap();
    gz.finish().unwrap()
}

fn zeros_tar() -> impl std::io::Read {
    let mut h = tar::Header::new_gnu();
    h.set_path("zeros.bin").unwrap();
    h.set_size(BOMB);
    h.set_mode(0o644);
    h.set_cksum();
    let header = h.as_bytes().to_vec();
    std::io::Cursor::new(header).chain(zeros())
}

fn zeros_zip() -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(false);
    w.start_file("zeros.bin", opts).unwrap();
    std::io::copy(&mut zeros(), &mut w).unwrap();
    w.finish().unwrap().into_inner()
}

/// The bomb's error after checking that it is an [`DataError::ArchiveLimit`] and that nothing
/// but the archive is left in the sandbox; prints how long the refusal took.
fn refused(s: &Path, name: &str, bytes: &[u8], kind: ArchiveKind, limits: Limits) -> DataError {
    let t = std::time::Instant::now();
    let err = try_unpack(s, name, bytes, kind, limits).unwrap_err();
    eprintln!(
        "{name} ({} bytes) refused in {:.2?}: {err}",
        bytes.len(),
        t.elapsed()
    );
    assert!(matches!(err, DataError::ArchiveLimit { .. }), "{err}");
    assert_eq!(listing(s), vec![name.to_string()], "nothing left behind");
    std::fs::remove_file(s.join(name)).unwrap();
    err
}

fn bound(err: &DataError) -> ArchiveBound {
    match err {
        DataError::ArchiveLimit { bound, .. } => *bound,
        other => panic!("not an archive limit: {other}"),
    }
}

fn small(max_bytes: u64) -> Limits {
    Limits {
        max_bytes,
        max_entries: 10,
        ..Limits::default()
    }
}

#[test]
fn gzip_bombs_are_refused_by_size_and_by_ratio() {
    let s = tempfile::tempdir().unwrap();
    let gz = gz_of(zeros());
    assert!(gz.len() < 400_000, "the bomb is small: {}", gz.len());
    let err = refused(s.path(), "z.gz", &gz, ArchiveKind::Gz, small(10 << 20));
    assert_eq!(bound(&err), ArchiveBound::Bytes);
    let msg = err.to_string();
    assert!(msg.contains("past the limit of 10485760 bytes"), "{msg}");
    assert!(msg.contains("entry `z`"), "{msg}");
    assert!(msg.contains("raise `max_bytes:`"), "{msg}");
    // The defaults stop it too: 1000:1 is past the ratio bound.
    let err = refused(s.path(), "z.gz", &gz, ArchiveKind::Gz, Limits::default());
    assert_eq!(bound(&err), ArchiveBound::Ratio, "{err}");
    assert!(err.to_string().contains("raise `max_ratio:`"), "{err}");

    let tgz = gz_of(zeros_tar());
    let err = refused(
        s.path(),
        "z.tar.gz",
        &tgz,
        ArchiveKind::TarGz,
        small(10 << 20),
    );
    assert_eq!(bound(&err), ArchiveBound::Bytes);
    assert!(err.to_string().contains("entry `zeros.bin`"), "{err}");
    let err = refused(
        s.path(),
        "z.tar.gz",
        &tgz,
        ArchiveKind::TarGz,
        Limits::default(),
    );
    assert_eq!(bound(&err), ArchiveBound::Ratio, "{err}");
}

#[test]
fn zip_bombs_are_refused_from_the_central_directory() {
    let s = tempfile::tempdir().unwrap();
    let z = zeros_zip();
    assert!(z.len() < 400_000, "the bomb is small: {}", z.len());
    let err = refused(s.path(), "z.zip", &z, ArchiveKind::Zip, small(10 << 20));
    assert_eq!(bound(&err), ArchiveBound::Bytes);
    assert!(err.to_string().contains("declares"), "{err}");
    let err = refused(s.path(), "z.zip", &z, ArchiveKind::Zip, Limits::default());
    assert_eq!(bound(&err), ArchiveBound::Ratio, "{err}");
    // The entry count is checked before anything is written, too.
    let many: Vec<(String, Vec<u8>)> = (0..20).map(|i| (format!("f{i}"), vec![b'.'])).collect();
    let refs: Vec<(&str, &[u8])> = many
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let err = refused(
        s.path(),
        "m.zip",
        &zip_with(&refs),
        ArchiveKind::Zip,
        small(1 << 20),
    );
    assert_eq!(bound(&err), ArchiveBound::Entries);
    assert!(err.to_string().contains("limit of 10 entries"), "{err}");
}

fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/unpack")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn xz_bombs_are_refused_before_they_are_decoded() {
    let s = tempfile::tempdir().unwrap();
    let txz = fixture("zeros-200m.tar.xz");
    assert!(txz.len() < 40_000);
    let err = refused(
        s.path(),
        "z.tar.xz",
        &txz,
        ArchiveKind::TarXz,
        small(10 << 20),
    );
    assert_eq!(bound(&err), ArchiveBound::Bytes, "{err}");
    assert!(err.to_string().contains("xz stream declares"), "{err}");
    let err = refused(
        s.path(),
        "z.tar.xz",
        &txz,
        ArchiveKind::TarXz,
        Limits::default(),
    );
    assert_eq!(bound(&err), ArchiveBound::Ratio, "{err}");
}

#[test]
fn a_real_multi_block_tar_xz_unpacks_through_the_guard() {
    // `xz -9 --block-size=65536 --check=crc32` of a GNU tar of `lines/a.txt` and `lines/b.txt`:
    // seven blocks, each with padding and a check for the guard to step over.
    let s = tempfile::tempdir().unwrap();
    let txz = fixture("multi-block.tar.xz");
    try_unpack(
        s.path(),
        "m.tar.xz",
        &txz,
        ArchiveKind::TarXz,
        Limits::default(),
    )
    .unwrap();
    let a: String = (0..20000).map(|i| format!("line {i}\n")).collect();
    let b: String = (0..20000u64).map(|i| format!("{}\n", i * i)).collect();
    assert_eq!(
        std::fs::read_to_string(s.path().join("dest/lines/a.txt")).unwrap(),
        a
    );
    assert_eq!(
        std::fs::read_to_string(s.path().join("dest/lines/b.txt")).unwrap(),
        b
    );
    assert_eq!(listing(s.path()), vec!["dest", "m.tar.xz"]);
    // A corrupt stream is a format error, and leaves nothing behind either.
    let mut bad = txz.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xFF;
    let err = try_unpack(
        s.path(),
        "bad.tar.xz",
        &bad,
        ArchiveKind::TarXz,
        Limits::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, DataError::Raw { .. } | DataError::Io { .. }),
        "{err}"
    );
    assert!(!s.path().join("dest").exists());
}

#[test]
#[allow(clippy::unnecessary_cast)] // statvfs field types differ between platforms
fn the_filesystem_reserve_is_kept_before_and_while_unpacking() {
    let s = tempfile::tempdir().unwrap();
    let gz = gz_of(zeros());
    let free = {
        let p = std::ffi::CString::new(s.path().to_str().unwrap()).unwrap();
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(p.as_ptr(), &mut st) }, 0);
        st.f_bavail as u64 * st.f_frsize as u64
    };
    let roomy = Limits {
        max_bytes: 1 << 40,
        max_ratio: 1 << 20,
        ..Limits::default()
    };
    // More reserve than there is space: refused before anything is written.
    let before = Limits {
        min_free: Some(free + (1 << 30)),
        ..roomy
    };
    let err = refused(s.path(), "z.gz", &gz, ArchiveKind::Gz, before);
    assert_eq!(bound(&err), ArchiveBound::FreeSpace);
    assert!(err.to_string().contains("lower `min_free:`"), "{err}");
    // Room for 8 MiB above the reserve: refused while writing, long before 200 MB.
    let during = Limits {
        min_free: Some(free.saturating_sub(8 << 20)),
        ..roomy
    };
    let err = refused(s.path(), "z.gz", &gz, ArchiveKind::Gz, during);
    assert_eq!(bound(&err), ArchiveBound::FreeSpace, "{err}");
}

#[test]
fn unpacking_into_a_non_empty_directory_is_refused() {
    let s = tempfile::tempdir().unwrap();
    let dest = s.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("keep"), b"mine").unwrap();
    let archive = s.path().join("a.tar");
    std::fs::write(&archive, tar_with(&[("x", F, "", b"y")])).unwrap();
    let err = unpack(&archive, ArchiveKind::Tar, &dest, &Limits::default()).unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
    assert_eq!(listing(&dest), vec!["keep"]);
}
