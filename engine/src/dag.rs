//! The stage graph: edges from paths, cycle reports, target selection, topological order.
//!
//! An edge `a -> b` exists when one of `b`'s deps equals, lies inside, or contains one of `a`'s
//! outs (`data/x` depends on an out `data`, and a dep `data` depends on an out `data/x`). Nothing
//! else creates edges: there are no explicit `after:` lists, so the graph can never disagree with
//! what a stage reads.
//!
//! The graph is also where whole-pipeline validation lives, the checks no single stage can make:
//! two stages claiming one out (or nested outs), a cycle (printed as the cycle, each stage with
//! where it is declared and each arrow with the dep that makes it), and a dep that no
//! stage makes and that does not exist on disk. Every error points at `pipeline.yaml:LINE:COL`.
//!
//! Order is deterministic: among stages that are ready at the same time, the one declared first in
//! `pipeline.yaml` comes first, so dry runs, `repro dag` and sequential runs read like the file.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use crate::spec::{Location, Pipeline, Stage};

/// Index of a stage in [`Dag::stages`].
pub type StageId = usize;

/// Why the pipeline does not form a valid graph (boxed: errors are rare, results are hot).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct DagError(pub Box<DagErrorKind>);

impl From<DagErrorKind> for DagError {
    fn from(kind: DagErrorKind) -> Self {
        DagError(Box::new(kind))
    }
}

/// The classes of graph errors.
#[derive(Debug, thiserror::Error)]
pub enum DagErrorKind {
    #[error("{file}:{}:{}: out `{path}` of stage `{second}` is already an out of stage `{first}` (declared at line {}); each path must have one producer", .at.line, .at.col, .first_at.line)]
    DuplicateOut {
        file: PathBuf,
        path: String,
        first: String,
        first_at: Location,
        second: String,
        at: Location,
    },
    #[error("{file}:{}:{}: out `{path}` of stage `{second}` overlaps out `{other}` of stage `{first}`; outs of different stages must not contain each other", .at.line, .at.col)]
    NestedOut {
        file: PathBuf,
        path: String,
        other: String,
        first: String,
        second: String,
        at: Location,
    },
    #[error("{file}:{}:{}: stage `{stage}` depends on itself through `{path}`, which is one of its own outs", .at.line, .at.col)]
    SelfDependency {
        file: PathBuf,
        stage: String,
        path: String,
        at: Location,
    },
    #[error("{file}:{}:{}: the stages form a cycle: {}; {}remove one of these deps to break the cycle", .at.line, .at.col, .cycle.join(" -> "), cycle_links(file, links))]
    Cycle {
        file: PathBuf,
        /// Stage names around the cycle, the first repeated at the end.
        cycle: Vec<String>,
        /// Where the first stage of the cycle is declared.
        at: Location,
        /// One per arrow of `cycle`, in order: why the second stage waits for the first.
        links: Vec<CycleLink>,
    },
    #[error("{file}:{}:{}: dep `{path}` of stage `{stage}` does not exist and no stage makes it; create it or add a stage with it in `outs`", .at.line, .at.col)]
    MissingDep {
        file: PathBuf,
        stage: String,
        path: String,
        at: Location,
    },
    #[error("unknown target `{target}`; {}", target_hint(suggestions, known))]
    UnknownTarget {
        target: String,
        /// Close names that exist, closest first.
        suggestions: Vec<String>,
        /// Every stage and group name: groups and stages outside a fan-out first, then the
        /// members, each part sorted.
        known: Vec<String>,
    },
}

fn target_hint(suggestions: &[String], known: &[String]) -> String {
    let all = crate::spec::keys::listed(known, "`repro dag` shows every stage");
    match suggestions {
        [] => format!("known stages and groups: {all}"),
        [one] => format!("did you mean `{one}`? (known stages and groups: {all})"),
        many => {
            let list: Vec<String> = many.iter().map(|s| format!("`{s}`")).collect();
            format!(
                "did you mean one of {}? (known stages and groups: {all})",
                list.join(", ")
            )
        }
    }
}

/// One arrow `maker -> reader` of a cycle, with the positions that make it.
#[derive(Debug, Clone)]
pub struct CycleLink {
    pub maker: String,
    /// Where `maker` is declared.
    pub maker_at: Location,
    pub reader: String,
    /// The dep of `reader` that lies in (or contains) an out of `maker`, and where it is.
    pub dep: String,
    pub dep_at: Location,
}

/// "`a` (pipeline.yaml:2:3) makes `x`, read by `b` at pipeline.yaml:8:12; " per link.
fn cycle_links(file: &Path, links: &[CycleLink]) -> String {
    let f = file.display();
    links
        .iter()
        .map(|l| {
            format!(
                "`{}` ({f}:{}:{}) makes `{}`, read by `{}` at {f}:{}:{}; ",
                l.maker,
                l.maker_at.line,
                l.maker_at.col,
                l.dep,
                l.reader,
                l.dep_at.line,
                l.dep_at.col
            )
        })
        .collect()
}

