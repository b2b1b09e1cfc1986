use super::*;
use proptest::prelude::*;

#[test]
fn every_selector_sees_only_its_namespace() {
    let cases = [
        // (written, sent)
        ("up", r#"up{namespace="team-b"}"#),
        (
            r#"sum(rate(http_errors{job="m"}[5m])) / sum(rate(http_requests{job="m"}[5m]))"#,
            r#"sum(rate(http_errors{job="m",namespace="team-b"}[5m])) / sum(rate(http_requests{job="m",namespace="team-b"}[5m]))"#,
        ),
        // What the author wrote cannot widen it.
        (r#"x{namespace="team-a"}"#, r#"x{namespace="team-b"}"#),
        (r#"x{namespace=~".*"}"#, r#"x{namespace="team-b"}"#),
        (r#"x{namespace!="team-b"}"#, r#"x{namespace="team-b"}"#),
        (
            r#"{__name__=~".+",namespace=~"team-a|team-b"}"#,
            r#"{__name__=~".+",namespace="team-b"}"#,
        ),
        // Every `or` group.
        (
            r#"x{a="1" or namespace="team-a"}"#,
            r#"x{a="1", namespace="team-b" or namespace="team-b"}"#,
        ),
        // Subqueries, offsets, @, binary operands, function arguments.
        (
            r#"max_over_time(x[10m:1m] offset 5m) > on(job) group_left y @ 100"#,
            r#"max_over_time(x{namespace="team-b"}[10m:1m] offset 5m) > on (job) group_left () y{namespace="team-b"} @ 100.000"#,
        ),
        (
            r#"quantile(0.9, x) + scalar(y)"#,
            r#"quantile(0.9, x{namespace="team-b"}) + scalar(y{namespace="team-b"})"#,
        ),
        (r#"vector(1)"#, r#"vector(1)"#),
    ];
    for (written, want) in cases {
        let got = to_namespace(written, "team-b");
        assert_eq!(got.as_deref(), Ok(want), "{written}");
        // What is sent parses and is already scoped: scoping is idempotent.
        assert_eq!(to_namespace(want, "team-b").as_deref(), Ok(want), "{want}");
    }
}

#[test]
fn a_query_that_does_not_parse_is_refused() {
    for bad in ["sum(", "x{", "rate(x)", r#"x{namespace="a""#, ""] {
        match to_namespace(bad, "team-b") {
            Err(Unscopable::Parse(why)) => assert!(why.len() <= PARSE_ERROR_LIMIT, "{why}"),
            other => panic!("{bad}: {other:?}"),
        }
    }
    assert!(
        Unscopable::Parse("x".into())
            .to_string()
            .starts_with("the query does not parse as PromQL, so it is not sent")
    );
}

/// A selector of random metric and labels, with or without a namespace
/// matcher of any kind.
fn selector() -> impl Strategy<Value = String> {
    let label = "[a-z][a-z_]{0,6}".prop_filter("not the namespace", |l| l != "namespace");
    let value = "[a-zA-Z0-9 ._-]{0,8}";
    let op = prop_oneof![Just("="), Just("!="), Just("=~"), Just("!~")];
    let matcher = (label, op.clone(), value).prop_map(|(l, o, v)| format!("{l}{o}\"{v}\""));
    let namespace = proptest::option::of((op, "[a-z.*|-]{0,8}"))
        .prop_map(|n| n.map(|(o, v)| format!("namespace{o}\"{v}\"")));
    (
        "[a-z][a-z_]{0,8}",
        proptest::collection::vec(matcher, 0..3),
        namespace,
    )
        .prop_map(|(metric, mut matchers, namespace)| {
            matchers.extend(namespace);
            format!("{metric}{{{}}}", matchers.join(","))
        })
}

proptest! {
    /// Whatever selectors a query combines, what is sent selects only the
    /// namespace: each selector has exactly `namespace="<ns>"`.
    #[test]
    fn whatever_the_query_every_selector_is_scoped(
        a in selector(),
        b in selector(),
        shape in 0..4usize,
    ) {
        let query = match shape {
            0 => a.clone(),
            1 => format!("sum(rate({a}[5m])) / sum(rate({b}[5m]))"),
            2 => format!("{a} or on() {b}"),
            _ => format!("max_over_time(({a} - {b})[10m:1m])"),
        };
        // Only queries Prometheus would accept are of interest: a selector
        // matching the empty string for every label is refused by both.
        if let Ok(sent) = to_namespace(&query, "team-b") {
            let mut expr = parser::parse(&sent).unwrap();
            let mut all = true;
            visit(&mut expr, &mut |m| all &= scoped(m, "team-b")).unwrap();
            prop_assert!(all, "{query} -> {sent}");
            prop_assert!(!sent.contains("namespace!="), "{sent}");
        }
    }
}
