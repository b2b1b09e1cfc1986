//! Request counters: the operator's own and the API server's.

/// One line of the operator's request counter.
#[derive(Debug, Clone, PartialEq)]
pub struct Requests {
    pub verb: String,
    pub resource: String,
    pub count: f64,
}

/// The operator's `model_operator_api_requests_total` series, read from its
/// `/metrics` on 127.0.0.1:`port`.
pub async fn operator_requests(port: u16) -> Result<Vec<Requests>, String> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    Ok(parse_requests(&text))
}

pub fn parse_requests(text: &str) -> Vec<Requests> {
    parse_counter(text, "model_operator_api_requests_total")
}

/// The API server's own `apiserver_request_total`, summed by verb and
/// resource (with its subresource, e.g. `modeldeployments/status`): every
/// client's requests, the operator's, the controllers' and kwok's alike.
pub async fn apiserver_requests(client: &kube::Client) -> Result<Vec<Requests>, String> {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let text = client
        .request_text(request)
        .await
        .map_err(|e| e.to_string())?;
    Ok(parse_counter(&text, "apiserver_request_total"))
}

/// A counter's series with `verb` and `resource` (and `subresource`)
/// labels, summed by verb and resource.
fn parse_counter(text: &str, metric: &str) -> Vec<Requests> {
    let label = |labels: &str, name: &str| {
        labels
            .split(',')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
            .map(|v| v.trim_end_matches('"').to_string())
            .unwrap_or_default()
    };
    let mut out: Vec<Requests> = Vec::new();
    let series = text
        .lines()
        .filter_map(|line| line.strip_prefix(metric)?.strip_prefix('{'))
        .filter_map(|rest| {
            let (labels, value) = rest.split_once("} ")?;
            let sub = label(labels, "subresource");
            let resource = match sub.as_str() {
                "" => label(labels, "resource"),
                sub => format!("{}/{sub}", label(labels, "resource")),
            };
            Some((
                label(labels, "verb"),
                resource,
                value.trim().parse::<f64>().ok()?,
            ))
        });
    for (verb, resource, count) in series {
        match out
            .iter_mut()
            .find(|r| r.verb == verb && r.resource == resource)
        {
            Some(r) => r.count += count,
            None => out.push(Requests {
                verb,
                resource,
                count,
            }),
        }
    }
    out
}

/// Requests counted in `after` but not yet in `before`, by verb and resource.
pub fn requests_between(before: &[Requests], after: &[Requests]) -> Vec<Requests> {
    after
        .iter()
        .filter_map(|a| {
            let earlier = before
                .iter()
                .find(|b| b.verb == a.verb && b.resource == a.resource)
                .map_or(0.0, |b| b.count);
            (a.count > earlier).then(|| Requests {
                count: a.count - earlier,
                ..a.clone()
            })
        })
        .collect()
}