/// The validated graph of a pipeline's stages.
#[derive(Debug)]
pub struct Dag {
    pub stages: Vec<Stage>,
    /// `upstream[b]` = the stages whose outs `b` reads, sorted.
    pub upstream: Vec<Vec<StageId>>,
    /// `downstream[a]` = the stages that read `a`'s outs, sorted.
    pub downstream: Vec<Vec<StageId>>,
    by_name: BTreeMap<String, StageId>,
    groups: BTreeMap<String, Vec<String>>,
    /// What every stage's process is given besides its own variables: how the pipeline was
    /// loaded ([`Pipeline::stage_env`]).
    pub env: BTreeMap<String, String>,
}

/// How `repro run` widens or narrows its targets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Selection {
    /// The targets and everything upstream of them (the default).
    #[default]
    WithUpstream,
    /// Only the targets themselves.
    Single,
    /// The targets, everything upstream and everything downstream of them.
    WithDownstream,
}

/// True when `a` equals `b` or one lies inside the other (path-component wise).
pub fn overlaps(a: &str, b: &str) -> bool {
    is_within(a, b) || is_within(b, a)
}

/// True when `inner` equals `outer` or lies inside it.
pub fn is_within(inner: &str, outer: &str) -> bool {
    outer.is_empty()
        || inner == outer
        || (inner.len() > outer.len()
            && inner.starts_with(outer)
            && inner.as_bytes()[outer.len()] == b'/')
}

impl Dag {
    /// Builds and validates the graph. `root` is the workspace, used to check that deps no stage
    /// makes exist.
    pub fn build(pipeline: Pipeline, root: &Path) -> Result<Dag, DagError> {
        let file = pipeline.file.clone();
        let env = pipeline.stage_env();
        let stages = pipeline.stages;

        // Producers, sorted by path so that overlap checks only look at neighbours.
        let mut producers: BTreeMap<&str, (StageId, Location)> = BTreeMap::new();
        for (id, stage) in stages.iter().enumerate() {
            for out in &stage.outs {
                if let Some(&(first, first_at)) = producers.get(out.path.as_str()) {
                    return Err(DagError::from(DagErrorKind::DuplicateOut {
                        file,
                        path: out.path.clone(),
                        first: stages[first].name.clone(),
                        first_at,
                        second: stage.name.clone(),
                        at: out.location,
                    }));
                }
                producers.insert(out.path.as_str(), (id, out.location));
            }
        }
        // Nested outs of two different stages would make "who produced this file" ambiguous.
        let sorted: Vec<(&str, StageId, Location)> = producers
            .iter()
            .map(|(p, &(id, at))| (*p, id, at))
            .collect();
        for pair in sorted.windows(2) {
            let (a, ida, _) = pair[0];
            let (b, idb, at) = pair[1];
            if ida != idb && is_within(b, a) {
                return Err(DagError::from(DagErrorKind::NestedOut {
                    file,
                    path: b.to_string(),
                    other: a.to_string(),
                    first: stages[ida].name.clone(),
                    second: stages[idb].name.clone(),
                    at,
                }));
            }
        }

        let mut upstream: Vec<BTreeSet<StageId>> = vec![BTreeSet::new(); stages.len()];
        for (id, stage) in stages.iter().enumerate() {
            for dep in &stage.deps {
                // Producers of the dep: an out that contains it (the nearest candidate sorts at
                // or before it), and outs inside it (a dep on a directory several stages fill).
                let prefix = format!("{}/", dep.path);
                let containing = producers
                    .range(..=dep.path.as_str())
                    .next_back()
                    .filter(|(path, _)| is_within(&dep.path, path));
                let inside = producers.range(dep.path.as_str()..).take_while(|(p, _)| {
                    **p == dep.path || p.starts_with(&prefix) || dep.path.is_empty()
                });
                let mut found = false;
                for (_, &(pid, _)) in containing.into_iter().chain(inside) {
                    found = true;
                    if pid == id {
                        return Err(DagError::from(DagErrorKind::SelfDependency {
                            file,
                            stage: stage.name.clone(),
                            path: dep.path.clone(),
                            at: dep.location,
                        }));
                    }
                    upstream[id].insert(pid);
                }
                if !found && std::fs::symlink_metadata(root.join(&dep.path)).is_err() {
                    return Err(DagError::from(DagErrorKind::MissingDep {
                        file,
                        stage: stage.name.clone(),
                        path: dep.path.clone(),
                        at: dep.location,
                    }));
                }
            }
        }

        let upstream: Vec<Vec<StageId>> = upstream
            .into_iter()
            .map(|s| s.into_iter().collect())
            .collect();
        let mut downstream = vec![Vec::new(); stages.len()];
        for (id, ups) in upstream.iter().enumerate() {
            for &u in ups {
                downstream[u].push(id);
            }
        }
        let by_name = stages
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        let dag = Dag {
            stages,
            upstream,
            downstream,
            by_name,
            groups: pipeline.groups,
            env,
        };
        if let Some(ids) = dag.find_cycle() {
            return Err(DagError::from(dag.cycle_error(file, &ids)));
        }
        Ok(dag)
    }

