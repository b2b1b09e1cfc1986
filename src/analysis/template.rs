//! Fills a metric query's `{{variables}}` in.

/// The values a query may refer to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vars<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub model: &'a str,
    pub version: &'a str,
    pub revision: i64,
    /// The analysis window as a PromQL duration, e.g. "90s".
    pub window: &'a str,
}

/// Variable names a query may use.
pub const NAMES: [&str; 6] = [
    "namespace",
    "name",
    "model",
    "version",
    "revision",
    "window",
];

/// The query with every `{{variable}}` (spaces inside the braces allowed)
/// replaced. An unknown variable or an unclosed `{{` is an error: sending
/// such a query would measure something else than the user meant.
pub fn render(query: &str, vars: &Vars<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(query.len());
    let mut rest = query;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("unclosed {{{{ in query {query:?}"))?;
        let name = after[..end].trim();
        let revision = vars.revision.to_string();
        let value = match name {
            "namespace" => vars.namespace,
            "name" => vars.name,
            "model" => vars.model,
            "version" => vars.version,
            "revision" => revision.as_str(),
            "window" => vars.window,
            other => {
                return Err(format!(
                    "unknown variable {{{{{other}}}}} in query (known: {})",
                    NAMES.map(|n| format!("{{{{{n}}}}}")).join(", ")
                ));
            }
        };
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VARS: Vars<'static> = Vars {
        namespace: "prod",
        name: "fraud",
        model: "fraud-detector",
        version: "2.1.0",
        revision: 3,
        window: "90s",
    };

    #[test]
    fn table() {
        let cases = [
            ("up", Ok("up")),
            (
                r#"m{namespace="{{namespace}}",v="{{version}}"}"#,
                Ok(r#"m{namespace="prod",v="2.1.0"}"#),
            ),
            (
                "{{ name }}/{{model}}/{{revision}}",
                Ok("fraud/fraud-detector/3"),
            ),
            ("increase(x[{{window}}])", Ok("increase(x[90s])")),
            ("{{version}}{{version}}", Ok("2.1.02.1.0")),
            ("a{b}c", Ok("a{b}c")),
            (
                "{{bogus}}",
                Err(
                    "unknown variable {{bogus}} in query (known: {{namespace}}, {{name}}, {{model}}, {{version}}, {{revision}}, {{window}})",
                ),
            ),
            ("x{{version", Err("unclosed {{ in query \"x{{version\"")),
        ];
        for (query, want) in cases {
            let got = render(query, &VARS);
            assert_eq!(
                got.as_deref(),
                want.map_err(str::to_string).as_deref(),
                "{query}"
            );
        }
    }
}
