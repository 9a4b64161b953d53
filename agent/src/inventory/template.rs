//! Route templates learnt from traffic, without a spec: `/users/42` and `/users/43` become
//! `/users/{id}` while `/api/v1` stays.
//!
//! Paths are learnt per service in a tree of segments. A segment that looks like a value
//! (`segment::classify`) is a parameter at once. Literal segments are kept as they are until a
//! position has seen more than `max_literals` different ones (`/{owner}/{repo}`, slugs); the
//! position then becomes a parameter for good and what was learnt below its literals is merged
//! under it. A template never goes back to a literal once it became a parameter, so templates
//! do not flap. The tree has a node budget: a path that would grow it past the budget gets the
//! overflow template (counted), so a flood of random paths costs bounded memory.

use std::collections::HashMap;

use super::segment::{SegmentKind, classify};

/// The template for paths that no longer fit in the tree.
pub const OVERFLOW: &str = "/{overflow}";

#[derive(Clone, Copy, Debug)]
pub struct TemplateLimits {
    /// Different literal segments at one position before it becomes a parameter.
    pub max_literals: usize,
    /// Nodes in one service's tree.
    pub max_nodes: usize,
    /// Segments of a path that are templated; deeper ones are folded into the last.
    pub max_depth: usize,
}

impl Default for TemplateLimits {
    fn default() -> Self {
        Self {
            max_literals: 32,
            max_nodes: 20_000,
            max_depth: 24,
        }
    }
}

#[derive(Default)]
struct Node {
    literals: HashMap<Box<str>, Node>,
    /// The parameter child, with its name.
    param: Option<(SegmentKind, Box<Node>)>,
    /// Too many literals were seen here: every segment at this position is a parameter.
    promoted: bool,
}

impl Node {
    fn count(&self) -> usize {
        1 + self.literals.values().map(Node::count).sum::<usize>()
            + self.param.as_ref().map_or(0, |(_, n)| n.count())
    }

    /// Folds `other` into `self` (a promoted position's literals into its parameter).
    fn merge(&mut self, other: Node) {
        for (segment, child) in other.literals {
            match self.literals.get_mut(&segment) {
                Some(existing) => existing.merge(child),
                None => {
                    self.literals.insert(segment, child);
                }
            }
        }
        if let Some((kind, child)) = other.param {
            match &mut self.param {
                Some((_, existing)) => existing.merge(*child),
                None => self.param = Some((kind, child)),
            }
        }
        self.promoted |= other.promoted;
    }
}

/// What a path was turned into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pub route: String,
    /// The path did not fit the tree's budget; `route` is [`OVERFLOW`].
    pub overflow: bool,
}

/// The learnt tree of one service's paths.
pub struct RouteTree {
    root: Node,
    nodes: usize,
    limits: TemplateLimits,
}

impl RouteTree {
    pub fn new(limits: TemplateLimits) -> Self {
        Self {
            root: Node::default(),
            nodes: 1,
            limits,
        }
    }

    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// The template of `path` (no query), learning from it.
    pub fn template(&mut self, path: &str) -> Template {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let folded = segments.len() > self.limits.max_depth;
        let depth = if folded {
            self.limits.max_depth.saturating_sub(1)
        } else {
            segments.len()
        };
        let limits = self.limits;
        let mut nodes = self.nodes;
        let mut route = String::with_capacity(path.len());
        let mut used_names: Vec<&'static str> = Vec::new();
        let mut node = &mut self.root;
        for segment in &segments[..depth] {
            let kind = classify(segment);
            if kind == SegmentKind::Literal
                && !node.promoted
                && !node.literals.contains_key(*segment)
                && node.literals.len() >= limits.max_literals
            {
                nodes = promote(node, nodes);
            }
            if kind != SegmentKind::Literal || node.promoted {
                if node.param.is_none() {
                    if nodes >= limits.max_nodes {
                        return overflow();
                    }
                    node.param = Some((kind, Box::default()));
                    nodes += 1;
                }
                let Some((param_kind, child)) = node.param.as_mut() else {
                    return overflow();
                };
                route.push_str("/{");
                route.push_str(&unique(param_kind.param_name(), &mut used_names));
                route.push('}');
                node = child;
            } else {
                if !node.literals.contains_key(*segment) {
                    if nodes >= limits.max_nodes {
                        return overflow();
                    }
                    node.literals.insert(Box::from(*segment), Node::default());
                    nodes += 1;
                }
                route.push('/');
                route.push_str(segment);
                let Some(child) = node.literals.get_mut(*segment) else {
                    return overflow();
                };
                node = child;
            }
        }
        if folded {
            route.push_str("/{rest}");
        }
        if route.is_empty() {
            route.push('/');
        }
        self.nodes = nodes;
        Template {
            route,
            overflow: false,
        }
    }
}

