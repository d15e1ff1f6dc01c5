//! Where remotes are configured: three TOML files, read together, edited one at a time.
//!
//! ```toml
//! [core]
//! remote = "cluster"          # the default remote of `push`, `pull`, `--pull`
//!
//! [remote.cluster]
//! url = "/shared/repro-cache" # a directory (a cluster's shared filesystem) ...
//!
//! [remote.s3]
//! url = "s3://lab-bucket/repro" # ... or S3-compatible object storage
//! ```
//!
//! | scope     | file                                          | in git |
//! |-----------|-----------------------------------------------|--------|
//! | `project` | `repro.toml` beside `pipeline.yaml`           | yes: the group's shared remotes |
//! | `user`    | `$XDG_CONFIG_HOME/repro/config.toml` (else `~/.config/repro/config.toml`) | no |
//! | `local`   | `.repro/config.toml` (this clone only)        | no (`.repro/` is ignored) |
//!
//! A later scope overrides an earlier one, key by key: a user can point the project's `cluster`
//! at the path where their machine mounts it without touching the committed file. Like DVC's
//! `config` / `config.local`, with a user file for what is the same in every project.
//!
//! Decisions:
//! - **No credentials in any of these files.** An S3 remote takes its endpoint, region and keys
//!   from the usual AWS environment variables (see [`super::Location`]); a `url` is all a remote
//!   is, so nothing secret can end up committed.
//! - Files are edited with `toml_edit`: comments, order and formatting a person gave them are
//!   kept; each write is atomic (temp file, rename).
//! - An error names the file and the line (`repro.toml:3:1: ...`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, Item, Table};

use super::RemoteError;

/// One of the three config files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Project,
    User,
    Local,
}

impl Scope {
    /// Lowest precedence first.
    pub const ALL: [Scope; 3] = [Scope::Project, Scope::User, Scope::Local];

    pub fn name(self) -> &'static str {
        match self {
            Scope::Project => "project",
            Scope::User => "user",
            Scope::Local => "local",
        }
    }

    /// The file of this scope for the workspace at `root`; `None` for `user` when neither
    /// `XDG_CONFIG_HOME` nor `HOME` is set.
    pub fn path(self, root: &Path) -> Option<PathBuf> {
        match self {
            Scope::Project => Some(root.join("repro.toml")),
            Scope::Local => Some(root.join(".repro").join("config.toml")),
            Scope::User => std::env::var_os("XDG_CONFIG_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
                .map(|dir| dir.join("repro").join("config.toml")),
        }
    }
}

/// A configured remote: its URL and the scope that set it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteEntry {
    pub url: String,
    pub scope: Scope,
}

/// The three files merged.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub remotes: BTreeMap<String, RemoteEntry>,
    /// `core.remote`, and the scope that set it.
    pub default: Option<(String, Scope)>,
}

impl Config {
    /// Reads every scope's file that exists, later scopes overriding earlier ones.
    pub fn load(root: &Path) -> Result<Config, RemoteError> {
        let mut config = Config::default();
        for scope in Scope::ALL {
            let Some(path) = scope.path(root) else {
                continue;
            };
            let Some(doc) = read(&path)? else { continue };
            if let Some(remotes) = doc.get("remote") {
                let table = remotes
                    .as_table_like()
                    .ok_or_else(|| bad(&path, &doc, "remote", "`[remote.NAME]` tables"))?;
                for (name, item) in table.iter() {
                    let key = format!("remote.{name}.url");
                    let url = item
                        .get("url")
                        .and_then(Item::as_str)
                        .ok_or_else(|| bad(&path, &doc, &key, "a `url` string"))?;
                    config.remotes.insert(
                        name.to_owned(),
                        RemoteEntry {
                            url: url.to_owned(),
                            scope,
                        },
                    );
                }
            }
            if let Some(item) = doc.get("core").and_then(|c| c.get("remote")) {
                let name = item
                    .as_str()
                    .ok_or_else(|| bad(&path, &doc, "core.remote", "a remote name (a string)"))?;
                config.default = Some((name.to_owned(), scope));
            }
        }
        Ok(config)
    }

    /// The remote to use: `name` if given, else `core.remote`, else the only one configured.
    pub fn pick(&self, name: Option<&str>) -> Result<(String, String), RemoteError> {
        let known = || self.remotes.keys().cloned().collect::<Vec<_>>().join(", ");
        let name = match (name, &self.default) {
            (Some(n), _) => n.to_owned(),
            (None, Some((n, _))) => n.clone(),
            (None, None) if self.remotes.len() == 1 => self.remotes.keys().next().cloned().unwrap(),
            (None, None) if self.remotes.is_empty() => return Err(RemoteError::NoneConfigured),
            (None, None) => return Err(RemoteError::NoDefault { known: known() }),
        };
        match self.remotes.get(&name) {
            Some(e) => Ok((name, e.url.clone())),
            None => Err(RemoteError::Unknown {
                name,
                known: known(),
            }),
        }
    }
}

/// Adds (or replaces) `[remote.NAME] url = URL` in `scope`'s file, and makes it the default
/// when asked. Returns the file written.
pub fn add(
    root: &Path,
    scope: Scope,
    name: &str,
    url: &str,
    make_default: bool,
) -> Result<PathBuf, RemoteError> {
    check_name(name)?;
    edit(root, scope, |doc| {
        let remotes = table(doc, "remote");
        remotes.set_implicit(true);
        let mut entry = Table::new();
        entry.insert("url", toml_edit::value(url));
        remotes.insert(name, Item::Table(entry));
        if make_default {
            table(doc, "core").insert("remote", toml_edit::value(name));
        }
        Ok(())
    })
}

