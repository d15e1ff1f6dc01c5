//! Workspace-relative path normalization for deps, outs, metrics and `wdir`.
//!
//! Every path the rest of the engine sees is in one canonical form, because paths are compared
//! as strings (does dep `data/x` lie inside out `data`?) and enter fingerprints: `/`-separated,
//! no `.` segments, `..` resolved lexically, no leading `./`, no trailing `/`, and never
//! absolute or escaping the workspace, and never holding a NUL. Lexical resolution (no filesystem access) is deliberate:
//! the outs usually do not exist yet, and a symlink must not change a stage's identity.

/// Why a path was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PathProblem {
    /// Absolute, or climbs above the workspace root after normalization.
    Outside,
    /// Empty, or normalizes to the workspace root itself.
    Empty,
    /// Holds a NUL character (a `"\0"` escape), which no file name can.
    Nul,
}

/// Joins `path` onto the (already normalized) `wdir` and normalizes the result.
pub(crate) fn normalize_in(wdir: &str, path: &str) -> Result<String, PathProblem> {
    if path.contains('\0') {
        return Err(PathProblem::Nul);
    }
    if path.trim().is_empty() {
        return Err(PathProblem::Empty);
    }
    if path.starts_with('/') || path.starts_with('\\') || has_drive_prefix(path) {
        return Err(PathProblem::Outside);
    }
    let mut parts: Vec<&str> = wdir.split('/').filter(|s| !s.is_empty()).collect();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(PathProblem::Outside);
                }
            }
            s => parts.push(s),
        }
    }
    if parts.is_empty() {
        return Err(PathProblem::Empty);
    }
    Ok(parts.join("/"))
}

/// Normalizes a `wdir`, for which the workspace root (`.`, `""`) is allowed and is `""`.
pub(crate) fn normalize_wdir(wdir: &str) -> Result<String, PathProblem> {
    match normalize_in("", if wdir.trim().is_empty() { "." } else { wdir }) {
        Ok(p) => Ok(p),
        Err(PathProblem::Empty) => Ok(String::new()),
        Err(e) => Err(e),
    }
}

/// `C:` style prefixes: absolute on Windows, and never meaningful inside a workspace.
fn has_drive_prefix(path: &str) -> bool {
    let b = path.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_dots_slashes_and_parents() {
        assert_eq!(normalize_in("", "./data/raw/").unwrap(), "data/raw");
        assert_eq!(normalize_in("", "a/./b//c").unwrap(), "a/b/c");
        assert_eq!(normalize_in("", "a/b/../c").unwrap(), "a/c");
        assert_eq!(normalize_in("sub/dir", "x.txt").unwrap(), "sub/dir/x.txt");
        assert_eq!(normalize_in("sub/dir", "../../top").unwrap(), "top");
    }

    #[test]
    fn refuses_escaping_absolute_and_empty_paths() {
        assert_eq!(normalize_in("", "/etc/passwd"), Err(PathProblem::Outside));
        assert_eq!(normalize_in("", "../x"), Err(PathProblem::Outside));
        assert_eq!(normalize_in("sub", "../../x"), Err(PathProblem::Outside));
        assert_eq!(normalize_in("", "a/../../x"), Err(PathProblem::Outside));
        assert_eq!(normalize_in("", "C:/x"), Err(PathProblem::Outside));
        assert_eq!(normalize_in("", ""), Err(PathProblem::Empty));
        assert_eq!(normalize_in("", "./"), Err(PathProblem::Empty));
        assert_eq!(normalize_in("sub", ".."), Err(PathProblem::Empty));
    }

    #[test]
    fn refuses_nul_characters() {
        assert_eq!(normalize_in("", "data/a\0b"), Err(PathProblem::Nul));
        assert_eq!(normalize_wdir("sub\0"), Err(PathProblem::Nul));
    }

    #[test]
    fn wdir_may_be_the_root() {
        assert_eq!(normalize_wdir(".").unwrap(), "");
        assert_eq!(normalize_wdir("").unwrap(), "");
        assert_eq!(normalize_wdir("./sub/dir/").unwrap(), "sub/dir");
        assert_eq!(normalize_wdir("../x"), Err(PathProblem::Outside));
    }
}