    /// The stage called `name`.
    pub fn id(&self, name: &str) -> Option<StageId> {
        self.by_name.get(name).copied()
    }

    /// Resolves target names (stage or group names) to stage ids.
    pub fn resolve_targets(&self, targets: &[String]) -> Result<BTreeSet<StageId>, DagError> {
        let mut ids = BTreeSet::new();
        for t in targets {
            if let Some(id) = self.id(t) {
                ids.insert(id);
            } else if let Some(members) = self.groups.get(t) {
                ids.extend(members.iter().filter_map(|m| self.id(m)));
            } else {
                let mut known: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
                known.extend(self.groups.keys().map(String::as_str));
                // Fan-out members after the names a user types most (groups, plain stages).
                known.sort_unstable_by_key(|n| (n.contains('@'), *n));
                known.dedup();
                return Err(DagError::from(DagErrorKind::UnknownTarget {
                    target: t.clone(),
                    suggestions: crate::spec::keys::suggestions(t, &known),
                    known: known.into_iter().map(str::to_owned).collect(),
                }));
            }
        }
        Ok(ids)
    }

    /// The stages to consider for `targets` (all stages when `targets` is empty), in topological
    /// order.
    pub fn select(
        &self,
        targets: &[String],
        selection: Selection,
    ) -> Result<Vec<StageId>, DagError> {
        let chosen: BTreeSet<StageId> = if targets.is_empty() {
            (0..self.stages.len()).collect()
        } else {
            let roots = self.resolve_targets(targets)?;
            match selection {
                Selection::Single => roots,
                Selection::WithUpstream => self.closure(&roots, &self.upstream),
                Selection::WithDownstream => {
                    let down = self.closure(&roots, &self.downstream);
                    self.closure(&down, &self.upstream)
                }
            }
        };
        Ok(self
            .topo_order()
            .into_iter()
            .filter(|id| chosen.contains(id))
            .collect())
    }

    fn closure(&self, roots: &BTreeSet<StageId>, edges: &[Vec<StageId>]) -> BTreeSet<StageId> {
        let mut seen = roots.clone();
        let mut queue: VecDeque<StageId> = roots.iter().copied().collect();
        while let Some(id) = queue.pop_front() {
            for &next in &edges[id] {
                if seen.insert(next) {
                    queue.push_back(next);
                }
            }
        }
        seen
    }

    /// All stages, upstream before downstream; ties broken by declaration order.
    pub fn topo_order(&self) -> Vec<StageId> {
        let mut indegree: Vec<usize> = self.upstream.iter().map(Vec::len).collect();
        let mut ready: BTreeSet<StageId> = (0..self.stages.len())
            .filter(|&i| indegree[i] == 0)
            .collect();
        let mut order = Vec::with_capacity(self.stages.len());
        while let Some(id) = ready.pop_first() {
            order.push(id);
            for &d in &self.downstream[id] {
                indegree[d] -= 1;
                if indegree[d] == 0 {
                    ready.insert(d);
                }
            }
        }
        order
    }

    /// The cycle `ids` (first repeated at the end) as an error that names where each stage is
    /// declared and which dep makes each arrow.
    fn cycle_error(&self, file: PathBuf, ids: &[StageId]) -> DagErrorKind {
        let links = ids
            .windows(2)
            .map(|pair| {
                let (maker, reader) = (&self.stages[pair[0]], &self.stages[pair[1]]);
                // The edge exists because some dep of `reader` overlaps some out of `maker`.
                let dep = reader
                    .deps
                    .iter()
                    .find(|d| maker.outs.iter().any(|o| overlaps(&d.path, &o.path)));
                CycleLink {
                    maker: maker.name.clone(),
                    maker_at: maker.location,
                    reader: reader.name.clone(),
                    dep: dep.map(|d| d.path.clone()).unwrap_or_default(),
                    dep_at: dep.map_or(reader.location, |d| d.location),
                }
            })
            .collect();
        DagErrorKind::Cycle {
            file,
            cycle: ids.iter().map(|&id| self.stages[id].name.clone()).collect(),
            at: self.stages[ids[0]].location,
            links,
        }
    }

