//! Queries scoped to their ModelDeployment's namespace, when the admin asks
//! (`--scope-queries-to-namespace`): the query is parsed with a real PromQL
//! parser (GreptimeDB's `promql-parser`), every vector and matrix selector
//! (in every `or` group of its matchers) gets `namespace="<ns>"` in place of
//! whatever namespace matcher the author wrote (`namespace="other"` and
//! `namespace=~".*"` included), and the rendered text is parsed again and
//! checked before it is sent. A query that does not parse, or whose
//! rewrite cannot be shown to select only the namespace, is not sent.
//! Chosen over prom-label-proxy, which does the same rewrite, because that
//! is one more process per cluster to deploy, secure and keep in the path
//! of every query (docs/security.md).

use promql_parser::label::{MatchOp, Matcher, Matchers};
use promql_parser::parser::{self, Expr};
use thiserror::Error;

/// The label every selector is scoped by.
pub const NAMESPACE_LABEL: &str = "namespace";
/// The most of the parser's message repeated (it quotes the query).
const PARSE_ERROR_LIMIT: usize = 200;

/// Why a query was not sent.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum Unscopable {
    #[error(
        "the query does not parse as PromQL, so it is not sent (queries are scoped to their namespace: --scope-queries-to-namespace): {0}"
    )]
    Parse(String),
    #[error(
        "the query cannot be scoped to its namespace (--scope-queries-to-namespace), so it is not sent"
    )]
    Unsupported,
}

/// `query` with every selector limited to `namespace`.
pub fn to_namespace(query: &str, namespace: &str) -> Result<String, Unscopable> {
    let mut expr = parser::parse(query)
        .map_err(|e| Unscopable::Parse(e.chars().take(PARSE_ERROR_LIMIT).collect()))?;
    visit(&mut expr, &mut |m| scope(m, namespace))?;
    let text = expr.to_string();
    // What is sent is judged as sent: its own parse must select only the
    // namespace, whatever the rendering did.
    let mut sent = parser::parse(&text).map_err(|_| Unscopable::Unsupported)?;
    let mut all_scoped = true;
    visit(&mut sent, &mut |m| all_scoped &= scoped(m, namespace))?;
    match all_scoped {
        true => Ok(text),
        false => Err(Unscopable::Unsupported),
    }
}

/// Calls `f` on the matchers of every vector and matrix selector.
fn visit(expr: &mut Expr, f: &mut dyn FnMut(&mut Matchers)) -> Result<(), Unscopable> {
    match expr {
        Expr::VectorSelector(vs) => f(&mut vs.matchers),
        Expr::MatrixSelector(ms) => f(&mut ms.vs.matchers),
        Expr::Aggregate(a) => {
            visit(&mut a.expr, f)?;
            if let Some(param) = a.param.as_mut() {
                visit(param, f)?;
            }
        }
        Expr::Unary(u) => visit(&mut u.expr, f)?,
        Expr::Binary(b) => {
            visit(&mut b.lhs, f)?;
            visit(&mut b.rhs, f)?;
        }
        Expr::Paren(p) => visit(&mut p.expr, f)?,
        Expr::Subquery(s) => visit(&mut s.expr, f)?,
        Expr::Call(c) => {
            for arg in c.args.args.iter_mut() {
                visit(arg, f)?;
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
        // Never produced by the parser; nothing the operator can vouch for.
        Expr::Extension(_) => return Err(Unscopable::Unsupported),
    }
    Ok(())
}

/// Replaces every namespace matcher with `namespace="<ns>"`, in the plain
/// matchers or, with `or`, in each group (the plain ones are then unused).
fn scope(matchers: &mut Matchers, namespace: &str) {
    let own = || Matcher::new(MatchOp::Equal, NAMESPACE_LABEL, namespace);
    let groups: Vec<&mut Vec<Matcher>> = if matchers.or_matchers.is_empty() {
        vec![&mut matchers.matchers]
    } else {
        matchers.or_matchers.iter_mut().collect()
    };
    for group in groups {
        group.retain(|m| m.name != NAMESPACE_LABEL);
        group.push(own());
    }
}

/// Whether the selector can only select `namespace`: every group has
/// exactly one namespace matcher, `namespace="<ns>"`.
fn scoped(matchers: &mut Matchers, namespace: &str) -> bool {
    let groups: Vec<&Vec<Matcher>> = if matchers.or_matchers.is_empty() {
        vec![&matchers.matchers]
    } else {
        matchers.or_matchers.iter().collect()
    };
    groups.iter().all(|group| {
        let mut ns = group.iter().filter(|m| m.name == NAMESPACE_LABEL);
        matches!((ns.next(), ns.next()), (Some(m), None)
            if matches!(m.op, MatchOp::Equal) && m.value == namespace)
    })
}

#[cfg(test)]
mod tests;