impl RouteTree {
    /// Learns a template written by [`RouteTree::template`] (from the store, after a restart),
    /// so the same paths keep the same template. `{param…}` marks a promoted position.
    pub fn learn_route(&mut self, route: &str) {
        if route == OVERFLOW {
            return;
        }
        let mut node = &mut self.root;
        for segment in route.split('/').filter(|s| !s.is_empty()) {
            if self.nodes >= self.limits.max_nodes {
                return;
            }
            match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some("rest") => return,
                Some(name) => {
                    let kind = match name.trim_end_matches(|c: char| c.is_ascii_digit()) {
                        "date" => SegmentKind::Date,
                        "email" => SegmentKind::Email,
                        "token" => SegmentKind::Token,
                        "id" => SegmentKind::Integer,
                        _ => {
                            node.promoted = true;
                            SegmentKind::Literal
                        }
                    };
                    if node.param.is_none() {
                        node.param = Some((kind, Box::default()));
                        self.nodes += 1;
                    }
                    let Some((_, child)) = node.param.as_mut() else {
                        return;
                    };
                    node = child;
                }
                None => {
                    if !node.literals.contains_key(segment) {
                        node.literals.insert(Box::from(segment), Node::default());
                        self.nodes += 1;
                    }
                    let Some(child) = node.literals.get_mut(segment) else {
                        return;
                    };
                    node = child;
                }
            }
        }
    }
}

/// Makes `node`'s position a parameter: its literal children are merged into the parameter
/// child. Returns the tree's new node count.
fn promote(node: &mut Node, nodes: usize) -> usize {
    node.promoted = true;
    let literals = std::mem::take(&mut node.literals);
    let before = literals.values().map(Node::count).sum::<usize>()
        + node.param.as_ref().map_or(0, |(_, n)| n.count());
    let (kind, mut merged) = match node.param.take() {
        Some((kind, child)) => (kind, *child),
        None => (SegmentKind::Literal, Node::default()),
    };
    for (_, child) in literals {
        merged.merge(child);
    }
    let after = merged.count();
    node.param = Some((kind, Box::new(merged)));
    (nodes + after).saturating_sub(before)
}

fn overflow() -> Template {
    Template {
        route: OVERFLOW.to_string(),
        overflow: true,
    }
}