    /// A cycle as stage ids, first id repeated at the end, if the graph has one.
    fn find_cycle(&self) -> Option<Vec<StageId>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Active,
            Done,
        }
        let n = self.stages.len();
        let mut mark = vec![Mark::New; n];
        for start in 0..n {
            if mark[start] != Mark::New {
                continue;
            }
            // Iterative DFS over downstream edges, keeping the active path.
            let mut path: Vec<(StageId, usize)> = vec![(start, 0)];
            mark[start] = Mark::Active;
            while let Some(&mut (node, ref mut next)) = path.last_mut() {
                if let Some(&child) = self.downstream[node].get(*next) {
                    *next += 1;
                    match mark[child] {
                        Mark::New => {
                            mark[child] = Mark::Active;
                            path.push((child, 0));
                        }
                        Mark::Active => {
                            let from = path.iter().position(|&(id, _)| id == child).unwrap_or(0);
                            let mut ids: Vec<StageId> =
                                path[from..].iter().map(|&(id, _)| id).collect();
                            ids.push(child);
                            return Some(ids);
                        }
                        Mark::Done => {}
                    }
                } else {
                    mark[node] = Mark::Done;
                    path.pop();
                }
            }
        }
        None
    }

    /// The edges among `ids`, in declaration order of their upstream end.
    fn edges(&self, ids: &[StageId]) -> Vec<(StageId, StageId)> {
        let keep: BTreeSet<StageId> = ids.iter().copied().collect();
        ids.iter()
            .flat_map(|&id| {
                self.downstream[id]
                    .iter()
                    .filter(|d| keep.contains(d))
                    .map(move |&d| (id, d))
            })
            .collect()
    }

    /// The graph as JSON for programs: the stages in declaration order, each with its group,
    /// deps, outs (metrics included) and the stages it reads from. A stage that reports on
    /// the pipeline (which folders are runs of *this* pipeline) reads this, not a folder listing.
    pub fn json(&self, ids: &[StageId]) -> String {
        let stages: Vec<serde_json::Value> = ids
            .iter()
            .map(|&id| {
                let stage = &self.stages[id];
                serde_json::json!({
                    "name": stage.name,
                    "group": stage.group,
                    "deps": stage.deps.iter().map(|d| &d.path).collect::<Vec<_>>(),
                    "outs": stage.outs.iter().map(|o| &o.path).collect::<Vec<_>>(),
                    "upstream": self.upstream[id]
                        .iter()
                        .map(|&u| &self.stages[u].name)
                        .collect::<Vec<_>>(),
                })
            })
            .collect();
        let mut text = serde_json::to_string_pretty(&serde_json::json!({ "stages": stages }))
            .expect("JSON of strings");
        text.push('\n');
        text
    }

    /// The graph as Mermaid `flowchart TD` text, nodes in declaration order.
    pub fn mermaid(&self, ids: &[StageId]) -> String {
        let mut s = String::from("flowchart TD\n");
        for &id in ids {
            let name = self.stages[id].name.replace('"', "#quot;");
            s.push_str(&format!("    n{id}[\"{name}\"]\n"));
        }
        for (a, b) in self.edges(ids) {
            s.push_str(&format!("    n{a} --> n{b}\n"));
        }
        s
    }

    /// The graph as Graphviz `dot` text.
    pub fn dot(&self, ids: &[StageId]) -> String {
        let quoted = |id: StageId| format!("\"{}\"", self.stages[id].name.replace('"', "\\\""));
        let mut s = String::from("digraph pipeline {\n    rankdir=TB;\n    node [shape=box];\n");
        for &id in ids {
            s.push_str(&format!("    {};\n", quoted(id)));
        }
        for (a, b) in self.edges(ids) {
            s.push_str(&format!("    {} -> {};\n", quoted(a), quoted(b)));
        }
        s.push_str("}\n");
        s
    }

    /// A plain-text listing: each stage with the stages it reads from.
    pub fn ascii(&self, ids: &[StageId]) -> String {
        let mut s = String::new();
        for &id in ids {
            let ups: Vec<&str> = self.upstream[id]
                .iter()
                .map(|&u| self.stages[u].name.as_str())
                .collect();
            if ups.is_empty() {
                s.push_str(&format!("{}\n", self.stages[id].name));
            } else {
                s.push_str(&format!("{} <- {}\n", self.stages[id].name, ups.join(", ")));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_is_component_wise() {
        assert!(is_within("data/x", "data"));
        assert!(is_within("data", "data"));
        assert!(!is_within("database", "data"));
        assert!(!is_within("data", "data/x"));
        assert!(overlaps("data", "data/x"));
        assert!(!overlaps("a/b", "a/c"));
    }
}
