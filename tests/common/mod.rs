//! A temp-dir project and a way to run the real `repro` binary in it, shared by the test
//! binaries (`tests/cli`, `tests/slurm`); each uses a part of it.
#![allow(dead_code)]

pub mod hostile;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct Project {
    pub dir: tempfile::TempDir,
    runlog: PathBuf,
}

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_repro")
}

impl Project {
    /// A project whose `pipeline.yaml` is `pipeline`. Commands can append their stage name to
    /// `"$RUNLOG"` to let the test see what ran.
    pub fn new(pipeline: &str) -> Project {
        let dir = tempfile::tempdir().expect("temp dir");
        let runlog = dir.path().join("../").join(format!(
            "{}.runlog",
            dir.path().file_name().unwrap().to_string_lossy()
        ));
        let p = Project { dir, runlog };
        p.file("pipeline.yaml", pipeline);
        p
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, rel: &str, content: &str) {
        let path = self.root().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.root().join(rel).exists()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .current_dir(self.root())
            .env("RUNLOG", &self.runlog)
            .env_remove("CUDA_VISIBLE_DEVICES")
            // `repro remote add --global` and the user-scope config stay inside the test.
            .env("XDG_CONFIG_HOME", self.root().join(".user-config"))
            .stdin(Stdio::null());
        cmd
    }

    pub fn repro(&self, args: &[&str]) -> Output {
        self.repro_env(args, &[])
    }

    /// `repro args` with extra environment variables.
    pub fn repro_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.command(args);
        cmd.envs(env.iter().copied());
        let out = cmd.output().expect("run repro");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `repro args` and asserts the exit code.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.repro(args);
        assert_eq!(out.code, 0, "repro {args:?} failed:\n{out:?}");
        out
    }

    /// True when some stage's staging directory (`.repro/tmp/<run>/<stage>/`) holds `rel` with
    /// `content` (trimmed): the stage is running and got that far.
    /// Waits (20 s at most) until a staging directory holds `rel` with `content`.
    pub fn wait_until_staged(&self, rel: &str, content: &str) {
        let start = std::time::Instant::now();
        while !self.staged_contains(rel, content) {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(20),
                "stage never started"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// How many entries `.repro/tmp/` holds (staging directories of runs); 0 when it is absent.
    pub fn staging_entries(&self) -> usize {
        std::fs::read_dir(self.root().join(".repro/tmp"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    pub fn staged_contains(&self, rel: &str, content: &str) -> bool {
        let Ok(runs) = std::fs::read_dir(self.root().join(".repro/tmp")) else {
            return false;
        };
        runs.flatten().any(|run| {
            std::fs::read_dir(run.path())
                .map(|stages| {
                    stages.flatten().any(|s| {
                        std::fs::read_to_string(s.path().join(rel))
                            .is_ok_and(|c| c.trim() == content)
                    })
                })
                .unwrap_or(false)
        })
    }

    /// The stage names that ran since the last call (in completion order), and clears the log.
    pub fn ran(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.runlog).unwrap_or_default();
        let _ = std::fs::remove_file(&self.runlog);
        let mut v: Vec<String> = text.lines().map(str::to_string).collect();
        v.sort();
        v
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.runlog);
    }
}