/// Makes `name` the default remote in `scope`'s file.
pub fn set_default(root: &Path, scope: Scope, name: &str) -> Result<PathBuf, RemoteError> {
    check_name(name)?;
    edit(root, scope, |doc| {
        table(doc, "core").insert("remote", toml_edit::value(name));
        Ok(())
    })
}

/// Removes remote `name` from `scope`'s file (and `core.remote` there if it named it).
pub fn remove(root: &Path, scope: Scope, name: &str) -> Result<PathBuf, RemoteError> {
    let path = scope_path(root, scope)?;
    edit(root, scope, |doc| {
        let removed = doc
            .get_mut("remote")
            .and_then(Item::as_table_like_mut)
            .and_then(|t| t.remove(name))
            .is_some();
        if !removed {
            return Err(RemoteError::NotInScope {
                name: name.to_owned(),
                scope: scope.name(),
                path: path.clone(),
            });
        }
        let core = doc.get_mut("core").and_then(Item::as_table_like_mut);
        if let Some(core) = core {
            if core.get("remote").and_then(Item::as_str) == Some(name) {
                core.remove("remote");
            }
        }
        Ok(())
    })
}

fn check_name(name: &str) -> Result<(), RemoteError> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(RemoteError::BadName {
            name: name.to_owned(),
        })
    }
}

fn scope_path(root: &Path, scope: Scope) -> Result<PathBuf, RemoteError> {
    scope.path(root).ok_or(RemoteError::NoUserConfig)
}

fn table<'a>(doc: &'a mut DocumentMut, key: &str) -> &'a mut Table {
    let item = doc.entry(key).or_insert_with(toml_edit::table);
    if !item.is_table() {
        *item = toml_edit::table();
    }
    item.as_table_mut().expect("made a table above")
}

/// Reads `scope`'s file (empty if absent), applies `change`, writes it back atomically.
fn edit(
    root: &Path,
    scope: Scope,
    change: impl FnOnce(&mut DocumentMut) -> Result<(), RemoteError>,
) -> Result<PathBuf, RemoteError> {
    let path = scope_path(root, scope)?;
    let mut doc = read(&path)?.unwrap_or_default();
    change(&mut doc)?;
    let io = |source| RemoteError::ConfigIo {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    crate::fsutil::write_atomic(&path, doc.to_string().as_bytes()).map_err(io)?;
    Ok(path)
}

fn read(path: &Path) -> Result<Option<DocumentMut>, RemoteError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(RemoteError::ConfigIo {
                path: path.to_owned(),
                source,
            })
        }
    };
    text.parse::<DocumentMut>()
        .map(Some)
        .map_err(|e| RemoteError::BadConfig {
            path: path.to_owned(),
            line: e.span().map(|s| line_of(&text, s.start)),
            reason: e.message().to_owned(),
        })
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn bad(path: &Path, doc: &DocumentMut, key: &str, expected: &str) -> RemoteError {
    let text = doc.to_string();
    let first = key.split('.').next().unwrap_or(key);
    let line = text.lines().position(|l| l.contains(first)).map(|i| i + 1);
    RemoteError::BadConfig {
        path: path.to_owned(),
        line,
        reason: format!("`{key}` must be {expected}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_pick_remove_round_trip_and_keep_comments() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let before = "# the lab's remotes\n[remote.old] # kept\nurl = \"/old\"\n";
        std::fs::write(root.join("repro.toml"), before).unwrap();
        add(root, Scope::Project, "cluster", "/shared/cache", true).unwrap();
        add(root, Scope::Project, "s3", "s3://bucket/prefix", false).unwrap();
        let text = std::fs::read_to_string(root.join("repro.toml")).unwrap();
        assert!(text.starts_with(before), "{text}");
        remove(root, Scope::Project, "old").unwrap();
        let c = Config::load(root).unwrap();
        assert_eq!(
            c.pick(None).unwrap(),
            ("cluster".into(), "/shared/cache".into())
        );
        assert_eq!(c.pick(Some("s3")).unwrap().1, "s3://bucket/prefix");
        assert!(matches!(
            c.pick(Some("nope")),
            Err(RemoteError::Unknown { .. })
        ));

        // A local override of the same name wins, key by key.
        add(root, Scope::Local, "cluster", "/mnt/cache", false).unwrap();
        let c = Config::load(root).unwrap();
        assert_eq!(c.pick(None).unwrap().1, "/mnt/cache");
        assert_eq!(c.remotes["cluster"].scope, Scope::Local);

        remove(root, Scope::Project, "cluster").unwrap();
        remove(root, Scope::Local, "cluster").unwrap();
        let c = Config::load(root).unwrap();
        assert!(
            c.default.is_none(),
            "removing the default's remote removes core.remote"
        );
        assert_eq!(
            c.pick(None).unwrap().0,
            "s3",
            "the only remote left is picked"
        );
        assert!(matches!(
            remove(root, Scope::Project, "cluster"),
            Err(RemoteError::NotInScope { .. })
        ));
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("repro.toml"), "[remote.a]\nurl = 3\n").unwrap();
        let e = Config::load(t.path()).unwrap_err().to_string();
        assert!(
            e.contains("repro.toml:1") && e.contains("remote.a.url"),
            "{e}"
        );
        std::fs::write(t.path().join("repro.toml"), "[remote.a\n").unwrap();
        let e = Config::load(t.path()).unwrap_err().to_string();
        assert!(e.contains("repro.toml:1"), "{e}");
        assert!(matches!(
            add(t.path(), Scope::Local, "bad name", "/x", false),
            Err(RemoteError::BadName { .. })
        ));
        assert!(matches!(
            Config::default().pick(None),
            Err(RemoteError::NoneConfigured)
        ));
    }
}