/// `name`, or `name2`, `name3`... when the path already has a parameter of that name.
fn unique(name: &'static str, used: &mut Vec<&'static str>) -> String {
    let n = used.iter().filter(|u| **u == name).count();
    used.push(name);
    if n == 0 {
        name.to_string()
    } else {
        format!("{name}{}", n + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learn(tree: &mut RouteTree, paths: &[&str]) -> Vec<String> {
        paths.iter().map(|p| tree.template(p).route).collect()
    }

    fn tree() -> RouteTree {
        RouteTree::new(TemplateLimits {
            max_literals: 5,
            max_nodes: 200,
            max_depth: 8,
        })
    }

    #[test]
    fn typed_values_are_parameters_and_words_stay() {
        let mut t = RouteTree::new(TemplateLimits::default());
        assert_eq!(
            learn(
                &mut t,
                &[
                    "/users/42",
                    "/users/43/orders/7",
                    "/api/v1/items/3f2504e0-4f89-11d3-9a0c-0305e82c3301",
                    "/files/da39a3ee5e6b4b0d3255bfef95601890afd80709",
                    "/reports/2026-11-28",
                    "/users/alice@example.com/keys/sk_live_4eC39HqLyjWDarjtT1zdp7dc",
                    "/people/alice@example.com",
                    "/",
                    "",
                    "/health/",
                ]
            ),
            [
                "/users/{id}",
                "/users/{id}/orders/{id2}",
                "/api/v1/items/{id}",
                "/files/{id}",
                "/reports/{date}",
                // One parameter per position, named by the first kind of value seen there.
                "/users/{id}/keys/{token}",
                "/people/{email}",
                "/",
                "/",
                "/health",
            ]
        );
    }

    #[test]
    fn many_words_at_a_position_make_it_a_parameter_for_good() {
        let mut t = tree();
        // GitHub-style /{owner}/{repo}: owners are words, but many.
        let owners = ["torvalds", "rust-lang", "tokio-rs", "aya-rs", "kube-rs"];
        for owner in owners {
            assert_eq!(
                t.template(&format!("/{owner}/issues")).route,
                format!("/{owner}/issues")
            );
        }
        assert_eq!(t.template("/serde-rs/issues").route, "/{param}/issues");
        // Learnt for good, also for owners seen before, and what was below them survives.
        assert_eq!(t.template("/torvalds/issues").route, "/{param}/issues");
        assert_eq!(t.template("/torvalds/pulls").route, "/{param}/pulls");
        assert_eq!(
            t.template("/tokio-rs/issues/12").route,
            "/{param}/issues/{id}"
        );
        // Other positions keep their words.
        assert_eq!(t.template("/x/issues").route, "/{param}/issues");
    }

    #[test]
    fn versions_and_few_words_stay_literal() {
        let mut t = tree();
        let routes = learn(&mut t, &["/api/v1/users", "/api/v2/users", "/api/v1/users"]);
        assert_eq!(routes, ["/api/v1/users", "/api/v2/users", "/api/v1/users"]);
    }

    #[test]
    fn a_flood_of_random_paths_is_bounded_and_counted() {
        let mut t = tree();
        let mut overflow = 0;
        for i in 0..10_000u32 {
            // Words, not values, at every depth: the worst case for the tree.
            let path = format!("/w{}/x{}/y{}", i % 97, i % 89, i);
            if t.template(&path).overflow {
                overflow += 1;
            }
        }
        assert!(t.nodes() <= 200, "{}", t.nodes());
        assert_eq!(
            t.nodes(),
            t.root.count(),
            "the running count matches the tree"
        );
        // Promotion keeps the tree small enough that nothing overflowed here.
        assert_eq!(overflow, 0);
        assert_eq!(t.template("/w1/x2/y3").route, "/{param}/{param2}/{param3}");

        // With a tiny budget, new paths overflow instead of growing the tree.
        let mut small = RouteTree::new(TemplateLimits {
            max_literals: 1000,
            max_nodes: 10,
            max_depth: 8,
        });
        let results: Vec<Template> = (0..50).map(|i| small.template(&format!("/a{i}"))).collect();
        assert!(results.iter().filter(|t| t.overflow).count() >= 40);
        assert!(small.nodes() <= 10);
        assert_eq!(small.nodes(), small.root.count());
        assert_eq!(
            small.template("/a1").route,
            "/a1",
            "learnt paths keep their template"
        );
    }

    #[test]
    fn learnt_routes_come_back_the_same_after_a_restart() {
        let mut paths: Vec<String> = ["a", "b", "c", "d", "e", "f", "g"]
            .iter()
            .map(|owner| format!("/api/{owner}/repos/7"))
            .collect();
        paths.extend(["/health".to_string(), "/api/a/repos/7/issues".to_string()]);
        let mut before = tree();
        let routes: Vec<String> = paths.iter().map(|p| before.template(p).route).collect();
        let mut after = tree();
        for route in &routes {
            after.learn_route(route);
        }
        // The same templates as the tree they were learnt from gives now.
        for path in &paths {
            assert_eq!(
                after.template(path).route,
                before.template(path).route,
                "{path}"
            );
        }
        assert_eq!(
            after.template("/api/zzz/repos/9").route,
            "/api/{param}/repos/{id}"
        );
        assert_eq!(after.template("/health").route, "/health");
        assert_eq!(after.nodes(), after.root.count());
    }

    #[test]
    fn deep_paths_fold_their_tail() {
        let mut t = tree();
        assert_eq!(
            t.template("/a/b/c/d/e/f/g/h/i/j").route,
            "/a/b/c/d/e/f/g/{rest}"
        );
    }
}
